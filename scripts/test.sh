#!/usr/bin/env bash
# Installs the gateway and its test tools into .venv on first use, then runs the whole suite.
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh" test
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
