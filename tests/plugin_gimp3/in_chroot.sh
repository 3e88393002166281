#!/usr/bin/env bash
# Runs a command inside the trixie chroot in a private mount namespace (mounts vanish with it):
# proc, the host's /dev and /dev/shm (so the plug-in inside shares shared memory with a daemon on
# the host) and each BIND folder at the same path inside as outside.
# Usage: in_chroot.sh ROOT [BIND...] -- COMMAND [ARGS...]
set -eu
ROOT=$1
shift
binds=()
while [[ $# -gt 0 && $1 != -- ]]; do binds+=("$1"); shift; done
shift
export QWEN_CHROOT_ROOT=$ROOT
exec unshare --mount --propagation private bash -c '
  set -e
  R=$QWEN_CHROOT_ROOT
  mount -t proc proc "$R/proc"
  mount --rbind /dev "$R/dev"
  mount --bind /dev/shm "$R/dev/shm"
  while [[ $1 != -- ]]; do mkdir -p "$R$1"; mount --bind "$1" "$R$1"; shift; done
  shift
  exec chroot "$R" "$@"' in_chroot "${binds[@]}" -- "$@"
