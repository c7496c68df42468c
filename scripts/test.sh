#!/usr/bin/env bash
# Installs the gateway and its test tools into .venv on first use, then runs the tests: the whole suite on
# GATEWAY_TEST_WORKERS processes (2 unless set; each test file stays on one, with its module's gateways),
# or what the arguments name (one process unless they say -n).
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh" test
cd "$ROOT"
parallel=(-n "${GATEWAY_TEST_WORKERS:-2}" --dist loadfile)
for arg in "$@"; do
  case "$arg" in
    -n|-n[0-9]*|--numprocesses*|--dist*|tests/*|*.py|*::*) parallel=() ;;
  esac
done
exec "$VENV/bin/python" -m pytest "${parallel[@]}" "$@"
