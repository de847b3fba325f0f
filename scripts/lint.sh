#!/bin/bash
# Lint, formatting and layer checks (ruff and import-linter, pinned in
# requirements.txt; the contracts are in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/lint-imports ] || scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-cache
