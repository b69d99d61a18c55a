#!/usr/bin/env bash
# Static checks: ruff (lint + format) on everything, mypy --strict on src/, and the
# import-linter contract for the layers in docs/design.md (pyproject.toml, [tool.importlinter]).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"
"$VENV/bin/lint-imports" --no-cache
