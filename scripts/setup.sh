#!/usr/bin/env bash
# Create .venv and install csbot into it. Idempotent: a second run only checks.
# torch is pinned first: the CPU wheel of 2.13.0 is what this machine kind provides; an unpinned torch
# would pull several GB of CUDA packages. Extras: EXTRAS=test,bench bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.csbot-installed-${EXTRAS:-none}-$(cat pyproject.toml | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==2.13.0"
  spec="."
  [ -n "${EXTRAS:-}" ] && spec=".[${EXTRAS}]"
  .venv/bin/python -m pip install -q -e "$spec"
  touch "$stamp"
fi
