#!/usr/bin/env bash
# One command from a fresh clone to a working chat on http://127.0.0.1:7860/
# (install, then first start: load the bundled tickets, build the index, train the quick model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/csbot serve "$@"
