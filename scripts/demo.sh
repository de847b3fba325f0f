#!/bin/bash
# Start the demo environment on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "demo: not yet wired"
