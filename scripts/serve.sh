#!/usr/bin/env bash
# Installs the gateway into .venv on first use, then runs it: ./scripts/serve.sh --config configs/quickstart.yaml
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh" speed
exec "$VENV/bin/gateway" "$@"
