#!/usr/bin/env bash
# Builds and installs Qwen-Image for GIMP for the current user:
#   $PREFIX/bin/qwen-imaged, $PREFIX/bin/qwen-image         (daemon + command-line client)
#   $PREFIX/lib/qwen-image/                                  (libtorch + CUDA runtime they load)
#   $PREFIX/share/qwen-image/assets/                         (tokenizer/scheduler/processor configs)
#   ~/.config/systemd/user/qwen-imaged.service               (systemd user unit)
#   ~/.config/qwen-image/daemon.conf                         (daemon config template, if none yet)
#   ~/.config/qwen-image/qwen-image.conf                     (plug-in config, if none yet)
#   ~/.local/share/doc/qwen-image/                           (daemon.md, user-guide.md)
#   $GIMP_DIR/plug-ins/qwen-image-gimp/qwen-image-gimp       (the GIMP 2.10 plug-in)
#   $GIMP3_DIR/plug-ins/qwen-image-gimp3/qwen-image-gimp3    (the GIMP 3 plug-in, 3.0 and 3.2)
#   ~/.var/app/org.gimp.GIMP/config/GIMP/3.x/plug-ins/qwen-image-gimp3/  (Flatpak GIMP 3)
# GIMP_DIR is $GIMP2_DIRECTORY when set, else ~/.config/GIMP/2.10; GIMP3_DIR is $GIMP3_DIRECTORY
# when set, else ~/.config/GIMP/3.x for the series of the GIMP 3 actually installed (3.0, 3.2:
# asked from gimp-console-3 / gimp-3 --version, or named by gimp-3.x on PATH, or an existing
# ~/.config/GIMP/3.x profile). The Flatpak's series comes from its existing profile folders,
# else `flatpak info`, else 3.2 (Flathub's current GIMP). Which GIMPs are installed is detected
# (gimp-2.10 / gimp-3.x on PATH, their profile folders or *_DIRECTORY variables, the
# org.gimp.GIMP Flatpak); --gimp 2|3|both overrides it. When none is found, every plug-in that
# was built is installed.
# Every file it creates is listed in a manifest; --uninstall removes exactly those files (configs
# you edited since are kept) and the folders it created when they are empty.
#
#   installers/install.sh [--prefix DIR] [--build-dir DIR] [--no-build] [--plugin-only]
#                         [--gimp 2|3|both] [--enable] [--uninstall]
#     --prefix DIR     where bin/ goes (default ~/.local)
#     --build-dir DIR  CMake build folder (default build-install)
#     --no-build       install from an existing build folder
#     --plugin-only    only the plug-in (no libtorch needed; the daemon runs elsewhere or later)
#     --gimp WHICH     install the plug-in for GIMP 2.10, 3 or both (default: detected)
#     --enable         also `systemctl --user enable --now qwen-imaged`
#     --uninstall      remove what the last install put in place
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$'\t'

PREFIX="$HOME/.local"
BUILD="$SRC/build-install"
DO_BUILD=1
PLUGIN_ONLY=0
ENABLE=0
UNINSTALL=0
WANT_GIMP=${QWEN_INSTALL_GIMP:-auto}
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --build-dir) BUILD=$2; shift 2 ;;
    --build-dir=*) BUILD=${1#*=}; shift ;;
    --no-build) DO_BUILD=0; shift ;;
    --plugin-only) PLUGIN_ONLY=1; shift ;;
    --gimp) WANT_GIMP=$2; shift 2 ;;
    --gimp=*) WANT_GIMP=${1#*=}; shift ;;
    --enable) ENABLE=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

CONFIG_HOME=${XDG_CONFIG_HOME:-$HOME/.config}
DATA_HOME=${XDG_DATA_HOME:-$HOME/.local/share}
GIMP_DIR=${GIMP2_DIRECTORY:-$CONFIG_HOME/GIMP/2.10}
FLATPAK_CONFIG="$HOME/.var/app/org.gimp.GIMP/config/GIMP"
MANIFEST_DIR="$DATA_HOME/qwen-image"
MANIFEST="$MANIFEST_DIR/install-manifest.txt"
have_systemctl() { [ -z "${QWEN_INSTALL_NO_SYSTEMD:-}" ] && command -v systemctl >/dev/null 2>&1 &&
  systemctl --user show-environment >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------- uninstall
if [ "$UNINSTALL" = 1 ]; then
  if [ ! -f "$MANIFEST" ]; then
    echo "install.sh: nothing to uninstall ($MANIFEST not found)" >&2
    exit 1
  fi
  if have_systemctl && grep -q "^file${T}.*/qwen-imaged.service${T}" "$MANIFEST"; then
    systemctl --user disable --now qwen-imaged.service >/dev/null 2>&1 || true
  fi
  # Files first (kept when the user changed them since), then folders we created, deepest first.
  while IFS=$'\t' read -r kind path sum; do
    [ "$kind" = file ] || continue
    if [ -f "$path" ]; then
      if [ -n "$sum" ] && [ "$(sha256sum "$path" | cut -d' ' -f1)" != "$sum" ]; then
        echo "kept (changed since install): $path"
      else
        rm -f "$path" && echo "removed $path"
      fi
    fi
  done <"$MANIFEST"
  DIRS=$(grep "^dir${T}" "$MANIFEST" | cut -f2 | sort -r)
  rm -f "$MANIFEST"
  while read -r d; do
    if [ -n "$d" ] && rmdir "$d" 2>/dev/null; then echo "removed $d/"; fi
  done <<<"$DIRS"
  if have_systemctl; then systemctl --user daemon-reload || true; fi
  echo "Qwen-Image for GIMP uninstalled."
  exit 0
fi

# ---------------------------------------------------------------------------------- detect
on_path() { command -v "$1" >/dev/null 2>&1; }
# "3.0", "3.2", ... from a "version 3.2.6" text on stdin.
series_of() { grep -o '\b3\.[0-9][0-9]*\.[0-9][0-9]*' | head -n1 | cut -d. -f1,2; }
# The series of the GIMP 3 installed on this machine, one per line (none when none is found).
gimp3_series() {
  local p v d
  for p in gimp-console-3 gimp-3; do
    if on_path "$p"; then  # in a throw-away HOME: GIMP may create folders even for --version
      d=$(mktemp -d)
      v=$(env HOME="$d" XDG_CONFIG_HOME="$d" XDG_DATA_HOME="$d" XDG_CACHE_HOME="$d" \
        timeout 20 "$p" --version 2>/dev/null </dev/null | series_of || true)
      rm -rf "$d"
      if [ -n "$v" ]; then echo "$v"; break; fi
    fi
  done
  for p in $(compgen -c gimp-console-3. 2>/dev/null; compgen -c gimp-3. 2>/dev/null); do
    echo "${p##*-}"
  done
  for d in "$CONFIG_HOME"/GIMP/3.*; do if [ -d "$d" ]; then basename "$d"; fi; done
  return 0
}
# The series of the Flatpak GIMP: its profile folders, else `flatpak info`, else Flathub's current.
flatpak_series() {
  local d v found=0
  for d in "$FLATPAK_CONFIG"/3.*; do
    if [ -d "$d" ]; then basename "$d"; found=1; fi
  done
  if [ "$found" = 0 ]; then
    v=$(flatpak info org.gimp.GIMP 2>/dev/null | grep -i '^ *version:' | series_of || true)
    echo "${v:-3.2}"
  fi
  return 0
}
GIMP2=0 GIMP3=0 FLATPAK=0
case "$WANT_GIMP" in
  2|2.10) GIMP2=1 ;;
  3|3.0|3.2) GIMP3=1 ;;
  both) GIMP2=1 GIMP3=1 ;;
  auto)
    if [ -n "${GIMP2_DIRECTORY:-}" ] || on_path gimp-2.10 || on_path gimp-console-2.10 ||
      [ -d "$CONFIG_HOME/GIMP/2.10" ]; then GIMP2=1; fi
    if [ -n "${GIMP3_DIRECTORY:-}" ] || [ -n "$(gimp3_series)" ]; then GIMP3=1; fi
    if [ -d "$HOME/.var/app/org.gimp.GIMP" ] ||
      { on_path flatpak && flatpak info org.gimp.GIMP >/dev/null 2>&1; }; then FLATPAK=1; fi
    ;;
  *) echo "install.sh: --gimp takes 2, 3 or both" >&2; exit 2 ;;
esac
AUTO_NONE=0
if [ "$GIMP2$GIMP3$FLATPAK" = 000 ]; then AUTO_NONE=1; fi
# The GIMP 3 profile folders to install into.
GIMP3_DIRS=()
if [ -n "${GIMP3_DIRECTORY:-}" ]; then
  GIMP3_DIRS+=("$GIMP3_DIRECTORY")
else
  SERIES=$(gimp3_series | sort -u -V)
  if [ -z "$SERIES" ]; then  # --gimp 3, or nothing detected: the series asked for, else 3.2
    case "$WANT_GIMP" in 3.0) SERIES=3.0 ;; *) SERIES=3.2 ;; esac
  fi
  for v in $SERIES; do GIMP3_DIRS+=("$CONFIG_HOME/GIMP/$v"); done
fi
FLATPAK_DIRS=()
if [ "$FLATPAK" = 1 ]; then
  for v in $(flatpak_series | sort -u -V); do FLATPAK_DIRS+=("$FLATPAK_CONFIG/$v"); done
fi
echo "GIMP found: 2.10=$GIMP2 3=$GIMP3 ($(printf '%s ' "${GIMP3_DIRS[@]##*/}"| sed 's/ $//')) flatpak=$FLATPAK${FLATPAK_DIRS[*]:+ (${FLATPAK_DIRS[*]##*/})}"

# ---------------------------------------------------------------------------------- build
TARGETS=()
[ "$PLUGIN_ONLY" = 1 ] || TARGETS+=(qwen-imaged qwen-image)
if [ "$DO_BUILD" = 1 ]; then
  ARGS=(-DCMAKE_BUILD_TYPE=Release -DQWEN_IMAGE_BUILD_TESTS=OFF)
  [ "$PLUGIN_ONLY" = 1 ] && ARGS+=(-DQWEN_IMAGE_PLUGIN_ONLY=ON)
  cmake -S "$SRC" -B "$BUILD" "${ARGS[@]}"
  # The plug-ins CMake can build (libgimp-2.0 / libgimp-3.0 development files found).
  if grep -q '^GIMP2_FOUND:INTERNAL=1' "$BUILD/CMakeCache.txt"; then TARGETS+=(qwen-image-gimp); fi
  if grep -q '^GIMP3_FOUND:INTERNAL=1' "$BUILD/CMakeCache.txt"; then TARGETS+=(qwen-image-gimp3); fi
  if [ ${#TARGETS[@]} -gt 0 ]; then cmake --build "$BUILD" -j"$(nproc)" --target "${TARGETS[@]}"; fi
fi
built() {  # target name -> path in the build folder, or nothing
  find "$BUILD" -type f -name "$1" -perm -u+x -not -path '*/CMakeFiles/*' 2>/dev/null | head -n1
}
find_built() {  # target name -> path in the build folder
  local f
  f=$(find "$BUILD" -type f -name "$1" -perm -u+x -not -path '*/CMakeFiles/*' | head -n1)
  [ -n "$f" ] || { echo "install.sh: $1 is not built in $BUILD" >&2; exit 1; }
  echo "$f"
}

# ---------------------------------------------------------------------------------- install
if [ -f "$MANIFEST" ]; then
  echo "install.sh: updating the previous install (manifest $MANIFEST)"
  OLD=$(cat "$MANIFEST")
else
  OLD=""
fi
NEW=$(mktemp)
trap 'rm -f "$NEW"' EXIT
record() { printf '%s\t%s\t%s\n' "$@" >>"$NEW"; }
make_dir() {  # creates a folder, recording every level it had to create
  local d=$1 missing=()
  while [ ! -d "$d" ]; do missing+=("$d"); d=$(dirname "$d"); done
  mkdir -p "$1"
  for d in "${missing[@]}"; do record dir "$d" ""; done
}
was_ours() { printf '%s\n' "$OLD" | grep -q "^$1${T}$2${T}"; }
# install_file SRC DEST MODE: always replaces program files.
install_file() {
  make_dir "$(dirname "$2")"
  install -m "$3" "$1" "$2"
  record file "$2" "$(sha256sum "$2" | cut -d' ' -f1)"
  echo "installed $2"
}
# install_config TEXT DEST: writes a config only when the user has none (never overwrites).
install_config() {
  make_dir "$(dirname "$2")"
  if [ -e "$2" ]; then
    if was_ours file "$2"; then printf '%s\n' "$OLD" | grep "^file${T}$2${T}" >>"$NEW"; fi
    echo "kept existing $2"
  else
    printf '%s\n' "$1" >"$2"
    chmod 600 "$2"
    record file "$2" "$(sha256sum "$2" | cut -d' ' -f1)"
    echo "wrote $2"
  fi
}
# ---- the libtorch + CUDA runtime, owned by the install (the checkout's .venv may go away).
# The built binaries find libtorch through RUNPATH entries into a PyPI torch wheel's
# site-packages (torch/lib, nvidia/*/lib) or an official libtorch folder. Those libraries are
# copied under $RUNTIME in the same layout (torch's own $ORIGIN/../../nvidia/... RUNPATHs keep
# working, and so do the libraries torch dlopens: cuDNN's sub-libraries, NVRTC, linalg), and the
# installed binaries get $ORIGIN-relative RUNPATHs (patchelf). System folders stay as they are.
# QWEN_INSTALL_HARDLINK=1 hard-links instead of copying where the filesystem allows (tests).
RUNTIME="$PREFIX/lib/qwen-image"
RUNTIME_REL='$ORIGIN/../lib/qwen-image'
RUNTIME_DONE=0
copy_runtime_dir() {  # SRC_DIR REL: every shared library of SRC_DIR into $RUNTIME/REL
  local f dest
  while IFS= read -r -d '' f; do
    dest="$RUNTIME/$2/$(basename "$f")"
    make_dir "$(dirname "$dest")"
    rm -f "$dest"
    if [ -n "${QWEN_INSTALL_HARDLINK:-}" ] && ln "$(readlink -f "$f")" "$dest" 2>/dev/null; then :
    else cp -L "$(readlink -f "$f")" "$dest"; fi
    chmod 644 "$dest"
    record file "$dest" "$(sha256sum "$dest" | cut -d' ' -f1)"
  done < <(find "$1" -maxdepth 1 \( -type f -o -type l \) -name '*.so*' -not -name 'libtorch_python.so' -print0 | sort -z)
}
install_runtime() {  # BINARY: copies what its RUNPATH names, prints the new RUNPATH
  local rp d site="" out=()
  rp=$(patchelf --print-rpath "$1")
  IFS=: read -r -a dirs <<<"$rp"
  for d in "${dirs[@]}"; do
    [ -n "$d" ] || continue
    case "$d" in
      */torch/lib)  # a torch wheel (site-packages or dist-packages)
        site=${d%/torch/lib}
        out+=("$RUNTIME_REL/torch/lib") ;;
      */nvidia/*/lib)  # the CUDA wheels next to it
        [ -n "$site" ] || site=${d%/nvidia/*}
        out+=("$RUNTIME_REL/nvidia/${d#*/nvidia/}") ;;
      /usr/* | /lib* | /opt/*/cuda*/lib* | /usr/local/cuda*) out+=("$d") ;;
      *)
        if compgen -G "$d/libtorch*.so" >/dev/null; then
          [ "$RUNTIME_DONE" = 1 ] || copy_runtime_dir "$d" libtorch/lib >&2
          out+=("$RUNTIME_REL/libtorch/lib")
        else
          out+=("$d")
        fi ;;
    esac
  done
  if [ -n "$site" ] && [ "$RUNTIME_DONE" = 0 ]; then
    echo "copying libtorch and the CUDA runtime from $site into $RUNTIME" >&2
    copy_runtime_dir "$site/torch/lib" torch/lib >&2
    for d in "$site"/nvidia/*/lib; do
      [ -d "$d" ] && copy_runtime_dir "$d" "${d#"$site"/}" >&2
    done
  fi
  RUNTIME_DONE=1
  (IFS=:; echo "${out[*]}")
}
# install_program SRC DEST: a program of the build with its runtime under $RUNTIME.
install_program() {
  command -v patchelf >/dev/null ||
    { echo "install.sh: patchelf is needed (apt-get install patchelf; installers/setup.sh does)" >&2; exit 1; }
  local tmp rp
  tmp=$(mktemp)
  cp "$1" "$tmp"
  rp=$(install_runtime "$1")
  RUNTIME_DONE=1
  patchelf --set-rpath "$rp" "$tmp"
  install_file "$tmp" "$2" 755
  rm -f "$tmp"
  echo "  RUNPATH $rp"
}
make_dir "$MANIFEST_DIR"
# Folders recorded by the previous install stay recorded.
printf '%s\n' "$OLD" | grep "^dir${T}" >>"$NEW" || true

BIN="$PREFIX/bin"
if [ "$PLUGIN_ONLY" = 0 ]; then
  install_program "$(find_built qwen-imaged)" "$BIN/qwen-imaged"
  install_program "$(find_built qwen-image)" "$BIN/qwen-image"
  # The tokenizer / processor / scheduler configuration of the known model types: what the
  # binaries need when a model is given as ComfyUI files without a diffusers folder
  # (io::assets_dir(): <bin>/../share/qwen-image/assets).
  while IFS= read -r -d '' f; do
    install_file "$f" "$PREFIX/share/qwen-image/assets/${f#"$SRC/daemon/assets/"}" 644
  done < <(find "$SRC/daemon/assets" -type f -print0 | sort -z)
  UNIT_SRC="$SRC/installers/qwen-imaged.service"
  if [ -f "$UNIT_SRC" ]; then
    UNIT_TMP=$(mktemp)
    sed -e "s|@BINDIR@|$BIN|g" -e "s|%h/.local/bin|$BIN|g" "$UNIT_SRC" >"$UNIT_TMP"
    install_file "$UNIT_TMP" "$CONFIG_HOME/systemd/user/qwen-imaged.service" 644
    rm -f "$UNIT_TMP"
  else
    echo "install.sh: $UNIT_SRC not found; no systemd unit installed" >&2
  fi
  if [ -f "$SRC/installers/qwen-imaged.conf.example" ]; then
    DAEMON_CONF=$(sed -e "s|^# qwen-imaged configuration: copy to .*|# qwen-imaged configuration (written by install.sh)|" \
      -e "s|^model = |#model = |" "$SRC/installers/qwen-imaged.conf.example")
  else
    DAEMON_CONF="# qwen-imaged settings (see docs/user-guide.md). One 'key = value' per line.
# The first model is the default. Download the weights first (see the user guide):
#model = $HOME/models/Qwen-Image
#model = $HOME/models/Qwen-Image-Edit-2509
device = cuda
#dtype = bfloat16
#lazy = true"
  fi
  install_config "$DAEMON_CONF" "$CONFIG_HOME/qwen-image/daemon.conf"
fi
for doc in daemon.md user-guide.md; do
  if [ -f "$SRC/docs/$doc" ]; then install_file "$SRC/docs/$doc" "$DATA_HOME/doc/qwen-image/$doc" 644; fi
done
PLUGIN_CONF=$(sed -e "s|@BINDIR@|$BIN|g" "$SRC/installers/qwen-image.conf.example")
install_config "$PLUGIN_CONF" "$CONFIG_HOME/qwen-image/qwen-image.conf"
P2=$(built qwen-image-gimp)
P3=$(built qwen-image-gimp3)
if [ "$AUTO_NONE" = 1 ]; then  # no GIMP found: whatever was built
  if [ -n "$P2" ]; then GIMP2=1; fi
  if [ -n "$P3" ]; then GIMP3=1; fi
fi
INSTALLED=0
if [ "$GIMP2" = 1 ]; then
  if [ -n "$P2" ]; then
    install_file "$P2" "$GIMP_DIR/plug-ins/qwen-image-gimp/qwen-image-gimp" 755
    INSTALLED=1
  else
    echo "install.sh: GIMP 2.10 found but its plug-in is not built (install libgimp2.0-dev)" >&2
  fi
fi
TARGET_DIRS=()
if [ "$GIMP3" = 1 ]; then TARGET_DIRS+=("${GIMP3_DIRS[@]}"); fi
if [ "$FLATPAK" = 1 ]; then TARGET_DIRS+=("${FLATPAK_DIRS[@]}"); fi
for dir in "${TARGET_DIRS[@]}"; do
  if [ -n "$P3" ]; then
    install_file "$P3" "$dir/plug-ins/qwen-image-gimp3/qwen-image-gimp3" 755
    INSTALLED=1
  else
    echo "install.sh: GIMP 3 found but its plug-in is not built (install libgimp-3.0-dev)" >&2
  fi
done
if [ "$INSTALLED" = 0 ]; then
  echo "install.sh: no GIMP plug-in installed (build needs libgimp-2.0 or libgimp-3.0 dev files)" >&2
  exit 1
fi

sort -u "$NEW" >"$MANIFEST"
# Files of the previous install that this one no longer installs (e.g. the libraries of another
# torch) go, unless changed since.
while IFS=$'\t' read -r kind path sum; do
  [ "$kind" = file ] && [ -f "$path" ] || continue
  grep -q "^file${T}${path}${T}" "$MANIFEST" && continue
  if [ -z "$sum" ] || [ "$(sha256sum "$path" | cut -d' ' -f1)" = "$sum" ]; then
    rm -f "$path" && echo "removed (no longer installed) $path"
  fi
done <<<"$OLD"
if [ "$PLUGIN_ONLY" = 0 ] && have_systemctl; then
  systemctl --user daemon-reload || true
  if [ "$ENABLE" = 1 ]; then systemctl --user enable --now qwen-imaged.service; fi
fi

cat <<EOF

Qwen-Image for GIMP is installed (manifest: $MANIFEST).
Next steps:
  1. Download the weights (Qwen/Qwen-Image and/or Qwen/Qwen-Image-Edit-2509, see
     docs/user-guide.md) and set 'model = /path/to/folder' in $CONFIG_HOME/qwen-image/daemon.conf.
  2. Start the daemon: systemctl --user enable --now qwen-imaged  (or just use the plug-in:
     it starts $BIN/qwen-imaged on demand).
  3. Restart GIMP: Filters > Generative > Qwen-Image.
Uninstall with: $0 --uninstall
EOF
if [ "$FLATPAK" = 1 ]; then
  cat <<EOF

Flatpak GIMP: its sandbox has a private /dev/shm, so the plug-in cannot reach the daemon until you
allow it once (then restart GIMP; see docs/gimp3.md):
  flatpak override --user --device=shm org.gimp.GIMP
EOF
fi
