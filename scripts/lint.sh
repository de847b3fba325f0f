#!/bin/bash
# Lint and format check (ruff, pinned in requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/ruff ] || scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
