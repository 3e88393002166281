#!/usr/bin/env bash
# CTest driver for `qwen-image inspect`: runs the built CLI on the fixture models and on broken
# copies of them, checking exit codes and messages. Expected parameter counts are computed here
# independently (python3 reading the safetensors headers).
# usage: inspect_cli_test.sh <qwen-image binary> <fixture models dir>
set -uo pipefail
cli=$1
models=$(cd "$2" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() {  # check <name> <expected rc> <pattern in stdout+stderr> -- args...
  local name=$1 want_rc=$2 pattern=$3
  shift 4
  local out rc
  out=$("$cli" inspect "$@" 2>&1)
  rc=$?
  if [[ $rc -ne $want_rc ]]; then
    echo "FAIL $name: exit $rc, expected $want_rc"; echo "$out"; fails=$((fails + 1)); return
  fi
  if ! grep -qF -- "$pattern" <<<"$out"; then
    echo "FAIL $name: output lacks '$pattern'"; echo "$out"; fails=$((fails + 1)); return
  fi
  echo "ok   $name"
}
# Sum of numel over the safetensors files of a folder (independent of the C++ reader).
count_params() {
  python3 - "$@" <<'PY'
import json, struct, sys, glob, math
total = 0
for d in sys.argv[1:]:
    for f in glob.glob(d + "/**/*.safetensors", recursive=True):
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            h = json.loads(fh.read(n))
        total += sum(math.prod(v["shape"]) for k, v in h.items() if k != "__metadata__")
print(total)
PY
}
tiny=$models/qwen-image-tiny
edit=$models/qwen-image-edit-2509-tiny

check help 0 "usage: qwen-image inspect" -- --help
check no-model 2 "--model PATH (or component files) is required" --
check bad-option 2 "unknown option '--frobnicate'" -- --model "$tiny" --frobnicate
check tiny-pipeline 0 "pipeline: QwenImagePipeline" -- --model "$tiny"
check tiny-transformer 0 "QwenImageTransformer2DModel" -- --model "$tiny"
tr_params=$(count_params "$tiny/transformer")
check tiny-transformer-params 0 "$tr_params (" -- --model "$tiny"
all_params=$(count_params "$tiny")
check tiny-total 0 "total: $all_params parameters" -- --model "$tiny"
check tiny-dtype 0 "BF16" -- --model "$tiny"
check edit-processor 0 "Qwen2VLProcessor" -- --model "$edit"
check tensors-listing 0 "transformer_blocks.1.attn.to_q.weight" -- --model "$tiny" --tensors
check config-listing 0 '"num_layers":2' -- --model "$tiny" --config
check single-vae 0 "single component: vae" -- --model "$tiny/vae/diffusion_pytorch_model.safetensors"
vae_params=$(count_params "$tiny/vae")
check single-vae-params 0 "total: $vae_params parameters" -- --model "$tiny/vae/diffusion_pytorch_model.safetensors"

# Broken copies (symlinks to the fixture files; the broken file is replaced by a real one).
copy() { rm -rf "$tmp/m"; cp -rs "$tiny" "$tmp/m"; }
copy; rm -rf "$tmp/m/vae"
check missing-vae 1 "component folder 'vae'" -- --model "$tmp/m"
copy; rm "$tmp/m/transformer/config.json"
check missing-config 1 "'transformer' has no config.json" -- --model "$tmp/m"
copy; rm "$tmp/m/model_index.json"; echo '{"_class_name": ' >"$tmp/m/model_index.json"
check bad-index 1 "model_index.json is not valid JSON" -- --model "$tmp/m"
copy; f=$tmp/m/transformer/diffusion_pytorch_model.safetensors
head -c 4000 "$tiny/transformer/diffusion_pytorch_model.safetensors" >"$tmp/t"; rm "$f"; mv "$tmp/t" "$f"
check truncated 1 "truncated" -- --model "$tmp/m"
check truncated-names-file 1 "transformer/diffusion_pytorch_model.safetensors" -- --model "$tmp/m"
copy; f=$tmp/m/vae/diffusion_pytorch_model.safetensors; rm "$f"; printf 'not a safetensors file at all' >"$f"
check garbage 1 "broken checkpoint" -- --model "$tmp/m"
copy; rm "$tmp/m/text_encoder/model.safetensors"
check no-weights 1 "'text_encoder' has no .safetensors weights" -- --model "$tmp/m"
check absent 1 "does not exist" -- --model "$tmp/nope"

# Component files: the engine's loading path (io::ModelSources), same options as `generate`.
tr=$tiny/transformer/diffusion_pytorch_model.safetensors
te=$tiny/text_encoder/model.safetensors
vae=$tiny/vae/diffusion_pytorch_model.safetensors
check file-override 0 "transformer file: $tr" -- --model "$tiny" --transformer "$tr"
check file-wrong-kind 1 "$vae" -- --model "$tiny" --transformer "$vae"
check files-need-type 1 "--model-type" -- --transformer "$tr" --text-encoder "$te" --vae "$vae"
check files-typed 0 "model type: qwen-image-edit-2509" -- --transformer "$tr" --text-encoder "$te" \
  --vae "$vae" --model-type qwen-image-edit-2509
check files-processor 0 "processor" -- --transformer "$tr" --text-encoder "$te" --vae "$vae" \
  --model-type qwen-image-edit-2509
check files-missing 1 "missing: --vae" -- --transformer "$tr" --text-encoder "$te"
check files-bad-type 1 "unknown model type" -- --transformer "$tr" --text-encoder "$te" --vae "$vae" \
  --model-type sdxl

[[ $fails -eq 0 ]] || { echo "$fails check(s) failed"; exit 1; }
echo "all inspect checks passed"
