#!/usr/bin/env bash
# installers/install.sh --plugin-only into a throw-away HOME: installs the plug-in and its config,
# a second run updates in place, --uninstall removes exactly what was installed (the user's own
# files and an edited config stay).
#   install_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
SRC=$1
BUILD=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export HOME="$TMP/home" QWEN_INSTALL_NO_SYSTEMD=1
unset XDG_CONFIG_HOME XDG_DATA_HOME GIMP2_DIRECTORY
mkdir -p "$HOME/.config/GIMP/2.10/plug-ins/someone-else"
echo keep >"$HOME/.config/GIMP/2.10/plug-ins/someone-else/other-plugin"
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { "$SRC/installers/install.sh" --no-build --plugin-only --build-dir "$BUILD" "$@" >"$TMP/log" 2>&1 ||
  { cat "$TMP/log"; fail "install.sh $*"; }; }

PLUGIN="$HOME/.config/GIMP/2.10/plug-ins/qwen-image-gimp/qwen-image-gimp"
CONF="$HOME/.config/qwen-image/qwen-image.conf"
run
[ -x "$PLUGIN" ] || fail "plug-in not installed"
cmp -s "$PLUGIN" "$(find "$BUILD" -name qwen-image-gimp -type f -perm -u+x -not -path '*/CMakeFiles/*' | head -n1)" ||
  fail "installed plug-in differs from the build"
grep -q "^daemon = $HOME/.local/bin/qwen-imaged\$" "$CONF" || fail "config does not name the daemon"
run  # update in place
[ -x "$PLUGIN" ] || fail "plug-in missing after the second install"
run --uninstall
[ ! -e "$PLUGIN" ] || fail "plug-in left behind"
[ ! -e "$CONF" ] || fail "config left behind"
LEFT=$(cd "$HOME" && find . -mindepth 1 | sort | tr '\n' ' ')
[ "$LEFT" = "./.config ./.config/GIMP ./.config/GIMP/2.10 ./.config/GIMP/2.10/plug-ins ./.config/GIMP/2.10/plug-ins/someone-else ./.config/GIMP/2.10/plug-ins/someone-else/other-plugin " ] ||
  fail "uninstall left or removed something else: $LEFT"

# GIMP2_DIRECTORY wins; an edited config survives --uninstall.
export GIMP2_DIRECTORY="$TMP/gimpdir"
run
[ -x "$GIMP2_DIRECTORY/plug-ins/qwen-image-gimp/qwen-image-gimp" ] || fail "GIMP2_DIRECTORY ignored"
echo "max_pixels = 1000000" >>"$CONF"
run --uninstall
[ -f "$CONF" ] || fail "an edited config was removed"
[ ! -e "$GIMP2_DIRECTORY" ] || fail "GIMP2_DIRECTORY folder left behind"
echo "install_test: OK"
