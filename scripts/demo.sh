#!/bin/bash
# Start the portal on the demo environment: Redis and dockerd (setup.sh), the
# demo's backup servers (backup-servers.sh: an sshd and an S3 server on
# 127.0.0.1 for the remote and cloud tiers), an RQ worker per queue kind, the
# GPU sampler, and the ASGI server on http://127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PY=.venv/bin/python
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-portal.settings}
# Django's debug pages list every URL and setting: off unless asked for
# (DEBUG=true make demo). The ASGI app serves static/ itself, debug or not.
export DEBUG=${DEBUG:-false}
export PORTAL_SERVE_STATIC=${PORTAL_SERVE_STATIC:-true}
mkdir -p .state
scripts/backup-servers.sh start
"$PY" manage.py bootstrap_demo
"$PY" manage.py run_worker >.state/worker.log 2>&1 &
worker=$!
# GPU status of every environment's Docker host (supervised like the workers).
"$PY" manage.py sample_gpus >.state/gpu-sampler.log 2>&1 &
sampler=$!
trap 'kill "$worker" "$sampler" 2>/dev/null || true; wait "$worker" "$sampler" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
echo
echo "Stack Portal: http://127.0.0.1:${PORTAL_PORT:-8000}/  (log in as admin; worker log in .state/worker.log)"
echo "GPU status: the GPUs page of each environment (sampler log in .state/gpu-sampler.log)"
echo "Start the demo stacks from the page of environment 'demo', or:"
echo "  make start-core    (acts as the system user portal-system, Operator of demo only)"
echo "Back up postgres into the four tiers (local .state/backups, sftp, S3, tape .state/tape):"
echo "  make backup-service SERVICE=postgres    then: make backup-status"
echo
"$PY" -m daphne -b 127.0.0.1 -p "${PORTAL_PORT:-8000}" portal.asgi:application
