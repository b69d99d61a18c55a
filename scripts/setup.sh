# Sourced by the other scripts: make .venv (if missing) and install pollinate into it.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
# torch is pinned here (a CPU build installs in seconds on our machines); users' own
# installs may use any torch>=2.0. Override with POLLINATE_TORCH_SPEC="torch==X.Y".
TORCH_SPEC="${POLLINATE_TORCH_SPEC:-torch==2.13.0}"

if [ ! -x "$PY" ]; then
  echo "setup: creating $VENV" >&2
  "${PYTHON:-python3}" -m venv "$VENV"
fi

stamp="$VENV/.pollinate-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing pollinate and its dev dependencies into .venv" >&2
  "$PY" -m pip install -q --disable-pip-version-check --upgrade pip 2>/dev/null || true
  if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install -q --disable-pip-version-check "$TORCH_SPEC"
  fi
  "$PY" -m pip install -q --disable-pip-version-check -e "$ROOT[dev,examples]"
  echo "$want" > "$stamp"
fi
