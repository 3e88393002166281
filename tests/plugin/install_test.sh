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
unset GIMP2_DIRECTORY

# GIMP 3: GIMP3_DIRECTORY and the org.gimp.GIMP Flatpak get the GIMP 3 plug-in (a stand-in build
# folder with both plug-ins, since this machine may lack libgimp-3.0).
FAKE="$TMP/fake-build"
mkdir -p "$FAKE/plugin"
printf '#!/bin/sh\necho 2\n' >"$FAKE/plugin/qwen-image-gimp"
printf '#!/bin/sh\necho 3\n' >"$FAKE/plugin/qwen-image-gimp3"
chmod +x "$FAKE/plugin/"*
export GIMP3_DIRECTORY="$TMP/gimp3dir"
mkdir -p "$HOME/.var/app/org.gimp.GIMP"
"$SRC/installers/install.sh" --no-build --plugin-only --build-dir "$FAKE" >"$TMP/log" 2>&1 ||
  { cat "$TMP/log"; fail "install.sh with GIMP 3"; }
cmp -s "$GIMP3_DIRECTORY/plug-ins/qwen-image-gimp3/qwen-image-gimp3" "$FAKE/plugin/qwen-image-gimp3" ||
  fail "GIMP3_DIRECTORY did not get the GIMP 3 plug-in"
# A Flatpak without a profile yet: Flathub's current GIMP, 3.2.
FP="$HOME/.var/app/org.gimp.GIMP/config/GIMP/3.2/plug-ins/qwen-image-gimp3/qwen-image-gimp3"
[ -x "$FP" ] || fail "the Flatpak GIMP did not get the GIMP 3 plug-in"
grep -q "flatpak override --user --device=shm org.gimp.GIMP" "$TMP/log" || fail "no Flatpak hint"
# The 2.10 profile folder exists from above, so 2.10 gets its own plug-in too.
cmp -s "$HOME/.config/GIMP/2.10/plug-ins/qwen-image-gimp/qwen-image-gimp" "$FAKE/plugin/qwen-image-gimp" ||
  fail "GIMP 2.10 plug-in not installed next to the GIMP 3 one"
"$SRC/installers/install.sh" --uninstall >"$TMP/log" 2>&1 || { cat "$TMP/log"; fail "uninstall"; }
[ ! -e "$GIMP3_DIRECTORY" ] && [ ! -e "$FP" ] || fail "GIMP 3 plug-ins left behind"
# --gimp 3 installs only the GIMP 3 plug-in.
rm -rf "$HOME/.var"
"$SRC/installers/install.sh" --no-build --plugin-only --build-dir "$FAKE" --gimp 3 >"$TMP/log" 2>&1 ||
  { cat "$TMP/log"; fail "install.sh --gimp 3"; }
[ -x "$GIMP3_DIRECTORY/plug-ins/qwen-image-gimp3/qwen-image-gimp3" ] || fail "--gimp 3"
[ ! -e "$HOME/.config/GIMP/2.10/plug-ins/qwen-image-gimp" ] || fail "--gimp 3 installed 2.10"
"$SRC/installers/install.sh" --uninstall >/dev/null 2>&1
unset GIMP3_DIRECTORY

# The series of the GIMP 3 actually installed: an existing ~/.config/GIMP/3.2 profile gets it, and
# so does a Flatpak whose profile is 3.0 (its own folder); --uninstall leaves both profiles as they
# were.
mkdir -p "$HOME/.config/GIMP/3.2" "$HOME/.var/app/org.gimp.GIMP/config/GIMP/3.0"
"$SRC/installers/install.sh" --no-build --plugin-only --build-dir "$FAKE" --gimp 3 >"$TMP/log" 2>&1 ||
  { cat "$TMP/log"; fail "install.sh into GIMP 3.2"; }
[ -x "$HOME/.config/GIMP/3.2/plug-ins/qwen-image-gimp3/qwen-image-gimp3" ] || fail "no plug-in in ~/.config/GIMP/3.2"
[ ! -e "$HOME/.config/GIMP/3.0" ] || fail "a 3.0 profile was made next to the 3.2 one"
grep -q "3=1 (3.2)" "$TMP/log" || { cat "$TMP/log"; fail "3.2 not reported"; }
"$SRC/installers/install.sh" --uninstall >/dev/null 2>&1
"$SRC/installers/install.sh" --no-build --plugin-only --build-dir "$FAKE" >"$TMP/log" 2>&1 ||
  { cat "$TMP/log"; fail "install.sh with a 3.0 Flatpak profile"; }
[ -x "$HOME/.var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins/qwen-image-gimp3/qwen-image-gimp3" ] ||
  fail "the Flatpak's 3.0 profile did not get the plug-in"
[ ! -e "$HOME/.var/app/org.gimp.GIMP/config/GIMP/3.2" ] || fail "a Flatpak 3.2 profile was made"
"$SRC/installers/install.sh" --uninstall >/dev/null 2>&1
[ -d "$HOME/.config/GIMP/3.2" ] && [ -z "$(ls -A "$HOME/.config/GIMP/3.2")" ] || fail "the 3.2 profile changed"
rm -rf "$HOME/.config/GIMP/3.2" "$HOME/.var"

# The GIMP on PATH says which series: gimp-console-3 --version (a stand-in saying 3.0.4).
mkdir -p "$TMP/bin"
printf '#!/bin/sh\necho "GNU Image Manipulation Program version 3.0.4"\n' >"$TMP/bin/gimp-console-3"
chmod +x "$TMP/bin/gimp-console-3"
PATH="$TMP/bin:$PATH" "$SRC/installers/install.sh" --no-build --plugin-only --build-dir "$FAKE" \
  --gimp 3 >"$TMP/log" 2>&1 || { cat "$TMP/log"; fail "install.sh with gimp-console-3 3.0.4"; }
[ -x "$HOME/.config/GIMP/3.0/plug-ins/qwen-image-gimp3/qwen-image-gimp3" ] || fail "GIMP 3.0.4 on PATH: not in ~/.config/GIMP/3.0"
printf '#!/bin/sh\necho "GNU Image Manipulation Program version 3.2.6"\n' >"$TMP/bin/gimp-console-3"
PATH="$TMP/bin:$PATH" "$SRC/installers/install.sh" --no-build --plugin-only --build-dir "$FAKE" \
  --gimp 3 >"$TMP/log" 2>&1 || { cat "$TMP/log"; fail "install.sh with gimp-console-3 3.2.6"; }
[ -x "$HOME/.config/GIMP/3.2/plug-ins/qwen-image-gimp3/qwen-image-gimp3" ] || fail "GIMP 3.2.6 on PATH: not in ~/.config/GIMP/3.2"
"$SRC/installers/install.sh" --uninstall >/dev/null 2>&1
echo "install_test: OK"
