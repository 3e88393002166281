#!/usr/bin/env bash
# bench/gpu/build-isolated.sh [BUILD_DIR] [-- extra check.sh options]
#
# Proves HERE that the carried prefix (.gpu-carry, from bench/gpu/prepare.sh) is all the GPU
# machine needs: runs `check.sh --build-only` (the device's configure + build of the check's
# targets: Ninja, Release, no plug-in, no tests, the carried prefix) in a private mount namespace
# where this machine's own dev packages are hidden (Boost, nlohmann-json, libpng, zlib, utf8proc,
# PCRE2 headers, static/dev libraries, .pc files, pkg-config). Nothing outside the namespace
# changes: the hiding is bind mounts that vanish with it. Needs root (unshare -m).
#
# Default BUILD_DIR: /tmp/qwen-gpucheck-isolated. On 2 cores a first build takes ~10 minutes;
# QWEN_CHECK_TARGETS="bench_tokenizer bench_transport qwen_imageio qwen_shared" builds only the
# torch-free targets that use the carried packages (~2 minutes). Torch comes from
# QWEN_CHECK_PYTHON (default: the repo's .venv).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-/tmp/qwen-gpucheck-isolated}
[ $# -gt 0 ] && shift
[ "${1:-}" = -- ] && shift
[ -d "$repo/.gpu-carry/prefix" ] || { echo "build-isolated.sh: run bench/gpu/prepare.sh first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "build-isolated.sh: needs root (unshare -m)" >&2; exit 1; }

if [ "${QWEN_ISOLATED_INNER:-}" != 1 ]; then
  exec unshare -m env QWEN_ISOLATED_INNER=1 bash "${BASH_SOURCE[0]}" "$build" -- "$@"
fi

# Inside the namespace: hide the dev packages. Only directories and regular files are covered
# (a bind mount over a symlink would cover its target, e.g. the run-time libz.so.1 that CMake and
# Python need); a symlink into a hidden directory dangles by itself.
mount --make-rprivate /
empty=$(mktemp -d)
A=/usr/lib/x86_64-linux-gnu
for d in /usr/include/boost /usr/include/nlohmann /usr/include/libpng16 /usr/share/cmake/nlohmann_json \
  "$A"/cmake/Boost-* "$A"/cmake/boost_*; do
  if [ -d "$d" ] && [ ! -L "$d" ]; then mount --bind "$empty" "$d"; fi
done
for f in /usr/include/utf8proc.h /usr/include/pcre2.h /usr/include/zlib.h /usr/include/zconf.h \
  "$A"/libpng16.a "$A"/libutf8proc.a "$A"/libpcre2-8.a "$A"/libz.a \
  /usr/bin/pkgconf /usr/bin/x86_64-linux-gnu-pkgconf "$A"/pkgconfig/*.pc /usr/share/pkgconfig/*.pc; do
  if [ -f "$f" ] && [ ! -L "$f" ]; then mount --bind /dev/null "$f"; fi
done
# The .so dev links are symlinks: left alone, but then the system's would be found first if the
# carried prefix were not searched first; the configure log names every library it found.
for h in /usr/include/boost/version.hpp /usr/include/nlohmann/json.hpp /usr/include/png.h; do
  if [ -e "$h" ]; then echo "build-isolated.sh: $h still visible" >&2; exit 1; fi
done
echo "== system dev packages hidden; building in $build"
export QWEN_CHECK_PYTHON=${QWEN_CHECK_PYTHON:-$repo/.venv/bin/python}
export QWEN_CHECK_BUILD_TIMEOUT=${QWEN_CHECK_BUILD_TIMEOUT:-3000}
rc=0
bash "$repo/bench/gpu/check.sh" --build-only --build-dir "$build" --out "$build/check-out" \
  --budget $((QWEN_CHECK_BUILD_TIMEOUT + 200)) "$@" || rc=$?
echo "== libraries CMake found:"
grep -E '^(PNG_LIBRARY_RELEASE|ZLIB_LIBRARY_RELEASE|Boost_INCLUDE_DIR|nlohmann_json_DIR|PKG_CONFIG_EXECUTABLE|pkgcfg_lib_UTF8PROC_utf8proc):' \
  "$build/CMakeCache.txt" || true
exit $rc
