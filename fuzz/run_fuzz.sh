#!/usr/bin/env bash
# Builds a libFuzzer target with clang (ASan + UBSan) and runs it for a bounded time.
# usage: run_fuzz.sh <source root> <work dir> [seconds] [target]
#   target: parse_header (default; safetensors headers, fuzz_parse_header.cpp) or gguf (GGUF files,
#   fuzz_gguf.cpp); seeds in fuzz/corpus/<target>/.
# Exit: 0 = no finding, 77 = skipped (no clang / libFuzzer runtime; an error instead when CI=true),
# other = build failure or a finding (crash, sanitizer report, leak, timeout); the reproducer is
# left in <work dir>.
set -euo pipefail
src=$1
work=$2
secs=${3:-20}
target=${4:-parse_header}
case $target in
  parse_header) sources=("$src/daemon/io/safetensors.cpp"); dict=(-dict="$src/fuzz/safetensors.dict") ;;
  gguf) sources=("$src/daemon/io/gguf.cpp" "$src/daemon/io/safetensors.cpp"); dict=(-dict="$src/fuzz/gguf.dict") ;;
  *) echo "unknown fuzz target '$target' (parse_header, gguf)"; exit 2 ;;
esac
# Under CI a fuzz run that cannot happen is a failure, not a skip.
skip=77
[[ ${CI:-} == true ]] && skip=1
cxx=${QWEN_FUZZ_CXX:-}
if [[ -z $cxx ]]; then
  for c in clang++ clang++-14 clang++-15 clang++-16; do
    if command -v "$c" >/dev/null; then cxx=$c; break; fi
  done
fi
if [[ -z $cxx ]]; then
  echo "SKIP: no clang++ found (installers/setup.sh installs clang + libclang-rt-14-dev)"
  exit $skip
fi
mkdir -p "$work/corpus" "$work/artifacts"
bin=$work/fuzz_$target
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -I"$src/daemon")
if ! "$cxx" "${flags[@]}" -x c++ /dev/null -o /dev/null -c 2>/dev/null; then
  echo "SKIP: $cxx cannot compile with -fsanitize=fuzzer (libclang-rt-*-dev missing?)"
  exit $skip
fi
echo "building $bin with $cxx"
"$cxx" "${flags[@]}" "$src/fuzz/fuzz_$target.cpp" "${sources[@]}" -o "$bin"
# The fuzzer adds new inputs to the first corpus folder: a scratch copy, never the source tree.
cp -f "$src"/fuzz/corpus/"$target"/* "$work/corpus/"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  "${dict[@]}" -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
  "$work/corpus"
