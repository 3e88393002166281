#!/usr/bin/env bash
# bench/gpu/check.sh [--dry-run] [--out DIR] [--build-dir DIR] [--carry DIR] [--budget SECONDS]
#                    [--build-only] [--only STAGE,...] [--jobs N]
#
# The prepared GPU check: ONE command on a lent GPU machine (docs/gpu-check.md), under 8 minutes.
#   configure  CMake (Ninja, Release, no plug-in, no tests) against the carried prefix
#              (bench/gpu/prepare.sh) and the machine's torch (python3's wheel)
#   build      only bench_fixtures, bench_attention, bench_transformer, bench_edit, bench_formats
#   fixtures_f32   the tiny fixture pipelines on CUDA float32, TF32 off, against the goldens
#   t2i_1024, attention, edit_1024, t2i_1328
#              the real-size (20.4B) transformer benches, true CFG, bfloat16: s/step, TFLOP/s, true
#              peak device memory (caching allocator), time outside the step loop; and each SDPA
#              backend (flash, memory-efficient, cuDNN, math) at the real sequence lengths
#   formats    the per-step cost of each weight format (dense bf16, fp8, fp8 scaled, Q8_0, Q4_K) on
#              2 real-size transformer blocks at 1024x1024 with true CFG: s/step, s/block, weight
#              bytes per block and the 60-block estimates (bench_formats)
#   fixtures_bf16  the fixture pipelines on CUDA bfloat16 against CPU bfloat16 (both against the
#              goldens)
#   decompose  Qwen-Image-Layered (bench_edit --decompose 4): the real configuration at 640x640
#              with 4 layers (6 frames, 9,600 image tokens), true CFG: s/step, peak memory
#   fp8_matmul fp8 e4m3 weights (random, per-tensor scale) dequantised per call vs multiplied on
#              fp8 tensor cores (--fp8-matmul off / on): the 20B transformer at 1328x1328 with
#              CFG and Qwen-Image-2.1 at 1024x1024: s/step, TFLOP/s, image estimates
#   quantize   `qwen-image plan` with and without --quantize fp8 on header-only folders of the released
#              20B / 2.1 shapes; on the device the tiny model generated on CUDA with --quantize fp8
#   load       bench_load: 8 real-shape 20B blocks loaded for streaming straight into page-locked host
#              memory vs loaded then copied (load s, host GB, copied GB: 0 expected, peak host memory)
# Every stage has its own timeout, cut to what is left of --budget (default 450 s), so the whole
# run ends in time; the summary ($OUT/summary.md: a table of every number) is rewritten after each
# stage and at exit, whatever failed. Logs: $OUT/{env,build,fixtures,attention,dit}.log (6 files
# in all: the device tool brings back at most 8). Exit code 0 only when every stage passed.
#
# --dry-run: the same stages on the CPU at reduced sizes (float32 instead of CUDA, tiny attention
# and transformer shapes), using an already-built tree (--build-dir, default <repo>/build) instead
# of configure + build; about a minute. CTest runs it (GpuCheck.DryRun) so the script cannot rot.
# --build-only: configure + build, then stop (to test the carried prefix on a machine without GPU;
# QWEN_CHECK_BUILD_TIMEOUT=seconds lifts the build stage's 330 s for a slow machine).
# --only fixtures_f32,attention,...: run only these of the stages after the build (a short rerun).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dry=0
build_only=0
out=""
build_dir=""
carry=""
budget=""
only=""
jobs=$(nproc 2>/dev/null || echo 4)

usage() {
  sed -n '2,3p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2
  echo "see the header of ${BASH_SOURCE[0]} and docs/gpu-check.md" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --build-only) build_only=1 ;;
    --out) out=${2:?--out needs a folder}; shift ;;
    --build-dir) build_dir=${2:?--build-dir needs a folder}; shift ;;
    --carry) carry=${2:?--carry needs a folder}; shift ;;
    --budget) budget=${2:?--budget needs seconds}; shift ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift ;;
    --only) only=",${2:?--only needs stage names},"; shift ;;
    -h | --help) usage ;;
    *) echo "check.sh: unknown option '$1'" >&2; usage ;;
  esac
  shift
done

if [ $dry = 1 ]; then
  mode="dry-run (CPU, reduced sizes)"
  build_dir=${build_dir:-$repo/build}
  budget=${budget:-300}
  out=${out:-$build_dir/gpu-check-dry-run}
else
  mode="device (CUDA)"
  build_dir=${build_dir:-$repo/build-gpu}
  carry=${carry:-$repo/.gpu-carry}
  budget=${budget:-450}
  out=${out:-${OUT:-$build_dir/gpu-check-out}}
fi
case "$budget" in '' | *[!0-9]*) echo "check.sh: --budget must be whole seconds" >&2; exit 2 ;; esac
mkdir -p "$out" || { echo "check.sh: cannot create $out" >&2; exit 2; }
[ $dry = 1 ] || mkdir -p "$build_dir" || { echo "check.sh: cannot create $build_dir" >&2; exit 2; }
out=$(cd "$out" && pwd)
[ -d "$build_dir" ] && build_dir=$(cd "$build_dir" && pwd)
[ -n "$carry" ] && carry=$(cd "$carry" 2>/dev/null && pwd || echo "$carry")
cd "$repo" || exit 2

work=$(mktemp -d /tmp/gpu-check.XXXXXX)
t_start=$(date +%s)
summary=$out/summary.md
rm -f "$out"/{summary.md,env.log,build.log,fixtures.log,attention.log,dit.log}

names=()    # stage names, in order
status=()   # PASS / FAIL (rc N) / TIMEOUT / SKIPPED (...)
seconds=()
limits=()
logs=()
failed=0
finished=0

# ---- the summary -----------------------------------------------------------------------------
kv() { # kv "RESULT a=1 b=2" b -> 2
  printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}
stage_out() { # the output of one stage, or nothing
  [ -f "$work/$1.out" ] && cat "$work/$1.out"
}

write_summary() {
  local now total i line
  now=$(date +%s)
  total=$((now - t_start))
  {
    echo "# GPU check summary"
    echo
    local verdict=PASS
    [ $failed = 0 ] || verdict=FAIL
    if [ "$finished" = 1 ]; then
      echo "**Result: $verdict** (${#names[@]} stages)"
    else
      echo "**Result so far: $verdict** (running: ${#names[@]} stages done)"
    fi
    echo
    echo "- mode: $mode; wall time ${total} s of a ${budget} s budget; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- build dir: $build_dir"
    if [ -f "$work/env.out" ]; then
      sed -n 's/^\(gpu\|torch\|host\|compiler\|cmake\): /- \1: /p' "$work/env.out"
    fi
    echo
    echo "## Stages"
    echo
    echo "| stage | status | seconds | timeout (s) | log |"
    echo "| --- | --- | ---: | ---: | --- |"
    for i in "${!names[@]}"; do
      echo "| ${names[$i]} | ${status[$i]} | ${seconds[$i]} | ${limits[$i]} | ${logs[$i]} |"
    done

    echo
    echo "## Fixture pipelines (tests/fixtures/qwen-tiny)"
    echo
    echo "fixtures_f32: float32, TF32 off, against the goldens (loop: max |diff| of every noise"
    echo "prediction and step latents, tolerance 5e-4; engine: 8-bit levels, tolerance 1)."
    echo "fixtures_bf16: bfloat16 on the device and on the CPU, both against the float32 goldens."
    echo
    echo "| stage | level | case | pass | numbers |"
    echo "| --- | --- | --- | --- | --- |"
    for s in fixtures_f32 fixtures_bf16; do
      stage_out $s | grep '^RESULT check=' | while read -r line; do
        echo "| $s | $(kv "$line" check) | $(kv "$line" case) | $(kv "$line" pass) | $(echo "$line" | cut -d' ' -f5- | sed 's/|/\\|/g') |"
      done
    done

    echo
    echo "## Transformer benches (random weights, true CFG)"
    echo
    echo "| stage | shape | s/step | TFLOP/s | peak alloc GiB | peak reserved GiB | peak RSS GiB | outside loop s | weights s | warm-up s | finite |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    for s in t2i_1024 edit_1024 t2i_1328 decompose; do
      line=$(stage_out $s | grep '^RESULT s_per_step=' | tail -1)
      [ -n "$line" ] || continue
      local shape
      shape=$(stage_out $s | sed -n 's/^\(image\|edit:\|decompose:\) \(.*\), text \([0-9]*\) tokens.*/\1 \2, text \3/p' | head -1)
      shape="$shape; $(stage_out $s | sed -n 's/^config: \([0-9]*\) layers, \([0-9]*\) heads x \([0-9]*\) (\([0-9.]*\) B parameters), \(.*\)$/\1 layers, \2x\3 heads, \4 B params, \5/p' | head -1)"
      echo "| $s | $shape | $(kv "$line" s_per_step) | $(kv "$line" tflops) | $(kv "$line" peak_alloc_gib) | $(kv "$line" peak_reserved_gib) | $(kv "$line" peak_rss_gib) | $(kv "$line" outside_loop_s) | $(kv "$line" weights_s) | $(kv "$line" warmup_s) | $(kv "$line" finite) |"
    done
    echo
    echo "peak alloc/reserved: the caching allocator's peaks over the timed steps (-1: not a CUDA run)."

    echo
    if stage_out formats | grep -q '^RESULT format='; then
      echo "## Weight formats (bench_formats: random weights of each format, kept quantised, dequantised per layer call)"
      echo
      stage_out formats | sed -n 's/^config: \(.*\)$/- \1/p; s/^\(image .*\)$/- \1/p' | head -2
      echo
      echo "| format | s/step | s/block | block weights (MB) | 60-block s/step | 60-block weights GiB | vs dense | finite |"
      echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
      stage_out formats | grep '^RESULT format=' | while read -r line; do
        echo "| $(kv "$line" format) | $(kv "$line" s_per_step) | $(kv "$line" s_per_block) | $(awk -v b="$(kv "$line" block_weight_bytes)" 'BEGIN {printf "%.1f", b / 1e6}') | $(kv "$line" est60_s_per_step) | $(kv "$line" est60_weight_gib) | $(kv "$line" vs_dense) | $(kv "$line" finite) |"
      done
      echo
    fi

    if stage_out qwen21 | grep -q '^RESULT s_per_step='; then
      echo "## Qwen-Image-2.1 transformer (bench_transformer21: random weights, text to image, no CFG)"
      echo
      stage_out qwen21 | sed -n 's/^config: \(.*\)$/- \1/p' | head -1
      echo
      echo "| size | s/step KV cache | s/step uncached | first step s | TFLOP/s cache / uncached | peak alloc GiB cache / uncached | 40-step image s cache / uncached | finite |"
      echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
      stage_out qwen21 | grep '^RESULT s_per_step=' | while read -r line; do
        echo "| $(kv "$line" size) | $(kv "$line" s_per_step) | $(kv "$line" s_per_step_uncached) | $(kv "$line" extract_s) | $(kv "$line" tflops) / $(kv "$line" tflops_uncached) | $(kv "$line" peak_alloc_gib) / $(kv "$line" peak_alloc_uncached_gib) | $(kv "$line" image40_s) / $(kv "$line" image40_uncached_s) | $(kv "$line" finite) |"
      done
      echo
    fi

    if stage_out fp8_matmul | grep -q '^RESULT s_per_step='; then
      echo "## fp8 matmul (fp8 e4m3 weights: dequantised per call vs fp8 tensor cores, --fp8-matmul off / on)"
      echo
      echo "| model | size | fp8 matmul | s/step | TFLOP/s | peak alloc GiB | image s (20B: 50 steps CFG; 2.1: 40 steps KV cache) | finite |"
      echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |"
      stage_out fp8_matmul | grep '^RESULT s_per_step=' | while read -r line; do
        if [ -n "$(kv "$line" image40_s)" ]; then
          echo "| 2.1 | $(kv "$line" size)² | $(kv "$line" fp8_matmul) | $(kv "$line" s_per_step) | $(kv "$line" tflops) | $(kv "$line" peak_alloc_gib) | $(kv "$line" image40_s) | $(kv "$line" finite) |"
        else
          echo "| 20B | $(stage_out fp8_matmul | sed -n 's/^image \([0-9]*x[0-9]*\) .*/\1/p' | head -1) | $(kv "$line" fp8_matmul) | $(kv "$line" s_per_step) | $(kv "$line" tflops) | $(kv "$line" peak_alloc_gib) | $(awk -v s="$(kv "$line" s_per_step)" 'BEGIN {printf "%.2f", 50 * s}') | $(kv "$line" finite) |"
        fi
      done
      echo
      echo "Targets (issues #13/#15, H100): 20B 1328² 50 steps with CFG <= 10 s; 2.1 1024² 40 steps <= 2.5 s."
      echo
    fi

    if stage_out vae21 | grep -q '^RESULT bench_vae21 '; then
      echo "## Qwen-Image-2.1 VAE (bench_vae21: random weights, one RGBA image)"
      echo
      echo "| device | dtype | size | decode s | decode peak alloc GiB | encode s | encode peak alloc GiB |"
      echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
      stage_out vae21 | grep '^RESULT bench_vae21 ' | while read -r line; do
        echo "| $(kv "$line" device) | $(kv "$line" dtype) | $(kv "$line" width)x$(kv "$line" height) | $(kv "$line" decode_s) | $(kv "$line" decode_peak_alloc_gib) | $(kv "$line" encode_s) | $(kv "$line" encode_peak_alloc_gib) |"
      done
      echo
    fi

    if stage_out load | grep -q '^RESULT memory='; then
      echo "## Loading a streamed transformer (bench_load: real-shape blocks, bf16 file)"
      echo
      echo "| path | load s | placement s | host GB | copied GB | peak host GiB |"
      echo "| --- | ---: | ---: | ---: | ---: | ---: |"
      stage_out load | grep '^RESULT memory=' | while read -r line; do
        echo "| $(kv "$line" path) | $(kv "$line" load_s) | $(kv "$line" place_s) | $(kv "$line" host_gb) | $(kv "$line" copied_gb) | $(kv "$line" peak_gib) |"
      done
      echo
    fi

    if stage_out quantize | grep -q '^RESULT plan='; then
      echo "## Quantise-on-load (--quantize fp8): qwen-image plan on the released shapes"
      echo
      echo "| model | card | size | quantize | fits | mode | predicted peak GiB |"
      echo "| --- | ---: | ---: | --- | --- | --- | ---: |"
      stage_out quantize | grep '^RESULT plan=' | while read -r line; do
        echo "| $(kv "$line" plan) | $(kv "$line" vram) | $(kv "$line" size)² | $(kv "$line" quantize) | $(kv "$line" fits) | $(kv "$line" mode) | $(kv "$line" peak_gib) |"
      done
      stage_out quantize | grep -q '^RESULT quantize_cuda=ok' && { echo; echo "The tiny model ran on CUDA with --quantize fp8."; }
      echo
    fi

    echo "## SDPA backends (one backend enabled at a time; rel_err against math in float32)"
    echo
    echo "| case | seq | backend | mask | ms (median) | TFLOP/s | rel_err | peak MiB | ok |"
    echo "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- |"
    stage_out attention | grep '^RESULT case=' | while read -r line; do
      echo "| $(kv "$line" case) | $(kv "$line" seq) | $(kv "$line" backend) | $(kv "$line" mask) | $(kv "$line" ms) | $(kv "$line" tflops) | $(kv "$line" rel_err) | $(kv "$line" peak_mib) | $(kv "$line" ok) |"
    done
    stage_out attention | grep -q '^RESULT case=' &&
      { echo; echo "n/a rows: the backend refused these inputs (reason in attention.log)."; }

    # The end of a failed stage's output, so the summary alone says what broke.
    for i in "${!names[@]}"; do
      case "${status[$i]}" in
        PASS | SKIPPED*) ;;
        *)
          echo
          echo "## ${names[$i]}: ${status[$i]} (last lines of ${logs[$i]})"
          echo
          echo '```'
          stage_out "${names[$i]}" | grep -v '^\[[0-9]*/[0-9]*\] ' | tail -15
          echo '```'
          ;;
      esac
    done
  } >"$summary.tmp" 2>/dev/null
  mv -f "$summary.tmp" "$summary"
}

finish() {
  local rc=$?
  finished=1
  write_summary
  # The device tool brings back files of at most 16 MiB.
  for f in "$out"/*.log; do
    [ -f "$f" ] || continue
    if [ "$(stat -c %s "$f")" -gt 15728640 ]; then
      tail -c 15000000 "$f" >"$f.tmp" && mv -f "$f.tmp" "$f"
    fi
  done
  rm -rf "$work"
  echo
  cat "$summary"
  echo
  echo "summary: $summary; logs: $out"
  [ $rc != 0 ] && exit $rc
  [ $failed = 0 ] && exit 0 || exit 1
}
trap finish EXIT
trap 'exit 130' INT TERM

# ---- stages --------------------------------------------------------------------------------------
record() { # name status seconds limit log
  names+=("$1")
  status+=("$2")
  seconds+=("$3")
  limits+=("$4")
  logs+=("$5")
  case "$2" in PASS) ;; *) failed=1 ;; esac
  write_summary
}

# run_stage NAME LOG TIMEOUT [--check FUNC] -- CMD...
run_stage() {
  local name=$1 log=$2 limit=$3 check=""
  shift 3
  if [ "$1" = --check ]; then check=$2; shift 2; fi
  [ "$1" = -- ] && shift
  case "$name" in
    env | targets | configure | build) ;;
    *) [ -z "$only" ] || [[ "$only" == *",$name,"* ]] || return 0 ;;
  esac
  local now left t rc st t0 dt
  now=$(date +%s)
  left=$((t_start + budget - now - 10))
  if [ $left -lt 15 ]; then
    echo "==== $name: skipped, the ${budget} s budget is spent" | tee -a "$out/$log"
    record "$name" "SKIPPED (no time left)" 0 "$limit" "$log"
    return 1
  fi
  t=$((limit < left ? limit : left))
  {
    echo
    if [ "$1" = bash ] && [ "$2" = -c ]; then # a function of this script: set -x shows its commands
      echo "==== $name (timeout ${t} s)"
    else
      echo "==== $name (timeout ${t} s): $*"
    fi
  } | tee -a "$out/$log"
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$t" "$@" >"$work/$name.out" 2>&1
  rc=$?
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  cat "$work/$name.out" >>"$out/$log"
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    st="TIMEOUT (${t} s)"
  elif [ $rc != 0 ]; then
    st="FAIL (exit $rc)"
  else
    st=PASS
    if [ -n "$check" ]; then
      local why
      why=$($check "$work/$name.out") || st="FAIL ($why)"
    fi
  fi
  echo "==== $name: $st in $dt s" | tee -a "$out/$log"
  record "$name" "$st" "$dt" "$t" "$log"
  [ "$st" = PASS ]
}

skip_stage() { # name log reason
  echo "==== $1: skipped ($3)" | tee -a "$out/$2"
  record "$1" "SKIPPED ($3)" 0 - "$2"
}

check_dit() { # the bench printed its RESULT line and the output is finite
  local line
  line=$(grep '^RESULT s_per_step=' "$1" | tail -1)
  [ -n "$line" ] || { echo "no RESULT line"; return 1; }
  [ "$(kv "$line" finite)" = yes ] || { echo "non-finite output"; return 1; }
}

check_fp8() { # four finite RESULT lines (20B and 2.1, off and on), the "on" ones really on
  local n
  n=$(grep -c '^RESULT s_per_step=.* weights=fp8 ' "$1")
  [ "$n" = 4 ] || { echo "$n of 4 RESULT lines"; return 1; }
  grep '^RESULT s_per_step=' "$1" | grep -q 'finite=no' && { echo "non-finite output"; return 1; }
  [ "$(grep -c '^RESULT s_per_step=.* fp8_matmul=on' "$1")" = 2 ] || { echo "fp8 matmul not on"; return 1; }
}

check_vae21() { # bench_vae21 printed its RESULT line with a decode time
  local line
  line=$(grep '^RESULT bench_vae21 ' "$1" | tail -1)
  [ -n "$line" ] || { echo "no RESULT line"; return 1; }
  awk -v s="$(kv "$line" decode_s)" 'BEGIN { exit !(s > 0) }' || { echo "no decode time"; return 1; }
}

check_formats() { # one finite RESULT line per format
  local n bad
  n=$(grep -c '^RESULT format=' "$1")
  [ "$n" -ge 1 ] || { echo "no RESULT line"; return 1; }
  bad=$(grep '^RESULT format=' "$1" | grep -v 'finite=yes' | sed 's/^RESULT format=\([^ ]*\).*/\1/' | tr '\n' ' ')
  [ -z "$bad" ] || { echo "non-finite output: $bad"; return 1; }
}

env_report() {
  echo "host: $(uname -srm), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(ldd --version 2>&1 | head -1)"
  if command -v nvidia-smi >/dev/null; then
    echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
  else
    echo "gpu: none (no nvidia-smi)"
  fi
  local py=${QWEN_CHECK_PYTHON:-python3}
  [ $dry = 1 ] && [ -x "$repo/.venv/bin/python" ] && py=$repo/.venv/bin/python
  echo "torch: $("$py" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "gpu available:", torch.cuda.is_available())' 2>&1 | tail -1)"
  echo "compiler: $(${CXX:-c++} --version 2>&1 | head -1)"
  echo "cmake: $(cmake --version 2>&1 | head -1), ninja $(ninja --version 2>&1 | head -1)"
  echo "disk: $(df -h "$repo" 2>/dev/null | tail -1)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi 2>&1 | head -20
  fi
}

# ---- configure + build (device) or the existing tree (dry run) ------------------------------------
# QWEN_CHECK_TARGETS overrides the list (e.g. torch-free targets, to test the carried prefix quickly).
read -r -a targets <<<"${QWEN_CHECK_TARGETS:-bench_fixtures bench_attention bench_transformer bench_edit bench_formats}"
# bench_lora (issue #14): its own line so that the list above stays as it is.
[ -n "${QWEN_CHECK_TARGETS:-}" ] || targets+=(bench_lora)
# bench_transformer21 (Qwen-Image-2.1, issue #15): likewise.
[ -n "${QWEN_CHECK_TARGETS:-}" ] || targets+=(bench_transformer21)
# bench_vae21 (the Qwen-Image-2.1 RGBA VAE): likewise.
[ -n "${QWEN_CHECK_TARGETS:-}" ] || targets+=(bench_vae21)
# bench_load (placed weights loaded into page-locked host memory): likewise.
[ -n "${QWEN_CHECK_TARGETS:-}" ] || targets+=(bench_load)
# qwen-image (the CLI, for the quantize stage's plans and --quantize fp8 run): device builds only
# (the dry run looks for the bench targets in bench/; it uses the tree's daemon/cli/qwen-image).
[ $dry = 1 ] || [ -n "${QWEN_CHECK_TARGETS:-}" ] || targets+=(qwen-image)
run_stage env env.log 60 -- bash -c "$(declare -f env_report); dry=$dry repo='$repo' env_report"

built=0
if [ $dry = 1 ]; then
  check_targets() {
    local missing=""
    for t in "${targets[@]}"; do [ -x "$build_dir/bench/$t" ] || missing="$missing $t"; done
    if [ -n "$missing" ]; then
      echo "missing in $build_dir/bench:$missing; build them: cmake --build $build_dir --target ${targets[*]}"
      return 1
    fi
    echo "found ${targets[*]} in $build_dir/bench"
    echo "(the device run configures and builds them itself: see docs/gpu-check.md)"
  }
  run_stage targets build.log 10 -- bash -c "$(declare -f check_targets); targets=(${targets[*]}); build_dir='$build_dir'; check_targets" && built=1
else
  py=${QWEN_CHECK_PYTHON:-python3}
  # The carried .pc files, for configure and for any re-run of CMake during the build.
  export PKG_CONFIG_PATH="$carry/prefix/lib/x86_64-linux-gnu/pkgconfig:$carry/prefix/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  configure() {
    set -e
    if [ ! -d "$carry/prefix" ]; then
      echo "no carried prefix at $carry/prefix: run bench/gpu/prepare.sh on the development machine and carry .gpu-carry"
      exit 1
    fi
    chmod +x "$carry/prefix/bin/"* 2>/dev/null || true # in case the copy lost the mode bits
    # The carried pkgconf (Debian 12 build) needs glibc >= 2.34; elsewhere the machine's own
    # pkg-config reads the carried .pc files just as well.
    local pkgconfig="$carry/prefix/bin/pkg-config"
    if ! "$pkgconfig" --version >/dev/null 2>&1; then
      echo "the carried pkg-config does not run here: $("$pkgconfig" --version 2>&1 | head -1)"
      pkgconfig=$(command -v pkg-config || command -v pkgconf || true)
      [ -n "$pkgconfig" ] || { echo "and the machine has no pkg-config"; exit 1; }
      echo "using $pkgconfig"
    fi
    local tp
    tp=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
    echo "torch's CMake prefix ($py): $tp"
    local gen=Ninja
    command -v ninja >/dev/null || gen="Unix Makefiles"
    if [ -f "$build_dir/CMakeCache.txt" ] && ! grep -q "^CMAKE_GENERATOR:INTERNAL=$gen\$" "$build_dir/CMakeCache.txt"; then
      echo "$build_dir was configured with another generator: starting afresh"
      rm -rf "$build_dir/CMakeCache.txt" "$build_dir/CMakeFiles"
    fi
    set -x
    cmake -S "$repo" -B "$build_dir" -G "$gen" -DCMAKE_BUILD_TYPE=Release \
      -DQWEN_IMAGE_BUILD_TESTS=OFF -DQWEN_IMAGE_BUILD_PLUGIN=OFF -DQWEN_IMAGE_CCACHE=OFF \
      -DCMAKE_PREFIX_PATH="$carry/prefix;$tp" \
      -DPKG_CONFIG_EXECUTABLE="$pkgconfig" \
      -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" \
      -DCMAKE_POLICY_VERSION_MINIMUM=3.5 --no-warn-unused-cli
  }
  build() {
    set -x
    cmake --build "$build_dir" --target "${targets[@]}" -j "$jobs"
  }
  if run_stage configure build.log 150 -- bash -c "$(declare -f configure); carry='$carry' py='$py' repo='$repo' build_dir='$build_dir'; configure"; then
    run_stage build build.log "${QWEN_CHECK_BUILD_TIMEOUT:-330}" -- bash -c "$(declare -f build); targets=(${targets[*]}); build_dir='$build_dir' jobs='$jobs'; build" && built=1
  else
    skip_stage build build.log "configure failed"
  fi
fi

b=$build_dir/bench
if [ $build_only = 1 ]; then
  echo "--build-only: stopping after the build"
elif [ $built = 0 ]; then
  for s in fixtures_f32 t2i_1024 attention edit_1024 t2i_1328 formats fixtures_bf16; do
    case $s in fixtures_*) l=fixtures.log ;; attention) l=attention.log ;; *) l=dit.log ;; esac
    skip_stage $s $l "no build"
  done
elif [ $dry = 1 ]; then
  # CPU, float32 / reduced shapes, 2 threads (what CI has); the device's order.
  small=(--device cpu --dtype float32 --reduced --layers 1 --heads 2 --txt-len 16 --steps 1 --warmup 1 --threads 2)
  run_stage fixtures_f32 fixtures.log 120 -- "$b/bench_fixtures" --device cpu --dtype float32 --against golden --threads 2
  run_stage t2i_1024 dit.log 60 --check check_dit -- "$b/bench_transformer" "${small[@]}" --width 64 --height 64
  run_stage attention attention.log 60 -- "$b/bench_attention" --device cpu --dtype float32 --heads 2 --head-dim 64 \
    --seq t2i-1024:136,t2i-1328:220,edit-1024:264 --iters 2 --warmup 1 --with-mask --threads 2
  run_stage edit_1024 dit.log 60 --check check_dit -- "$b/bench_edit" "${small[@]}" --width 64 --height 64
  run_stage t2i_1328 dit.log 60 --check check_dit -- "$b/bench_transformer" "${small[@]}" --width 80 --height 80
  run_stage formats dit.log 60 --check check_formats -- "$b/bench_formats" --device cpu --dtype float32 --heads 2 \
    --layers 1 --width 32 --height 32 --txt-len 8 --steps 1 --warmup 1 --threads 2
  run_stage fixtures_bf16 fixtures.log 120 -- "$b/bench_fixtures" --device cpu --dtype bfloat16 --against cpu --threads 2 \
    --cases loop:pipeline_t2i_cfg1,engine:pipeline_t2i_cfg1
else
  # Correctness first, then the numbers most wanted; the CPU-heavy bf16 comparison last.
  real=(--device cuda --dtype bfloat16 --steps 3 --warmup 1)
  run_stage fixtures_f32 fixtures.log 100 -- "$b/bench_fixtures" --device cuda --dtype float32 --against golden
  run_stage t2i_1024 dit.log 120 --check check_dit -- "$b/bench_transformer" "${real[@]}" --width 1024 --height 1024
  run_stage attention attention.log 120 -- "$b/bench_attention" --device cuda --dtype bfloat16 --with-mask
  run_stage edit_1024 dit.log 120 --check check_dit -- "$b/bench_edit" "${real[@]}" --width 1024 --height 1024
  run_stage t2i_1328 dit.log 120 --check check_dit -- "$b/bench_transformer" "${real[@]}" --width 1328 --height 1328
  run_stage formats dit.log 90 --check check_formats -- "$b/bench_formats" --device cuda --dtype bfloat16 \
    --layers 2 --width 1024 --height 1024 --steps 3 --warmup 1
  run_stage fixtures_bf16 fixtures.log 120 -- "$b/bench_fixtures" --device cuda --dtype bfloat16 --against cpu
fi
# LoRA cost (bench_lora, issue #14): s/step without LoRA, with a LoRA on every block Linear as a side
# branch and merged, ranks 16/64/128 (device: 24 real-size blocks at 1024x1024, bfloat16), and the
# time to switch LoRA sets.
if [ $build_only = 0 ]; then
  if [ $built = 0 ] || [ ! -x "$b/bench_lora" ]; then
    skip_stage lora dit.log "no build"
  elif [ $dry = 1 ]; then
    run_stage lora dit.log 60 -- "$b/bench_lora" --device cpu --dtype float32 --reduced --layers 1 --heads 2 \
      --width 64 --height 64 --txt-len 8 --ranks 4,16 --steps 1 --warmup 1 --threads 2
  else
    run_stage lora dit.log 120 -- "$b/bench_lora" --device cuda --dtype bfloat16 --width 1024 --height 1024 \
      --ranks 16,64,128 --steps 3 --warmup 1
  fi
fi
# Memory modes (issue #13, docs/memory.md): the modulation weights off the device and block
# streaming (30 of 60 blocks resident) at 1328x1328 with CFG: peak, s/step and streamed GB/s
# (RESULT memory= streamed_gb_per_step= stream_gbps= precompute_s=).
if [ $build_only = 0 ]; then
  if [ $built = 0 ]; then
    skip_stage memory_modulation dit.log "no build"
    skip_stage memory_stream dit.log "no build"
  elif [ $dry = 1 ]; then
    mem=(--device cpu --dtype float32 --reduced --layers 2 --heads 2 --txt-len 16 --steps 1 --warmup 1 --threads 2)
    run_stage memory_modulation dit.log 60 --check check_dit -- "$b/bench_transformer" "${mem[@]}" \
      --width 64 --height 64 --memory modulation
    run_stage memory_stream dit.log 60 --check check_dit -- "$b/bench_edit" "${mem[@]}" \
      --width 64 --height 64 --memory stream --resident-blocks 1
  else
    mem=(--device cuda --dtype bfloat16 --steps 3 --warmup 1 --width 1328 --height 1328)
    run_stage memory_modulation dit.log 150 --check check_dit -- "$b/bench_transformer" "${mem[@]}" \
      --memory modulation
    run_stage memory_stream dit.log 150 --check check_dit -- "$b/bench_transformer" "${mem[@]}" \
      --memory stream --resident-blocks 30
  fi
fi
# Qwen-Image-2.1 transformer (issue #15, bench_transformer21): the real 7.1B configuration with random
# weights, bfloat16, text to image at 1024x1024 and 2048x2048: s/step with and without the KV cache,
# TFLOP/s, peak memory (RESULT s_per_step= s_per_step_uncached= extract_s= ... size=).
if [ $build_only = 0 ]; then
  if [ $built = 0 ] || [ ! -x "$b/bench_transformer21" ]; then
    skip_stage qwen21 dit.log "no build"
  elif [ $dry = 1 ]; then
    run_stage qwen21 dit.log 60 --check check_dit -- "$b/bench_transformer21" --device cpu --dtype float32 \
      --reduced --layers 1 --heads 2 --txt-len 16 --sizes 64,96 --steps 1 --warmup 1 --threads 2
  else
    run_stage qwen21 dit.log 150 --check check_dit -- "$b/bench_transformer21" --device cuda --dtype bfloat16 \
      --sizes 1024,2048 --steps 3 --warmup 1
  fi
fi
# fp8 matmul (issues #13/#15, --fp8-matmul): fp8 e4m3 weights (bench --weights fp8: random, per-tensor
# scale) dequantised per call (off) and multiplied on fp8 tensor cores (on), the 20B transformer at
# 1328x1328 with CFG and Qwen-Image-2.1 at 1024x1024 (RESULT ... weights=fp8 fp8_matmul=off|on).
if [ $build_only = 0 ]; then
  if [ $built = 0 ] || [ ! -x "$b/bench_transformer21" ]; then
    skip_stage fp8_matmul dit.log "no build"
  else
    if [ $dry = 1 ]; then
      f20=(--device cpu --dtype float32 --reduced --layers 1 --heads 2 --txt-len 16 --steps 1 --warmup 1 --threads 2 --width 64 --height 64)
      f21=(--device cpu --dtype float32 --reduced --layers 1 --heads 2 --txt-len 16 --sizes 64 --steps 1 --warmup 1 --threads 2)
    else
      f20=(--device cuda --dtype bfloat16 --steps 3 --warmup 1 --width 1328 --height 1328)
      f21=(--device cuda --dtype bfloat16 --sizes 1024 --steps 3 --warmup 1)
    fi
    run_stage fp8_matmul dit.log 240 --check check_fp8 -- bash -c "set -e; for m in off on; do
        '$b/bench_transformer' ${f20[*]} --weights fp8 --fp8-matmul \$m
        '$b/bench_transformer21' ${f21[*]} --weights fp8 --fp8-matmul \$m
      done"
  fi
fi
# Qwen-Image-2.1 VAE (issue #15, bench_vae21): the released configuration with random weights, bfloat16:
# decode and encode of one 1024x1024 RGBA image, seconds per call and peak memory
# (RESULT bench_vae21 ... decode_s= decode_peak_alloc_gib= encode_s= encode_peak_alloc_gib=).
if [ $build_only = 0 ]; then
  if [ $built = 0 ] || [ ! -x "$b/bench_vae21" ]; then
    skip_stage vae21 dit.log "no build"
  elif [ $dry = 1 ]; then
    run_stage vae21 dit.log 60 --check check_vae21 -- "$b/bench_vae21" --device cpu --width 64 --height 64 \
      --encode --repeat 1 --threads 2
  else
    run_stage vae21 dit.log 120 --check check_vae21 -- "$b/bench_vae21" --device cuda --dtype bfloat16 \
      --width 1024 --height 1024 --encode --repeat 3
  fi
fi
# Qwen-Image-Layered decompose (issue #16, bench_edit --decompose): the real configuration (plus the Layer3D
# RoPE and the additional timestep embedding) at 640x640 with 4 layers, i.e. 6 frames (9,600 image tokens),
# with CFG: s/step and peak memory.
if [ $build_only = 0 ]; then
  if [ $built = 0 ]; then
    skip_stage decompose dit.log "no build"
  elif [ $dry = 1 ]; then
    run_stage decompose dit.log 60 --check check_dit -- "$b/bench_edit" --device cpu --dtype float32 --reduced \
      --layers 1 --heads 2 --txt-len 16 --steps 1 --warmup 1 --threads 2 --width 64 --height 64 --decompose 4
  else
    run_stage decompose dit.log 150 --check check_dit -- "$b/bench_edit" --device cuda --dtype bfloat16 \
      --steps 3 --warmup 1 --width 640 --height 640 --decompose 4
  fi
fi
# Quantise-on-load (--quantize fp8, docs/memory.md): `qwen-image plan` on header-only folders of the
# released shapes (tests/plan/make_qwen_image_header_only.py, make_qwen21_header_only.py: no weights) with
# and without --quantize fp8, the 20B model at 1328x1328 and Qwen-Image-2.1 at 1024x1024, 24 and 16 GiB
# (RESULT plan= ... peak_gib=); on the device also the tiny fixture model generated on CUDA with
# --quantize fp8 (the host quantisation and the fp8 upload; RESULT quantize_cuda=).
quantize_check() {
  set -e
  local q20=$work/q20 q21=$work/q21 rc model dir side vram q mode peak
  python3 "$repo/tests/plan/make_qwen_image_header_only.py" "$q20"
  python3 "$repo/tests/plan/make_qwen21_header_only.py" "$q21"
  for spec in "qwen-image $q20 1328" "qwen-image-2.1 $q21 1024"; do
    read -r model dir side <<<"$spec"
    for vram in 24GiB 16GiB; do
      for q in none fp8; do
        echo "\$ qwen-image plan --model <$model> --vram $vram --width $side --height $side --quantize $q"
        rc=0
        "$qi" plan --model "$dir" --vram $vram --width $side --height $side --quantize $q >"$work/plan.txt" 2>&1 || rc=$?
        cat "$work/plan.txt"
        [ $rc -le 1 ] || exit $rc
        mode=$(sed -n 's/^memory mode: \([^ ]*\).*/\1/p' "$work/plan.txt" | head -1)
        peak=$(sed -n 's/^predicted peak: \([0-9.]*\) GiB$/\1/p' "$work/plan.txt" | head -1)
        echo "RESULT plan=$model vram=$vram size=$side quantize=$q fits=$((1 - rc)) mode=${mode:-none} peak_gib=${peak:-n/a}"
      done
    done
  done
  rm -rf "$q20" "$q21"
  if [ "$dry" = 0 ]; then
    "$qi" generate --model "$repo/tests/fixtures/qwen-tiny/models/qwen-image-tiny" --device cuda --quantize fp8 \
      --prompt "a red fox" --width 64 --height 64 --steps 2 --output "$work/quantize_fp8.png"
    echo "RESULT quantize_cuda=ok"
  fi
}
if [ $build_only = 0 ]; then
  qi=$build_dir/daemon/cli/qwen-image
  if [ $built = 0 ] || [ ! -x "$qi" ]; then
    skip_stage quantize dit.log "no qwen-image build"
  else
    run_stage quantize dit.log 90 -- bash -c "$(declare -f quantize_check); dry=$dry repo='$repo' work='$work' qi='$qi'; quantize_check"
  fi
fi
# Loading a placed transformer (issue #13, bench_load): real-shape 20B blocks (bf16 file) loaded for the
# streamed placement straight into one page-locked host buffer (--path host, models::HostLoad: the
# engine's way) and the old way (--path plain: loaded, then copied by the placement): load seconds,
# host GB held, GB the placement still copied (0 when the pinned buffer is taken over), peak host
# memory (RESULT memory= path= load_s= place_s= host_gb= copied_gb= peak_gib=).
check_load() { # both paths printed a RESULT line; the host path copied nothing
  [ "$(grep -c '^RESULT memory=' "$1")" = 2 ] || { echo "not 2 RESULT lines"; return 1; }
  awk '/^RESULT memory=.* path=host /' "$1" | grep -q ' copied_gb=0.000 ' ||
    { echo "the host path copied weights again"; return 1; }
}
if [ $build_only = 0 ]; then
  if [ $built = 0 ] || [ ! -x "$b/bench_load" ]; then
    skip_stage load dit.log "no build"
  else
    if [ $dry = 1 ]; then ld=(--device cpu --layers 1); else ld=(--device cuda --layers 8); fi
    run_stage load dit.log 120 --check check_load -- bash -c "set -e; for p in host plain; do
        '$b/bench_load' ${ld[*]} --memory stream --dtype bfloat16 --path \$p --file '$work/bench_load.safetensors'
      done"
  fi
fi
exit 0 # finish() sets the exit code from the stages
