#!/usr/bin/env bash
# Configures and builds the plug-in-only tree in a temporary folder without GoogleTest (hidden
# with CMAKE_DISABLE_FIND_PACKAGE_GTest) and without libtorch (CMAKE_DISABLE_FIND_PACKAGE_Torch):
#   1. default options (tests on): configures, says it has no tests, builds the plug-in(s);
#   2. -DQWEN_IMAGE_BUILD_TESTS=OFF: configures and builds.
#   plugin_only_build_test.sh SOURCE_DIR
set -euo pipefail
SRC=$1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
COMMON=(-DQWEN_IMAGE_PLUGIN_ONLY=ON -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON
  -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON -DCMAKE_BUILD_TYPE=Release)

cmake -S "$SRC" -B "$TMP/a" "${COMMON[@]}" >"$TMP/a.log" 2>&1 ||
  { cat "$TMP/a.log"; fail "plug-in-only configure without GoogleTest (tests on)"; }
grep -q "GoogleTest not found: no tests" "$TMP/a.log" || { cat "$TMP/a.log"; fail "no note about the tests"; }
TARGETS=()
grep -q '^GIMP2_FOUND:INTERNAL=1' "$TMP/a/CMakeCache.txt" && TARGETS+=(qwen-image-gimp)
grep -q '^GIMP3_FOUND:INTERNAL=1' "$TMP/a/CMakeCache.txt" && TARGETS+=(qwen-image-gimp3)
[ ${#TARGETS[@]} -gt 0 ] || fail "neither libgimp-2.0 nor libgimp-3.0 development files were found here"
cmake --build "$TMP/a" -j2 >"$TMP/a-build.log" 2>&1 || { tail -40 "$TMP/a-build.log"; fail "build (tests on)"; }
for t in "${TARGETS[@]}"; do
  [ -x "$TMP/a/plugin/$t" ] || fail "$t not built"
done
[ -z "$(find "$TMP/a" -name '*_test' -type f -perm -u+x)" ] || fail "test programs built without GoogleTest"

cmake -S "$SRC" -B "$TMP/b" "${COMMON[@]}" -DQWEN_IMAGE_BUILD_TESTS=OFF >"$TMP/b.log" 2>&1 ||
  { cat "$TMP/b.log"; fail "plug-in-only configure with tests off"; }
cmake --build "$TMP/b" -j2 --target "${TARGETS[@]}" >"$TMP/b-build.log" 2>&1 ||
  { tail -40 "$TMP/b-build.log"; fail "build (tests off)"; }
echo "plugin_only_build: OK (${TARGETS[*]})"
