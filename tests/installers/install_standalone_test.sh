#!/usr/bin/env bash
# installers/install.sh (daemon + CLI) into a throw-away HOME, from the build whose binaries find
# libtorch through RUNPATHs into the checkout's .venv; then, in a private mount namespace with an
# empty folder bound over the whole source checkout (so its .venv and build/ are unreachable, while
# the real ones stay untouched for everyone else):
#   - ldd of the installed qwen-imaged / qwen-image resolves everything, nothing into the checkout;
#   - their RUNPATHs are $ORIGIN-relative (no absolute path into the checkout);
#   - the installed qwen-imaged serves a generate job (tiny model, CPU) sent by the installed CLI;
#   - control: the build's own qwen-imaged cannot even start there.
# Then --uninstall leaves HOME as it was. Exit 77 (skip) where it cannot run (no patchelf, no mount
# namespace), 1 instead under CI=true.
#   install_standalone_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
SRC=$(cd "$1" && pwd)
BUILD=$(cd "$2" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cannot() {
  echo "cannot run here: $*"
  case "${CI:-}" in "" | 0 | false | no) exit 77 ;; *) fail "CI=true: $*" ;; esac
}
command -v patchelf >/dev/null || cannot "patchelf is not installed (installers/setup.sh installs it)"
UNSHARE=(unshare -m)
[ "$(id -u)" = 0 ] || UNSHARE=(unshare -rm)
"${UNSHARE[@]}" true 2>/dev/null || cannot "no mount namespaces here (${UNSHARE[*]})"
case "$TMP" in "$SRC"/*) fail "the temporary folder is inside the checkout" ;; esac

export HOME="$TMP/home" QWEN_INSTALL_NO_SYSTEMD=1 QWEN_INSTALL_HARDLINK=1
unset XDG_CONFIG_HOME XDG_DATA_HOME GIMP2_DIRECTORY GIMP3_DIRECTORY
mkdir -p "$HOME/.config/GIMP/2.10"
START=$SECONDS
"$SRC/installers/install.sh" --no-build --build-dir "$BUILD" --gimp 2 >"$TMP/install.log" 2>&1 ||
  { tail -30 "$TMP/install.log"; fail "install.sh"; }
echo "install: $((SECONDS - START)) s"
BIN="$HOME/.local/bin"
LIB="$HOME/.local/lib/qwen-image"
[ -x "$BIN/qwen-imaged" ] && [ -x "$BIN/qwen-image" ] || fail "daemon / CLI not installed"
compgen -G "$LIB/torch/lib/libtorch_cpu.so" >/dev/null || fail "libtorch not installed under $LIB"
for b in qwen-imaged qwen-image; do
  rp=$(patchelf --print-rpath "$BIN/$b")
  case ":$rp:" in *":$SRC"*) fail "$b RUNPATH still names the checkout: $rp" ;; esac
  case "$rp" in '$ORIGIN/'*) ;; *) fail "$b RUNPATH is not \$ORIGIN-relative: $rp" ;; esac
done
grep -q "^file	$LIB/torch/lib/libtorch_cpu.so	" "$HOME/.local/share/qwen-image/install-manifest.txt" ||
  fail "the runtime libraries are not in the install manifest"

# Inputs outside the checkout: the tiny model, and a copy of the build's own daemon (control).
cp -r "$SRC/tests/fixtures/qwen-tiny/models/qwen-image-tiny" "$TMP/model"
cp "$BUILD/daemon/server/qwen-imaged" "$TMP/build-qwen-imaged"
mkdir -p "$TMP/empty"
INSTANCE="standalone-$$"
cat >"$TMP/inside.sh" <<INSIDE
set -u
mount --bind "$TMP/empty" "$SRC" || { echo "INSIDE: cannot hide the checkout"; exit 3; }
[ -z "\$(ls -A "$SRC")" ] || { echo "INSIDE: the checkout is still visible"; exit 3; }
for b in "$BIN/qwen-imaged" "$BIN/qwen-image"; do
  out=\$(ldd "\$b") || { echo "INSIDE: ldd \$b failed"; exit 4; }
  if echo "\$out" | grep -E "not found|$SRC"; then echo "INSIDE: \$b does not resolve on its own"; exit 4; fi
done
if "$TMP/build-qwen-imaged" --help >/dev/null 2>&1; then echo "INSIDE: control: the build's daemon still starts"; exit 5; fi
"$BIN/qwen-imaged" --device cpu --model "$TMP/model" --instance "$INSTANCE" >"$TMP/daemon.log" 2>&1 &
DP=\$!
ok=0
for i in \$(seq 120); do
  if "$BIN/qwen-image" status --instance "$INSTANCE" >/dev/null 2>&1; then ok=1; break; fi
  kill -0 \$DP 2>/dev/null || break
  sleep 0.5
done
[ \$ok = 1 ] || { echo "INSIDE: the installed daemon did not come up"; tail -20 "$TMP/daemon.log"; kill \$DP 2>/dev/null; exit 6; }
"$BIN/qwen-image" generate --daemon --instance "$INSTANCE" --prompt "a red fox" --width 64 \\
  --height 64 --steps 2 --seed 7 --output "$TMP/out.png" 2>"$TMP/cli.log" ||
  { echo "INSIDE: the job failed"; cat "$TMP/cli.log"; kill \$DP; exit 7; }
kill \$DP; wait \$DP
exit 0
INSIDE
"${UNSHARE[@]}" bash "$TMP/inside.sh" || fail "standalone run (exit $?)"
[ -s "$TMP/out.png" ] || fail "no image from the installed daemon"
[ "$(head -c 8 "$TMP/out.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "out.png is not a PNG"

"$SRC/installers/install.sh" --uninstall >"$TMP/uninstall.log" 2>&1 || { cat "$TMP/uninstall.log"; fail "uninstall"; }
LEFT=$(cd "$HOME" && find . -mindepth 1 | sort | tr '\n' ' ')
[ "$LEFT" = "./.config ./.config/GIMP ./.config/GIMP/2.10 " ] || fail "uninstall left or removed something: $LEFT"
echo "install_standalone: OK"
