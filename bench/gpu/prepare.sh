#!/usr/bin/env bash
# bench/gpu/prepare.sh [DIR]
#
# Collects into DIR (default: <repo>/.gpu-carry, git-ignored) what the lent GPU machine lacks to
# configure and build the GPU check's targets (bench/gpu/check.sh): it has torch (CUDA wheel),
# CMake, ninja, nvcc and a compiler, but no apt, no package registry and none of the project's
# Debian dev packages. Runs here (Debian 12 "bookworm", root, apt works):
#
#   1. `apt-get download` the dev packages the build needs (Boost headers, nlohmann-json, PCRE2,
#      utf8proc, libpng, zlib) plus pkgconf (CMake's find_package(PkgConfig) is REQUIRED and the
#      machine may have no pkg-config);
#   2. unpacks them with dpkg -x and keeps, in DIR/prefix, only what a build uses:
#      - headers; of Boost only the headers that the sources including <boost/...> reach (the
#        compilers' -M dependency output, g++ and clang++, several -std) plus boost/config/;
#      - STATIC libraries (.a): nothing of bookworm has to load at run time on the machine, whatever
#        its glibc; the .so links are dropped so that the linker takes the .a files;
#      - CMake package files (Boost, nlohmann_json) and .pc files made relocatable
#        (prefix=${pcfiledir}/...), and a `pkg-config` wrapper around the carried pkgconf;
#   3. self-tests the prefix here: CMake finds every package in DIR (not in /usr), and the Boost
#      sources compile against DIR's headers alone;
#   4. prints DIR's size and fails above 60 MiB (the device tool carries 64 MiB in all, the repo's
#      working tree included: the estimate of the whole is printed too).
#
# No Python wheel is needed: the check compares against the committed goldens and, for bfloat16,
# against the CPU in the same binary. See docs/gpu-check.md.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=${1:-$repo/.gpu-carry}
limit_mib=60
travel_limit_mib=64

die() {
  echo "prepare.sh: $*" >&2
  exit 1
}
command -v apt-get >/dev/null || die "needs apt-get (Debian/Ubuntu); run it on the development machine"
command -v dpkg >/dev/null || die "needs dpkg"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
case "$dir" in
  / | "$repo" | "$repo/" | /usr | /usr/*) die "refusing to use $dir as the output folder" ;;
esac

# The packages, by the names of this distribution (Boost through the versioned -dev package that
# libboost-dev depends on).
boost_pkg=$(apt-cache depends libboost-dev 2>/dev/null |
  awk '/Depends: libboost[0-9.]+-dev/ {print $2; exit}')
[ -n "$boost_pkg" ] || boost_pkg=libboost1.74-dev
pkgs=("$boost_pkg" nlohmann-json3-dev libpcre2-dev libutf8proc-dev libpng-dev zlib1g-dev
  pkgconf-bin libpkgconf3)

work=$(mktemp -d /tmp/gpu-prepare.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
mkdir -p "$work/debs" "$work/stage"
chown _apt "$work/debs" 2>/dev/null || true # apt-get download runs as _apt where it can

echo "== downloading: ${pkgs[*]}"
if ! (cd "$work/debs" && apt-get download "${pkgs[@]}" >"$work/download.log" 2>&1); then
  echo "   (apt-get download failed; apt-get update, then again)"
  apt-get update >"$work/update.log" 2>&1 || die "apt-get update failed: $(tail -3 "$work/update.log")"
  (cd "$work/debs" && apt-get download "${pkgs[@]}" >"$work/download.log" 2>&1) ||
    die "apt-get download failed: $(tail -5 "$work/download.log")"
fi
for deb in "$work"/debs/*.deb; do
  dpkg -x "$deb" "$work/stage"
done
S=$work/stage/usr
A=x86_64-linux-gnu
[ -d "$S/lib/$A" ] || die "unexpected package layout (no usr/lib/$A): is this an amd64 Debian?"

rm -rf "$dir/prefix" "$dir/MANIFEST.txt"
P=$dir/prefix
mkdir -p "$P/include" "$P/lib/$A/pkgconfig" "$P/lib/$A/cmake" "$P/share/cmake" "$P/share/pkgconfig" \
  "$P/bin" "$P/lib/pkgconf-runtime"

# --- headers (symlinks resolved: plain files travel everywhere) ----------------------------------
cp -rL "$S/include/nlohmann" "$P/include/"
cp -L "$S/include/utf8proc.h" "$S/include/pcre2.h" "$S/include/zlib.h" "$S/include/zconf.h" \
  "$P/include/"
mkdir -p "$P/include/libpng16"
cp -L "$S"/include/libpng16/*.h "$P/include/libpng16/"
cp -L "$S"/include/libpng16/*.h "$P/include/" # png.h, pngconf.h, pnglibconf.h as /usr/include has

# Boost: the closure of what the project's sources include, as the compilers resolve it against
# the unpacked tree (several standards and both compilers: their #if branches differ), plus all of
# boost/config (compiler/stdlib/platform selection) and boost/version.hpp (CMake's FindBoost).
mapfile -t boost_users < <(cd "$repo" && grep -rlE --include='*.cpp' --include='*.cc' \
  --include='*.h' --include='*.hpp' '#[[:space:]]*include[[:space:]]*<boost/' \
  shared daemon plugin bench 2>/dev/null || true)
[ "${#boost_users[@]}" -gt 0 ] || die "no source includes <boost/...>: nothing to take"
closure=$work/boost-closure.txt
: >"$closure"
for f in "${boost_users[@]}"; do
  for cxx in g++ clang++; do
    command -v "$cxx" >/dev/null || continue
    for std in c++17 c++20 c++23; do
      if "$cxx" -std=$std -M -MT x -isystem "$S/include" -I "$repo/shared/include" -I "$repo/daemon" \
        -I "$repo/plugin/core" -I "$repo/plugin/common" "$repo/$f" >"$work/m.out" 2>"$work/m.err"; then
        tr ' \\' '\n\n' <"$work/m.out" | { grep "^$S/include/boost/" || true; } >>"$closure"
      elif [ "$cxx" = g++ ] && [ "$std" = c++20 ]; then
        die "g++ -M failed on $f: $(head -3 "$work/m.err")"
      fi
    done
  done
done
(
  cd "$S/include"
  {
    sed "s|^$S/include/||" "$closure"
    find boost/config -type f
    echo boost/version.hpp
  } | xargs realpath -m --relative-to=. | sort -u >"$work/boost-files.txt"
  while read -r f; do
    mkdir -p "$P/include/$(dirname "$f")"
    cp -L "$f" "$P/include/$f"
  done <"$work/boost-files.txt"
)
boost_count=$(wc -l <"$work/boost-files.txt")
cp -rL "$S/lib/$A/cmake/"Boost-* "$S/lib/$A/cmake/"boost_headers-* "$P/lib/$A/cmake/"
cp -L "$S/lib/$A/cmake/"BoostDetectToolset-*.cmake "$P/lib/$A/cmake/" 2>/dev/null || true

# --- static libraries and package files -----------------------------------------------------------
for lib in libpng16.a libutf8proc.a libpcre2-8.a libz.a; do
  [ -f "$S/lib/$A/$lib" ] || die "no $lib in the packages"
  cp -L "$S/lib/$A/$lib" "$P/lib/$A/"
done
cp "$P/lib/$A/libpng16.a" "$P/lib/$A/libpng.a"
for pc in libpng16 libpng libutf8proc libpcre2-8 zlib; do
  [ -e "$S/lib/$A/pkgconfig/$pc.pc" ] || die "no $pc.pc in the packages"
  # lib/<arch>/pkgconfig is three levels below the prefix.
  sed 's|^prefix=.*|prefix=${pcfiledir}/../../..|' "$S/lib/$A/pkgconfig/$pc.pc" >"$P/lib/$A/pkgconfig/$pc.pc"
done
# libpng's .pc: the static link also needs zlib and libm.
sed -i 's|^Libs: \(.*\)$|Libs: \1 -lz -lm|' "$P/lib/$A/pkgconfig/libpng16.pc" "$P/lib/$A/pkgconfig/libpng.pc"
sed 's|^Cflags: -I/usr/include|Cflags: -I${pcfiledir}/../../include|' "$S/share/pkgconfig/nlohmann_json.pc" \
  >"$P/share/pkgconfig/nlohmann_json.pc"
cp -rL "$S/share/cmake/nlohmann_json" "$P/share/cmake/"

# pkgconf (+ its library, loaded only by the wrapper) as `pkg-config`.
cp -L "$S/bin/pkgconf" "$P/bin/pkgconf"
cp -L "$S/lib/$A/libpkgconf.so.3" "$P/lib/pkgconf-runtime/"
cat >"$P/bin/pkg-config" <<'EOF'
#!/bin/sh
# pkgconf from Debian bookworm, carried for machines without pkg-config (bench/gpu/prepare.sh).
here=$(cd "$(dirname "$0")" && pwd)
LD_LIBRARY_PATH="$here/../lib/pkgconf-runtime${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/pkgconf" "$@"
EOF
chmod 755 "$P/bin/pkg-config" "$P/bin/pkgconf"

# --- self-test: everything resolves inside DIR ---------------------------------------------------
echo "== self-test"
export PKG_CONFIG_PATH="$P/lib/$A/pkgconfig:$P/share/pkgconfig"
pc_out=$("$P/bin/pkg-config" --cflags --libs libutf8proc libpng16 libpcre2-8 zlib) ||
  die "the carried pkg-config does not run"
case "$pc_out" in *"$dir"*) ;; *) die "pkg-config resolved outside $dir: $pc_out" ;; esac
# The Boost users compile against DIR's headers alone: every boost header they reach is in DIR.
for f in "${boost_users[@]}"; do
  leaked=$(g++ -std=c++20 -M -MT x -isystem "$P/include" -I "$repo/shared/include" -I "$repo/daemon" \
    -I "$repo/plugin/core" -I "$repo/plugin/common" "$repo/$f" | tr ' \\' '\n\n' | grep '/boost/' |
    grep -v "^$P/include/boost/" || true)
  [ -z "$leaked" ] || die "$f reaches Boost headers that were not kept: $(echo $leaked | head -c 400)"
done
# CMake finds each package in DIR, the way the project's CMakeLists.txt ask for them.
if command -v cmake >/dev/null; then
  t=$work/cmake-test
  mkdir -p "$t/src"
  cat >"$t/src/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.25)
project(carry_test LANGUAGES C CXX)
find_package(PkgConfig REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(PNG REQUIRED)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
get_target_property(_nl nlohmann_json::nlohmann_json INTERFACE_INCLUDE_DIRECTORIES)
get_target_property(_bo Boost::headers INTERFACE_INCLUDE_DIRECTORIES)
file(WRITE ${CMAKE_BINARY_DIR}/found.txt
  "pkgconfig ${PKG_CONFIG_EXECUTABLE}\nnlohmann ${_nl}\nboost ${_bo}\npng ${PNG_LIBRARY} ${PNG_INCLUDE_DIRS}\nzlib ${ZLIB_LIBRARY}\nutf8proc ${UTF8PROC_LINK_LIBRARIES}\npcre2 ${PCRE2_LINK_LIBRARIES}\n")
file(WRITE ${CMAKE_BINARY_DIR}/main.cpp [=[
#include <png.h>
#include <utf8proc.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <zlib.h>
#include <boost/interprocess/shared_memory_object.hpp>
#include <nlohmann/json.hpp>
#include <cstdio>
int main() {
  auto j = nlohmann::json::parse("{\"a\": 1}");
  std::printf("png %s utf8proc %s zlib %s json %d\n", png_get_libpng_ver(nullptr),
              utf8proc_version(), zlibVersion(), j["a"].get<int>());
  int err = 0; PCRE2_SIZE off = 0;
  auto* re = pcre2_compile((PCRE2_SPTR) "a+", PCRE2_ZERO_TERMINATED, 0, &err, &off, nullptr);
  pcre2_code_free(re);
  return re ? 0 : 1;
}
]=])
add_executable(carry_test ${CMAKE_BINARY_DIR}/main.cpp)
target_link_libraries(carry_test PRIVATE nlohmann_json::nlohmann_json Boost::headers PNG::PNG
  PkgConfig::UTF8PROC PkgConfig::PCRE2 rt)
EOF
  if ! cmake -S "$t/src" -B "$t/build" -DCMAKE_PREFIX_PATH="$P" \
    -DPKG_CONFIG_EXECUTABLE="$P/bin/pkg-config" >"$work/cmake.log" 2>&1; then
    die "CMake cannot configure against $P: $(grep -m3 -i error "$work/cmake.log")"
  fi
  while read -r what where; do
    for w in ${where//;/ }; do
      case "$w" in
        "$dir"/*) ;;
        *) die "CMake found $what outside $dir: $w (it must come from the carried prefix)" ;;
      esac
    done
  done <"$t/build/found.txt"
  cmake --build "$t/build" >"$work/build.log" 2>&1 || die "the test program does not build: $(grep -m3 -i error "$work/build.log")"
  "$t/build/carry_test" || die "the test program does not run"
  ldd "$t/build/carry_test" | grep -qE 'libpng|libutf8proc|libpcre2|libz\.so' &&
    die "the test program links a carried library dynamically: $(ldd "$t/build/carry_test")"
else
  echo "   (no cmake here: the CMake part of the self-test was skipped)"
fi

# --- manifest, size -----------------------------------------------------------------------------
glibc_need=$(objdump -T "$P/bin/pkgconf" "$P/lib/pkgconf-runtime/libpkgconf.so.3" 2>/dev/null |
  grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 || true)
{
  echo "# bench/gpu/prepare.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), on $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "# packages (apt-get download, unpacked with dpkg -x, pruned):"
  for deb in "$work"/debs/*.deb; do dpkg-deb -f "$deb" Package Version | paste -sd' '; done
  echo "# boost headers kept: $boost_count (closure of: ${boost_users[*]})"
  echo "# libraries: static (.a) only; run-time code carried: pkgconf + libpkgconf.so.3 (needs $glibc_need)"
  echo "# use: -DCMAKE_PREFIX_PATH=<DIR>/prefix -DPKG_CONFIG_EXECUTABLE=<DIR>/prefix/bin/pkg-config"
  echo "#      PKG_CONFIG_PATH=<DIR>/prefix/lib/$A/pkgconfig:<DIR>/prefix/share/pkgconfig"
} >"$dir/MANIFEST.txt"
rm -rf "$dir/debs"

size=$(du -sb "$dir" | cut -f1)
size_mib=$(awk -v s="$size" 'BEGIN {printf "%.2f", s / 1048576}')
tree=0
if git -C "$repo" rev-parse >/dev/null 2>&1; then
  tree=$(cd "$repo" && { git ls-files -z; git ls-files -z --others --exclude-standard; } |
    xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
fi
total_mib=$(awk -v a="$size" -v b="$tree" 'BEGIN {printf "%.2f", (a + b) / 1048576}')
echo "== $dir: $size_mib MiB ($(find "$dir" -type f | wc -l) files; limit $limit_mib MiB)"
echo "   with the repo's working tree ($(awk -v b="$tree" 'BEGIN {printf "%.2f", b / 1048576}') MiB) the device tool carries about $total_mib MiB (limit $travel_limit_mib MiB)"
awk -v s="$size" -v l="$limit_mib" 'BEGIN {exit !(s > l * 1048576)}' &&
  die "$dir is $size_mib MiB, over the $limit_mib MiB limit"
awk -v s="$total_mib" -v l="$travel_limit_mib" 'BEGIN {exit !(s > l)}' &&
  echo "prepare.sh: WARNING: working tree + $dir = $total_mib MiB is over the device tool's $travel_limit_mib MiB" >&2
case "$dir" in
  "$repo"/*) echo "== ready: the device run carries '${dir#"$repo"/}' (see docs/gpu-check.md)" ;;
  *) echo "== ready; note: the device tool carries only folders inside the repo ($repo): use the default DIR (.gpu-carry) for a device run" ;;
esac
