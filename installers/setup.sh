#!/usr/bin/env bash
# Sets up a fresh Debian 12 (bookworm) machine and builds the project into build/.
#   installers/setup.sh            install system + Python dependencies, configure, build
#   QWEN_SETUP_SKIP_APT=1 ...      skip the apt step (dependencies already present)
#   QWEN_PYTHON=/path/python ...   interpreter used to create .venv (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=versions.env
source installers/versions.env

APT_PACKAGES=(build-essential cmake pkg-config git python3 python3-venv
  libboost-dev libgtest-dev nlohmann-json3-dev libpcre2-dev libutf8proc-dev libpng-dev
  libgimp2.0-dev libgegl-dev gimp xvfb xauth clang libclang-rt-14-dev ccache debootstrap)
if [ -z "${QWEN_SETUP_SKIP_APT:-}" ] && ! dpkg -s "${APT_PACKAGES[@]}" >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
fi

# Python: libtorch comes from the PyPI torch wheel; diffusers/transformers are the live reference.
PY=${QWEN_PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import torch, diffusers, transformers, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==${TORCH_VERSION}" -r tests/reference/requirements.txt
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
echo "setup: built into build/. Run the tests with: ctest --test-dir build --output-on-failure -j2"
