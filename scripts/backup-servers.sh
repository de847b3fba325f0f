#!/bin/bash
# The demo's backup servers, on 127.0.0.1 only:
#   - Debian's sshd on port $DEMO_SFTP_PORT (22022) for the remote tier (restic's
#     sftp backend), with a host key and a client key made on first start;
#   - moto's S3 server on port $DEMO_S3_PORT (24566) for the cloud tier.
# The demo environment's variables in configs/stacks.yaml point the tiers here
# (BACKUP_SFTP_*, BACKUP_S3_*); with other ports, set BACKUP_SFTP_PORT and
# BACKUP_S3_ENDPOINT in configs/env/demo.env too.
#
#   scripts/backup-servers.sh start    # idempotent: a server already running is kept
#   scripts/backup-servers.sh stop
#   scripts/backup-servers.sh status
#
# State (keys, config, pid files, logs, the sftp store) lives in
# .state/backup-servers/. Both servers run in their own session (setsid) and
# outlive the demo; moto keeps its buckets in memory, so the cloud tier's
# repository lasts as long as its server (the next backup creates a new one).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${BACKUP_SERVERS_DIR:-$ROOT/.state/backup-servers}
SFTP_PORT=${DEMO_SFTP_PORT:-22022}
S3_PORT=${DEMO_S3_PORT:-24566}
HOST=127.0.0.1

die() { printf 'backup-servers: ERROR: %s\n' "$*" >&2; exit 1; }
say() { printf 'backup-servers: %s\n' "$*"; }

# Whether the process in pid file $1 runs and its command line contains $2.
ours() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2"
}

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

wait_listening() { # port pidfile what log
    for _ in $(seq 100); do
        listening "$1" && return 0
        kill -0 "$(cat "$2")" 2>/dev/null || break
        sleep 0.1
    done
    tail -20 "$4" >&2 || true
    die "$3 did not listen on $HOST:$1 (log: $4)"
}

setup_keys() {
    mkdir -p "$DIR/sftp"
    chmod 700 "$DIR"
    for key in host_ed25519 client_ed25519; do
        [ -s "$DIR/$key" ] || ssh-keygen -q -t ed25519 -N '' -C "stack-portal demo $key" -f "$DIR/$key"
    done
    cp "$DIR/client_ed25519.pub" "$DIR/authorized_keys"
    read -r type key _ <"$DIR/host_ed25519.pub"
    printf '[%s]:%s %s %s\n' "$HOST" "$SFTP_PORT" "$type" "$key" >"$DIR/known_hosts"
    cat >"$DIR/sshd_config" <<EOF
# Written by scripts/backup-servers.sh: the demo's remote backup tier.
Port $SFTP_PORT
ListenAddress $HOST
HostKey $DIR/host_ed25519
AuthorizedKeysFile $DIR/authorized_keys
PidFile $DIR/sshd.daemon.pid
AllowUsers $(id -un)
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
X11Forwarding no
AllowTcpForwarding no
# Relative repository paths (BACKUP_SFTP_PATH) start in the store.
Subsystem sftp internal-sftp -d $DIR/sftp
EOF
}

start_sshd() {
    if ours "$DIR/sshd.pid" "$DIR/sshd_config"; then
        say "sshd already running on $HOST:$SFTP_PORT (pid $(cat "$DIR/sshd.pid"))"
        return
    fi
    listening "$SFTP_PORT" && die "port $SFTP_PORT is in use by another program; set DEMO_SFTP_PORT (and BACKUP_SFTP_PORT in configs/env/demo.env)"
    setup_keys
    mkdir -p /run/sshd
    /usr/sbin/sshd -t -f "$DIR/sshd_config" || die "sshd rejects $DIR/sshd_config"
    setsid /usr/sbin/sshd -D -e -f "$DIR/sshd_config" </dev/null >>"$DIR/sshd.log" 2>&1 &
    echo $! >"$DIR/sshd.pid"
    wait_listening "$SFTP_PORT" "$DIR/sshd.pid" sshd "$DIR/sshd.log"
    say "sshd started on $HOST:$SFTP_PORT (pid $(cat "$DIR/sshd.pid"), log $DIR/sshd.log)"
}

start_s3() {
    if ours "$DIR/s3.pid" "moto_server -H $HOST -p $S3_PORT"; then
        say "S3 server already running on $HOST:$S3_PORT (pid $(cat "$DIR/s3.pid"))"
        return
    fi
    listening "$S3_PORT" && die "port $S3_PORT is in use by another program; set DEMO_S3_PORT (and BACKUP_S3_ENDPOINT in configs/env/demo.env)"
    [ -x .venv/bin/moto_server ] || die ".venv/bin/moto_server is missing (run scripts/setup.sh)"
    mkdir -p "$DIR"
    setsid .venv/bin/moto_server -H "$HOST" -p "$S3_PORT" </dev/null >>"$DIR/s3.log" 2>&1 &
    echo $! >"$DIR/s3.pid"
    wait_listening "$S3_PORT" "$DIR/s3.pid" "moto's S3 server" "$DIR/s3.log"
    say "S3 server started on $HOST:$S3_PORT (pid $(cat "$DIR/s3.pid"), log $DIR/s3.log)"
}

stop_one() { # pidfile marker what
    if ours "$1" "$2"; then
        kill "$(cat "$1")"
        say "$3 stopped"
    else
        say "$3 not running"
    fi
    rm -f "$1"
}

case "${1:-start}" in
start)
    start_sshd
    start_s3
    ;;
stop)
    stop_one "$DIR/sshd.pid" "$DIR/sshd_config" sshd
    stop_one "$DIR/s3.pid" "moto_server -H $HOST -p $S3_PORT" "S3 server"
    ;;
status)
    rc=0
    if ours "$DIR/sshd.pid" "$DIR/sshd_config"; then say "sshd running on $HOST:$SFTP_PORT"; else say "sshd not running"; rc=1; fi
    if ours "$DIR/s3.pid" "moto_server -H $HOST -p $S3_PORT"; then say "S3 server running on $HOST:$S3_PORT"; else say "S3 server not running"; rc=1; fi
    exit $rc
    ;;
*)
    die "usage: $0 start|stop|status"
    ;;
esac
