#!/usr/bin/env bash
# Makes (once) the chroots of the GIMP 3 end-to-end tests: trixie (GIMP 3.0.4) and forky (GIMP
# 3.2.x; $QWEN_GIMP32_SUITE=sid for unstable). The CTest fixture plugin_gimp3_chroots runs it
# before those tests, so that the long first bootstrap is not charged to one test's time limit.
# Exit 77 (skipped) where they cannot be made here, except under CI=true: then 1.
HERE=$(cd "$(dirname "$0")" && pwd)
rc=0
for suite in trixie "${QWEN_GIMP32_SUITE:-forky}"; do
  bash "$HERE/setup_chroot.sh" "$suite" || { r=$?; [ "$rc" = 1 ] || rc=$r; }
done
case "${CI:-}" in "" | 0 | false | no) ;; *) [ "$rc" = 77 ] && { echo "CI=true: the GIMP 3 chroots must be made here" >&2; rc=1; } ;; esac
exit "$rc"
