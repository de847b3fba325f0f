#!/bin/bash
# Prepare a Debian bookworm machine (root, no systemd) for the tests and the demo:
# apt packages, dockerd, a local redis-server, the .venv and the stand-in images.
# Idempotent: every step checks first, so a second run takes seconds.
# Runtime state (logs, pid files, stamps) lives in .state/.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/.state
VENV=$ROOT/.venv
mkdir -p "$STATE"
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(docker.io redis-server redis-tools restic openssh-server openssh-client debootstrap busybox-static chromium
          chromium-driver python3-venv iproute2 procps ca-certificates)
REDIS_HOST=127.0.0.1
REDIS_PORT=6379

t0=$(date +%s.%N)
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
step() { printf 'setup: %-52s %6ss\n' "$1" "$(elapsed "$2")"; }

# --- 1. apt packages ------------------------------------------------------------------
t=$(date +%s.%N)
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}); run as root to install them"
    # Refresh the package lists only when they are absent or older than a day.
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit 2>/dev/null)" ]; then
        apt-get update -qq
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$STATE/apt.log" 2>&1 \
        || { tail -20 "$STATE/apt.log" >&2; die "apt-get install failed (log: $STATE/apt.log)"; }
    step "apt: installed ${missing[*]}" "$t"
else
    step "apt: ${#PACKAGES[@]} packages present" "$t"
fi

# --- 2. Docker engine -----------------------------------------------------------------
# /usr/local/bin/docker may be a newer standalone CLI than Debian's; both answer "info".
t=$(date +%s.%N)
docker_up() { docker info >/dev/null 2>&1; }
if docker_up; then
    step "docker: engine running" "$t"
else
    [ "$(id -u)" -eq 0 ] || die "the Docker engine is not running and only root can start it"
    dockerd_bin=$(command -v dockerd || echo /usr/sbin/dockerd)
    # setsid + nohup: the daemon must outlive this script and its caller's process group.
    setsid nohup "$dockerd_bin" >"$STATE/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 120); do docker_up && break; sleep 0.5; done
    docker_up || { tail -20 "$STATE/dockerd.log" >&2; die "dockerd did not come up within 60 s (log: $STATE/dockerd.log)"; }
    step "docker: started dockerd (log .state/dockerd.log)" "$t"
fi

# --- 3. Redis on the host (RQ, Channels, tests) ----------------------------------------
t=$(date +%s.%N)
redis_up() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }
if redis_up; then
    step "redis: answering on $REDIS_HOST:$REDIS_PORT" "$t"
else
    redis-server --bind "$REDIS_HOST" --port "$REDIS_PORT" --daemonize yes \
        --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" --dir "$STATE" \
        --save '' --appendonly no
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
    redis_up || { tail -20 "$STATE/redis.log" >&2; die "redis-server did not answer PONG (log: $STATE/redis.log)"; }
    step "redis: started on $REDIS_HOST:$REDIS_PORT" "$t"
fi

# --- 4. Python virtualenv -------------------------------------------------------------
t=$(date +%s.%N)
if ! "$VENV/bin/python" -c '' 2>/dev/null; then
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (is python3-venv installed?)"
fi
# The stamp ties requirements.txt to this particular venv interpreter.
want="$(sha256sum requirements.txt | cut -d' ' -f1) $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0], sys.prefix)')"
stamp=$STATE/requirements.stamp
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    step "venv: requirements up to date" "$t"
else
    "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt >"$STATE/pip.log" 2>&1 \
        || { tail -20 "$STATE/pip.log" >&2; die "pip install failed (log: $STATE/pip.log)"; }
    printf '%s\n' "$want" >"$stamp"
    step "venv: installed requirements.txt" "$t"
fi

# --- 5. Stand-in images (cached by content hash) ----------------------------------------
t=$(date +%s.%N)
"$VENV/bin/python" -u scripts/build_images.py | sed 's/^/setup:   /'
step "images: ready" "$t"

printf 'setup: done in %ss\n' "$(elapsed "$t0")"
