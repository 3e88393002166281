#!/usr/bin/env bash
# Creates (once) a Debian 13 "trixie" root with GIMP 3.0 and the plug-in's build dependencies, for
# the GIMP 3 end-to-end tests. Usage: setup_chroot.sh [DIR]
#   DIR defaults to $QWEN_GIMP3_CHROOT or /var/cache/qwen-image/trixie-gimp3. A finished root
#   (DIR/.qwen-ready) is reused as is: CI pays the bootstrap once per machine.
# Exit codes: 0 ready, 77 cannot be made here (not root, no debootstrap, mirror unreachable).
set -u
DIR=${1:-${QWEN_GIMP3_CHROOT:-/var/cache/qwen-image/trixie-gimp3}}
MIRROR=${QWEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PKGS="gimp libgimp-3.0-dev libgegl-dev g++ cmake pkg-config libboost-dev nlohmann-json3-dev make"
skip() { echo "SKIP: $*" >&2; exit 77; }

[[ -f $DIR/.qwen-ready ]] && exit 0
[[ $(id -u) == 0 ]] || skip "building the trixie chroot needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || skip "debootstrap is not installed (apt-get install -y debootstrap)"
command -v chroot >/dev/null || skip "chroot is not available"
timeout 20 bash -c "exec 3<>/dev/tcp/$(echo "${MIRROR#*://}" | cut -d/ -f1)/80" 2>/dev/null ||
  timeout 20 getent hosts "$(echo "${MIRROR#*://}" | cut -d/ -f1)" >/dev/null ||
  skip "the Debian mirror $MIRROR is unreachable"

mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock -w 1200 9 || skip "another setup holds $DIR.lock"
[[ -f $DIR/.qwen-ready ]] && exit 0
if [[ ! -x $DIR/usr/bin/apt-get ]]; then
  rm -rf "$DIR"
  timeout 900 debootstrap --variant=minbase trixie "$DIR" "$MIRROR" >"$DIR.log" 2>&1 ||
    { tail -5 "$DIR.log" >&2; rm -rf "$DIR"; skip "debootstrap trixie failed (see $DIR.log)"; }
fi
mountpoint -q "$DIR/proc" || mount -t proc proc "$DIR/proc"
trap 'umount "$DIR/proc" 2>/dev/null' EXIT
export DEBIAN_FRONTEND=noninteractive
timeout 300 chroot "$DIR" apt-get update >>"$DIR.log" 2>&1 || skip "apt-get update failed in the chroot"
timeout 1200 chroot "$DIR" apt-get install -y --no-install-recommends $PKGS >>"$DIR.log" 2>&1 ||
  { tail -5 "$DIR.log" >&2; skip "apt-get install failed in the chroot (see $DIR.log)"; }
chroot "$DIR" apt-get clean >/dev/null 2>&1
touch "$DIR/.qwen-ready"
echo "trixie chroot ready: $DIR"
