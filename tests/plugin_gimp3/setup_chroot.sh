#!/usr/bin/env bash
# Creates (once) a Debian root with GIMP 3 and the plug-in's build dependencies, for the GIMP 3
# end-to-end tests. The one place that knows how these roots are made; installers/setup.sh and the
# tests call it.
#   setup_chroot.sh [SUITE] [DIR]
#     SUITE  trixie (Debian 13, GIMP 3.0.4; the default) or forky / sid (GIMP 3.2.x)
#     DIR    defaults to /var/cache/qwen-image/SUITE-gimp3 ($QWEN_GIMP3_CHROOT for trixie,
#            $QWEN_GIMP32_CHROOT for forky / sid)
#   A finished root (DIR/.qwen-ready) is reused as is: a machine pays the bootstrap once.
#   QWEN_DEBIAN_MIRROR picks another mirror.
# Exit codes: 0 ready, 77 cannot be made here (not root, no debootstrap, mirror unreachable),
# 1 the bootstrap or the package install failed.
set -u
SUITE=${1:-trixie}
case "$SUITE" in
  trixie) DEFAULT_DIR=${QWEN_GIMP3_CHROOT:-/var/cache/qwen-image/trixie-gimp3} ;;
  forky | sid) DEFAULT_DIR=${QWEN_GIMP32_CHROOT:-/var/cache/qwen-image/$SUITE-gimp3} ;;
  *) echo "setup_chroot.sh: unknown suite '$SUITE' (trixie, forky or sid)" >&2; exit 2 ;;
esac
DIR=${2:-$DEFAULT_DIR}
MIRROR=${QWEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PKGS="gimp libgimp-3.0-dev libgegl-dev g++ cmake pkg-config libboost-dev nlohmann-json3-dev make"
# The testing / unstable Release files on a mirror or snapshot may be past their Valid-Until.
APT_OPTS=(-o Acquire::Check-Valid-Until=false)
cannot() { echo "CANNOT: $*" >&2; exit 77; }
failed() { echo "FAILED: $*" >&2; exit 1; }

[[ -f $DIR/.qwen-ready ]] && exit 0
[[ $(id -u) == 0 ]] || cannot "building the $SUITE chroot needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || cannot "debootstrap is not installed (apt-get install -y debootstrap)"
command -v chroot >/dev/null || cannot "chroot is not available"
HOST=$(echo "${MIRROR#*://}" | cut -d/ -f1)
timeout 20 bash -c "exec 3<>/dev/tcp/$HOST/80" 2>/dev/null ||
  timeout 20 getent hosts "$HOST" >/dev/null ||
  cannot "the Debian mirror $MIRROR is unreachable"

mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock -w 1500 9 || cannot "another setup holds $DIR.lock for more than 25 minutes"
[[ -f $DIR/.qwen-ready ]] && exit 0
START=$SECONDS
if [[ ! -x $DIR/usr/bin/apt-get ]]; then
  rm -rf "$DIR"
  # Older debootstraps (Debian 12's) have no script for forky: sid's fits every newer suite.
  SCRIPT=()
  [[ -e /usr/share/debootstrap/scripts/$SUITE ]] || SCRIPT=(/usr/share/debootstrap/scripts/sid)
  timeout 900 debootstrap --variant=minbase "$SUITE" "$DIR" "$MIRROR" "${SCRIPT[@]}" >"$DIR.log" 2>&1 ||
    { tail -5 "$DIR.log" >&2; rm -rf "$DIR"; failed "debootstrap $SUITE failed (see $DIR.log)"; }
fi
mountpoint -q "$DIR/proc" || mount -t proc proc "$DIR/proc"
trap 'umount "$DIR/proc" 2>/dev/null' EXIT
export DEBIAN_FRONTEND=noninteractive
timeout 300 chroot "$DIR" apt-get "${APT_OPTS[@]}" update >>"$DIR.log" 2>&1 ||
  { tail -5 "$DIR.log" >&2; failed "apt-get update failed in the $SUITE chroot (see $DIR.log)"; }
# shellcheck disable=SC2086
timeout 1200 chroot "$DIR" apt-get "${APT_OPTS[@]}" install -y --no-install-recommends $PKGS >>"$DIR.log" 2>&1 ||
  { tail -5 "$DIR.log" >&2; failed "apt-get install failed in the $SUITE chroot (see $DIR.log)"; }
chroot "$DIR" apt-get clean >/dev/null 2>&1
chroot "$DIR" dpkg-query -W -f '${Version}\n' gimp >"$DIR/.qwen-gimp-version" 2>/dev/null
touch "$DIR/.qwen-ready"
echo "$SUITE chroot ready: $DIR (GIMP $(cat "$DIR/.qwen-gimp-version"), $((SECONDS - START)) s)"
