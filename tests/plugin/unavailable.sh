#!/usr/bin/env bash
# Stands in for end-to-end tests that this build could not make: skipped (77), or FAILED under
# CI=true, where no end-to-end test may be silently absent. Usage: unavailable.sh REASON
echo "cannot run here: $*"
case "${CI:-}" in "" | 0 | false | no) exit 77 ;; *) echo "CI=true: this must run in CI" >&2; exit 1 ;; esac
