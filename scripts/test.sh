#!/bin/bash
# Run the test suite on this machine: prepare it (scripts/setup.sh), then pytest.
# Arguments go to pytest, e.g. scripts/test.sh tests/images -k qdrant
# Exits with pytest's exit code.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PORTAL_TEST_REDIS_URL=${PORTAL_TEST_REDIS_URL:-redis://127.0.0.1:6379/9}
exec .venv/bin/python -m pytest "$@"
