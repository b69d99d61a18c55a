#!/usr/bin/env bash
# The main job: set up .venv if needed, then run the quickstart app (3 simulated clients
# on scikit-learn's bundled digits, FedAvg; no download). Extra arguments go to `pollinate run`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
exec "$VENV/bin/pollinate" run examples/quickstart "$@"
