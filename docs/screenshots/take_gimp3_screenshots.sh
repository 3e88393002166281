#!/usr/bin/env bash
# Takes the GIMP 3.2 dialog screenshots of docs/gimp3.md: gimp-3.2 (full GUI) runs in the forky
# chroot of tests/plugin_gimp3 on a host Xvfb and calls the five procedures with RUN-INTERACTIVE;
# the plug-in's test hook (QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT) saves each rendered dialog as
# gimp3-<procedure>.png and cancels it. A fake-engine qwen-imaged on the host serves the tiny
# text-to-image, Edit-2509 and Layered models and a LoRA folder with a Lightning LoRA, so that the
# model lists and the caps-driven rows (LoRAs, Fast (Lightning), reference layers) show; the
# LoRA rows get kohya_musubi at 0.8 in row 1 (the QWEN_IMAGE_GIMP_DIALOG_PICK test hook).
#
# Usage (root: chroot, mount namespaces): docs/screenshots/take_gimp3_screenshots.sh [OUT_DIR]
#   OUT_DIR             where the PNGs go (default: docs/screenshots)
#   QWEN_IMAGED         the daemon (default: build/daemon/server/qwen-imaged)
#   QWEN_GIMP3_PLUGIN   a qwen-image-gimp3 built for GIMP 3 (default: built in the chroot, as the
#                       tests do, in /var/cache/qwen-build-gimp3<source path with / as _>)
#   QWEN_GIMP32_CHROOT  the chroot (default: /var/cache/qwen-image/forky-gimp3; made by
#                       tests/plugin_gimp3/setup_chroot.sh forky)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mkdir -p "${1:-$SRC/docs/screenshots}" && cd "${1:-$SRC/docs/screenshots}" && pwd)
ROOT=${QWEN_GIMP32_CHROOT:-/var/cache/qwen-image/forky-gimp3}
DAEMON=${QWEN_IMAGED:-$SRC/build/daemon/server/qwen-imaged}
MODELS=$SRC/tests/fixtures/qwen-tiny/models

die() { echo "take_gimp3_screenshots.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (chroot and mount namespaces)"
[[ -f $ROOT/.qwen-ready ]] || die "no GIMP 3.2 chroot at $ROOT: run tests/plugin_gimp3/setup_chroot.sh forky $ROOT"
[[ -x $ROOT/usr/bin/gimp-3.2 ]] || die "$ROOT has no /usr/bin/gimp-3.2"
[[ -x $DAEMON ]] || die "no qwen-imaged at $DAEMON: build it (target qwen-imaged) or set QWEN_IMAGED"
command -v Xvfb >/dev/null || die "needs Xvfb (apt-get install xvfb)"

PLUGIN=${QWEN_GIMP3_PLUGIN:-}
if [[ -z $PLUGIN ]]; then  # as tests/plugin_gimp3/e2e_gimp3_test.cpp builds it
  B=/var/cache/qwen-build-gimp3${SRC//\//_}
  bash "$SRC/tests/plugin_gimp3/in_chroot.sh" "$ROOT" "$SRC" -- bash -c \
    "flock $B.lock sh -c 'cmake -S $SRC -B $B -DQWEN_IMAGE_PLUGIN_ONLY=ON -DQWEN_IMAGE_BUILD_TESTS=OFF >/dev/null && cmake --build $B -j2 --target qwen-image-gimp3'"
  PLUGIN=$ROOT$B/plugin/qwen-image-gimp3
fi
[[ -f $PLUGIN ]] || die "no plug-in at $PLUGIN"

W=$(mktemp -d /tmp/qwen-gimp3-shots.XXXXXX)
INSTANCE=gimp3-shots-$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT

mkdir -p "$W/profile/plug-ins/qwen-image-gimp3" "$W/loras" "$W/shots" "$W/cache"
cp "$PLUGIN" "$W/profile/plug-ins/qwen-image-gimp3/qwen-image-gimp3"
printf 'min_pixels = 0\nmax_pixels = 16384\nautostart = false\n' >"$W/qwen-image.conf"
# A Lightning LoRA (recognised by its file name) and a plain one.
cp "$SRC/tests/fixtures/lora-samples/lightx2v.safetensors" \
  "$W/loras/Qwen-Image-Lightning-8steps-V1.0.safetensors"
cp "$SRC/tests/fixtures/lora-samples/kohya_musubi.safetensors" "$W/loras/"

"$DAEMON" --no-config --instance "$INSTANCE" --fake-engine --model "$MODELS/qwen-image-tiny" \
  --model "$MODELS/qwen-image-edit-2509-tiny" --model "$MODELS/qwen-image-layered-tiny" \
  --lora-dir "$W/loras" >"$W/daemon.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  grep -q "serving instance" "$W/daemon.log" && break
  kill -0 "${pids[0]}" 2>/dev/null || die "qwen-imaged exited: $(cat "$W/daemon.log")"
  sleep 0.2
done

n=90
while [[ -e /tmp/.X$n-lock || -e /tmp/.X11-unix/X$n ]]; do n=$((n + 1)); done
Xvfb ":$n" -screen 0 1280x1024x24 -nolisten tcp >"$W/xvfb.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [[ -e /tmp/.X11-unix/X$n ]] && break; sleep 0.2; done
[[ -e /tmp/.X11-unix/X$n ]] || die "Xvfb :$n did not start: $(cat "$W/xvfb.log")"

# One image with a layer and an elliptical selection; each procedure in turn, interactively.
call() { echo "(let* ((img (car (gimp-image-new 640 480 RGB)))
  (l (car (gimp-layer-new img \"base\" 640 480 RGB-IMAGE 100 LAYER-MODE-NORMAL))))
  (gimp-image-insert-layer img l 0 0) (gimp-drawable-fill l FILL-WHITE)
  (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 160 120 320 240)
  ($1 RUN-INTERACTIVE img (vector l) $2))"; }
S='"a lighthouse on a cliff at sunset, watercolor" "blurry" 30 4.0 -1'
timeout 300 bash "$SRC/tests/plugin_gimp3/in_chroot.sh" "$ROOT" "$W" /tmp/.X11-unix -- \
  env HOME="$W" GIMP3_DIRECTORY="$W/profile" XDG_CACHE_HOME="$W/cache" DISPLAY=":$n" \
  QWEN_IMAGE_GIMP_CONFIG="$W/qwen-image.conf" QWEN_IMAGE_INSTANCE="$INSTANCE" \
  QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT="$W/shots" \
  QWEN_IMAGE_GIMP_DIALOG_PICK="kohya_musubi:0.8" \
  gimp-3.2 -d -f -s --batch-interpreter=plug-in-script-fu-eval \
  -b "$(call plug-in-qwen-image-generate "$S \"\"")" \
  -b "$(call plug-in-qwen-image-edit-selection "\"a red apple on the table\" \"blurry\" 30 4.0 -1 0.9 \"qwen-image-edit-2509-tiny\"")" \
  -b "$(call plug-in-qwen-image-edit-layer "\"put the jacket from reference 1 on the person\" \"blurry\" 30 4.0 -1 \"\"")" \
  -b "$(call plug-in-qwen-image-decompose "\"a poster of a cat on a sofa\" \" \" 50 4.0 -1 4 640 FALSE \"\"")" \
  -b "$(call plug-in-qwen-image-expand-canvas "\"a harbour at dusk, watercolor\" \"blurry\" 30 4.0 -1 0 0 256 64 \"\"")" \
  -b '(gimp-quit 1)' >"$W/gimp.log" 2>&1 || true

missing=0
for p in generate edit-selection edit-layer decompose expand-canvas; do
  f=$W/shots/gimp3-plug-in-qwen-image-$p.png
  if [[ -s $f ]]; then cp "$f" "$OUT/"; echo "$OUT/gimp3-plug-in-qwen-image-$p.png"; else
    echo "no dialog snapshot for $p" >&2; missing=1; fi
done
[[ $missing == 0 ]] || { tail -n 40 "$W/gimp.log" >&2; exit 1; }
