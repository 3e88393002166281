#!/usr/bin/env bash
# `qwen-image plan` on the fixture models: one line per component, the predicted peak last, exit
# status 0 when it fits, 1 with advice when nothing fits, 2 on usage errors; --list-modes.
# Usage: plan_cli_test.sh QWEN_IMAGE_BINARY FIXTURE_MODELS_DIR
set -u
bin="$1"
models="$2"
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; else echo "ok: $1"; fi; }

modes="$("$bin" plan --list-modes)"; rc=$?
check "list-modes exits 0" '[ $rc -eq 0 ]'
check "list-modes starts with auto" '[ "$(echo "$modes" | head -1)" = auto ]'
check "list-modes names stream" 'echo "$modes" | grep -qx stream'

for m in qwen-image-tiny qwen-image-edit-2509-tiny; do
  out="$("$bin" plan --model "$models/$m" --vram 4G --width 256 --height 256 2>&1)"; rc=$?
  check "$m fits 4G (rc $rc)" '[ $rc -eq 0 ]'
  check "$m lines" 'echo "$out" | grep -q "^transformer: " && echo "$out" | grep -q "^text_encoder: " && echo "$out" | grep -q "^vae: "'
  check "$m ends with the predicted peak" 'echo "$out" | tail -1 | grep -Eq "^predicted peak: [0-9]+\.[0-9] GiB$"'
  for mode in $modes; do
    out="$("$bin" plan --model "$models/$m" --vram 4G --width 256 --height 256 --memory "$mode" 2>&1)"; rc=$?
    check "$m --memory $mode (rc $rc)" '[ $rc -eq 0 ] && echo "$out" | tail -1 | grep -q "^predicted peak: "'
  done
done

out="$("$bin" plan --model "$models/qwen-image-tiny" --vram 100M 2>&1)"; rc=$?
check "nothing fits 100M exits 1 (rc $rc)" '[ $rc -eq 1 ]'
check "nothing fits says so" 'echo "$out" | grep -q "does not fit"'
out="$("$bin" plan --model "$models/qwen-image-tiny" 2>&1)"; rc=$?
check "missing --vram is a usage error (rc $rc)" '[ $rc -eq 2 ] && echo "$out" | grep -q -- "--vram"'
out="$("$bin" plan --model "$models/qwen-image-tiny" --vram 24X 2>&1)"; rc=$?
check "bad --vram names the value (rc $rc)" '[ $rc -eq 1 ] && echo "$out" | grep -q "24X"'
out="$("$bin" plan --model "$models/qwen-image-tiny" --vram 2G --memory nope 2>&1)"; rc=$?
check "unknown mode is a usage error (rc $rc)" '[ $rc -eq 2 ] && echo "$out" | grep -q "nope"'
# Quantise-on-load: the transformer line says so; a bad value is a usage error naming it.
out="$("$bin" plan --model "$models/qwen-image-tiny" --vram 4G --quantize fp8 2>&1)"; rc=$?
check "--quantize fp8 (rc $rc)" '[ $rc -eq 0 ] && echo "$out" | grep -q "^transformer: resident (.*F8_E4M3\*scale (quantised at load)"'
out="$("$bin" plan --model "$models/qwen-image-tiny" --vram 4G --quantize fp4 2>&1)"; rc=$?
check "unknown --quantize is a usage error (rc $rc)" '[ $rc -eq 2 ] && echo "$out" | grep -q "fp4"'
out="$("$bin" plan --model "$models/does-not-exist" --vram 2G 2>&1)"; rc=$?
check "missing model names it (rc $rc)" '[ $rc -eq 1 ] && echo "$out" | grep -q "does-not-exist"'
# Qwen-Image-2.1 (issue #15) on a folder of the released shapes with no weights (header-only
# safetensors): a 24 GB card fits in bf16 with the text encoder offloaded, 80 GB all resident, and the
# KV cache of 10 references is turned off by a plan line at 24 GB.
q21=$(mktemp -d)
if python3 "$(dirname "$0")/make_qwen21_header_only.py" "$q21/model"; then
  out="$("$bin" plan --model "$q21/model" --vram 24GiB --width 1024 --height 1024 2>&1)"; rc=$?
  check "2.1 fits 24GiB (rc $rc)" '[ $rc -eq 0 ]'
  check "2.1 24GiB: offload-text" 'echo "$out" | head -1 | grep -q "^memory mode: offload-text (auto)"'
  check "2.1 24GiB: text encoder offloaded" 'echo "$out" | grep -q "^text_encoder: offload (15.2 GiB BF16"'
  check "2.1 24GiB: transformer 13.3 GiB, swapped while encoding" 'echo "$out" | grep -q "^transformer: resident (13.3 GiB on the device, BF16; in pinned host memory while the text encoder encodes)"'
  check "2.1 24GiB: KV cache on" 'echo "$out" | grep -q "^kv_cache: on ("'
  check "2.1 24GiB: predicted peak last, under 24" 'echo "$out" | tail -1 | grep -Eq "^predicted peak: (1[0-9]|2[0-3])\.[0-9] GiB$"'
  out="$("$bin" plan --model "$q21/model" --vram 80GiB --width 1024 --height 1024 2>&1)"; rc=$?
  check "2.1 80GiB: resident (rc $rc)" '[ $rc -eq 0 ] && echo "$out" | head -1 | grep -q "^memory mode: resident (auto)"'
  out="$("$bin" plan --model "$q21/model" --vram 24GiB --edit-images 10 2>&1)"; rc=$?
  check "2.1 10 references at 24GiB: fits without the KV cache (rc $rc)" '[ $rc -eq 0 ] && echo "$out" | grep -q "^kv_cache: off (it would need "'
  out="$("$bin" plan --model "$q21/model" --vram 24GiB --memory resident 2>&1)"; rc=$?
  check "2.1 resident does not fit 24GiB (rc $rc)" '[ $rc -eq 1 ] && echo "$out" | grep -q "does not fit"'
else
  check "make_qwen21_header_only.py runs" 'false'
fi
rm -rf "$q21"
# --memory on the model commands: a bad name is a usage error naming it; a mode runs.
tmp=$(mktemp -d)
out="$("$bin" generate --model "$models/qwen-image-tiny" --memory nope --prompt x --output "$tmp/x.png" 2>&1)"; rc=$?
check "generate --memory nope is a usage error (rc $rc)" '[ $rc -eq 2 ] && echo "$out" | grep -q "nope"'
out="$("$bin" generate --model "$models/qwen-image-tiny" --device cpu --threads 2 --memory stream --prompt "a fox" \
  --negative-prompt " " --width 32 --height 32 --steps 2 --output "$tmp/s.png" 2>&1)"; rc=$?
check "generate --memory stream runs (rc $rc)" '[ $rc -eq 0 ] && [ -s "$tmp/s.png" ]'
check "generate --memory stream logs its plan" 'echo "$out" | grep -q "memory mode stream"'
out="$("$bin" generate --model "$models/qwen-image-tiny" --device cpu --threads 2 --prompt "a fox" \
  --negative-prompt " " --width 32 --height 32 --steps 2 --quiet --output "$tmp/r.png" 2>&1)"; rc=$?
check "generate resident runs (rc $rc)" '[ $rc -eq 0 ] && [ -s "$tmp/r.png" ]'
check "stream and resident PNGs are identical" 'cmp -s "$tmp/s.png" "$tmp/r.png"'
rm -rf "$tmp"
exit $fail
