#!/usr/bin/env bash
# Sets up a fresh Debian 12 (bookworm) machine and builds the project into build/.
#   installers/setup.sh            install system + Python dependencies, configure, build
#   QWEN_SETUP_SKIP_APT=1 ...      skip the apt step (dependencies already present)
#   QWEN_PYTHON=/path/python ...   interpreter used to create .venv (default python3)
#   QWEN_SETUP_SKIP_CHROOTS=1 ...  do not make the Debian chroots of the GIMP 3.0 / 3.2 tests
# As root it also makes (once; cached in /var/cache/qwen-image) the trixie (GIMP 3.0.4) and forky
# (GIMP 3.2) chroots the GIMP 3 end-to-end tests run in, while the project builds.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=versions.env
source installers/versions.env

APT_PACKAGES=(build-essential cmake pkg-config git python3 python3-venv
  libboost-dev libgtest-dev nlohmann-json3-dev libpcre2-dev libutf8proc-dev libpng-dev
  libgimp2.0-dev libgegl-dev libgdk-pixbuf-2.0-dev gimp xvfb xauth clang libclang-rt-14-dev
  ccache debootstrap util-linux patchelf)
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

# The GIMP 3.0 / 3.2 test chroots (tests/plugin_gimp3/setup_chroot.sh; network and dpkg bound, so
# alongside the CPU-bound build). Without root the GIMP 3 tests cannot run (and fail under CI=true).
CHROOTS_PID=""
if [ -z "${QWEN_SETUP_SKIP_CHROOTS:-}" ]; then
  if [ "$(id -u)" = 0 ]; then
    mkdir -p build
    bash tests/plugin_gimp3/prepare_chroots.sh >build/setup-chroots.log 2>&1 &
    CHROOTS_PID=$!
  else
    echo "setup: not root, so the GIMP 3 test chroots are not made (run as root, or sudo" \
      "tests/plugin_gimp3/prepare_chroots.sh)" >&2
  fi
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
if [ -n "$CHROOTS_PID" ]; then
  if wait "$CHROOTS_PID"; then
    echo "setup: GIMP 3.0 / 3.2 test chroots ready"
  else
    echo "setup: the GIMP 3 test chroots could not be made (see build/setup-chroots.log);" \
      "the GIMP 3 tests will try again" >&2
    tail -5 build/setup-chroots.log >&2
  fi
fi
echo "setup: built into build/. Run the tests with: ctest --test-dir build --output-on-failure -j2"
