#!/usr/bin/env bash
# Throwaway MariaDB server for tests and the demo.  See README.md next to this file.
#
#   mariadb.sh start [--owner-pid PID] [--port PORT] DIR [extra mariadbd args...]
#   mariadb.sh stop [--rm] DIR
#   mariadb.sh status DIR
#
# start: initialises (first time only) and starts a MariaDB in DIR with binlog
# ROW/FULL/FULL, a replication user canal/canal and a TCP admin root/root, and
# prints the path of DIR/env (shell-sourceable) as its last stdout line.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")"
SERVICE_NAME=mariadb.sh
PIDINFO_NAME=mariadbd.pidinfo
# shellcheck source=lib.sh
. "$(dirname "$SELF")/lib.sh"
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

START_TIMEOUT=${MARIADB_START_TIMEOUT:-60}
STOP_TIMEOUT=${MARIADB_STOP_TIMEOUT:-30}

usage() {
    cat >&2 <<EOF
usage: $(basename "$0") start [--owner-pid PID] [--port PORT] DIR [extra mariadbd args...]
       $(basename "$0") stop [--rm] DIR
       $(basename "$0") status DIR
EOF
    exit 2
}

# ---------------------------------------------------------------- helpers
# (log, die, alive, terminate, detach, free_ports, watchdog: see lib.sh)


find_bins() {
    MARIADBD=$(command -v mariadbd || true)
    INSTALL_DB=$(command -v mariadb-install-db || true)
    CLIENT=$(command -v mariadb || true)
    if [ -z "$MARIADBD" ] || [ -z "$INSTALL_DB" ] || [ -z "$CLIENT" ]; then
        die "MariaDB is not installed (need mariadbd, mariadb-install-db, mariadb); run $(dirname "$SELF")/install.sh"
    fi
}



sock_dir_of() {
    # A separate short socket directory is used when DIR is too long for a
    # unix socket path; it is recorded in DIR/sockdir.
    if [ -f "$1/sockdir" ]; then cat "$1/sockdir"; fi
}

# ---------------------------------------------------------------- stop

cmd_stop() {
    stop_args "$@"
    [ -n "$STOP_DIR" ] || return 0
    stop_dir "$STOP_DIR" "$STOP_RM"
}

stop_dir() {
    local dir=$1 rm=$2 sockdir
    read_pidinfo "$dir"
    if [ -n "$SVC_PID" ]; then
        terminate "$SVC_PID" "$SVC_ST" || true
    fi
    rm -f "$dir/mariadbd.pidinfo"
    kill_watchdog "$dir"
    sockdir=$(sock_dir_of "$dir")
    if [ "$rm" = 1 ]; then
        [ -z "$sockdir" ] || rm -rf "$sockdir"
        rm -rf "$dir"
    elif [ -n "$sockdir" ]; then
        rmdir "$sockdir" 2>/dev/null || true
    fi
}

# ---------------------------------------------------------------- status

cmd_status() {
    [ $# -eq 1 ] || usage
    local dir=$1
    [ -d "$dir" ] || { echo "not running (no $dir)" >&2; return 1; }
    read_pidinfo "$dir"
    if [ -n "$SVC_PID" ] && alive "$SVC_PID" "$SVC_ST"; then
        cat "$dir/env"
        return 0
    fi
    echo "not running" >&2
    return 1
}

# ---------------------------------------------------------------- watchdog

# watchdog_collect DIR: note the current mariadbd in cmd_watchdog's last_pid/last_st.
watchdog_collect() {
    read_pidinfo "$1"
    if [ -n "$SVC_PID" ]; then last_pid=$SVC_PID last_st=$SVC_ST; fi
}

# __watchdog OWNER_PID OWNER_STARTTIME DIR SVC_PID SVC_STARTTIME
# Polls every second.  When the owner process is gone, or DIR was deleted
# behind our back, stops mariadbd (using the last pid seen) and removes DIR.
cmd_watchdog() {
    local owner=$1 owner_st=$2 dir=$3
    local last_pid=$4 last_st=$5 sockdir
    sockdir=$(sock_dir_of "$dir")
    watchdog_wait MariaDB "$owner" "$owner_st" "$dir" watchdog_collect
    if [ -n "$last_pid" ]; then
        terminate "$last_pid" "$last_st" || true
    fi
    [ -z "$sockdir" ] || rm -rf "$sockdir"
    rm -rf "$dir"
    exit 0
}

# ---------------------------------------------------------------- start

cmd_start() {
    local owner="" port=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --owner-pid)
                [ $# -ge 2 ] || usage
                owner=$2
                shift 2
                ;;
            --owner-pid=*) owner=${1#*=}; shift ;;
            --port)
                [ $# -ge 2 ] || usage
                port=$2
                shift 2
                ;;
            --port=*) port=${1#*=}; shift ;;
            -h|--help) usage ;;
            --) shift; break ;;
            -*) usage ;;
            *) break ;;
        esac
    done
    [ $# -ge 1 ] || usage
    local dir=$1
    shift
    local extra=("$@")

    check_owner_pid "$owner"
    if [ -n "$port" ]; then
        [[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number, got '$port'"
    fi

    find_bins
    dir=$(abs_dir "$dir")

    read_pidinfo "$dir"
    if [ -n "$SVC_PID" ] && alive "$SVC_PID" "$SVC_ST"; then
        die "a MariaDB is already running in $dir (pid $SVC_PID); stop it first"
    fi
    kill_watchdog "$dir"

    local datadir=$dir/data binlogdir=$dir/binlog errlog=$dir/mariadb.err
    local pidfile=$dir/mariadb.pid sock sockdir
    mkdir -p "$binlogdir" "$dir/tmp"

    # unix socket paths are limited to 107 bytes
    sock=$dir/mysql.sock
    sockdir=$(sock_dir_of "$dir")
    if [ ${#sock} -gt 100 ]; then
        if [ -z "$sockdir" ]; then
            sockdir=$(mktemp -d "${TMPDIR:-/tmp}/mdbsock.XXXXXX")
            echo "$sockdir" >"$dir/sockdir"
        fi
        mkdir -p "$sockdir"
        sock=$sockdir/mysql.sock
    fi

    local t0
    t0=$(date +%s%N)

    # ---- initialise the data directory (first start only)
    if [ ! -d "$datadir/mysql" ]; then
        rm -rf "$datadir"
        # A private tmpdir: concurrent installs sharing /tmp have collided on temporary table names.
        mkdir -p "$dir/tmp"
        local user_args=()
        [ "$(id -u)" -ne 0 ] || user_args=(--user=root)
        if ! "$INSTALL_DB" --no-defaults \
            --auth-root-authentication-method=normal \
            --datadir="$datadir" --tmpdir="$dir/tmp" "${user_args[@]}" \
            --skip-test-db --skip-name-resolve \
            --innodb-buffer-pool-size=32M --innodb-log-file-size=16M \
            </dev/null >"$dir/install.log" 2>&1; then
            tail -n 30 "$dir/install.log" >&2 || true
            die "mariadb-install-db failed (log: $dir/install.log)"
        fi
    fi

    # Reuse the previous port on a restart of the same DIR, if still free.
    if [ -z "$port" ] && [ -f "$dir/env" ]; then
        local old
        old=$(sed -n 's/^MYSQL_PORT=//p' "$dir/env" | head -n1)
        if [ -n "$old" ] && port_is_free "$old"; then
            port=$old
        fi
    fi
    local fixed_port=0
    [ -z "$port" ] || fixed_port=1

    # Clean up whatever we started if we fail half-way.
    STARTED_PID="" STARTED_ST="" WATCHDOG_STARTED=0
    START_DIR=$dir
    trap start_failed_cleanup EXIT

    local attempt pid ready
    for attempt in 1 2 3 4 5; do
        [ -n "$port" ] || port=$(free_ports 1)
        : >"$errlog"
        rm -f "$pidfile"
        local root_args=()
        [ "$(id -u)" -ne 0 ] || root_args=(--user=root)
        pid=$(detach "$dir/mariadbd.out" "$MARIADBD" --no-defaults \
            --datadir="$datadir" \
            --tmpdir="$dir/tmp" \
            --socket="$sock" \
            --port="$port" \
            --bind-address=127.0.0.1 \
            --pid-file="$pidfile" \
            --log-error="$errlog" \
            "${root_args[@]}" \
            --skip-name-resolve \
            --server-id=1 \
            --log-bin="$binlogdir/mysql-bin" \
            --binlog-format=ROW \
            --binlog-row-image=FULL \
            --binlog-row-metadata=FULL \
            --character-set-server=utf8mb4 \
            --collation-server=utf8mb4_general_ci \
            --max-connections=500 \
            --innodb-buffer-pool-size=32M \
            --innodb-log-file-size=16M \
            --innodb-flush-log-at-trx-commit=2 \
            --innodb-doublewrite=0 \
            --innodb-use-native-aio=0 \
            --sync-binlog=0 \
            "${extra[@]}")
        local st
        st=$(starttime_of "$pid" || echo "")
        STARTED_PID=$pid STARTED_ST=$st
        echo "$pid $st" >"$dir/mariadbd.pidinfo"
        # the watchdog also covers the startup phase (caller killed meanwhile)
        if [ -n "$owner" ]; then
            WATCHDOG_STARTED=1
            start_watchdog "$owner" "$dir" "$pid" "$st"
        fi

        ready=0
        local deadline
        deadline=$(($(date +%s) + START_TIMEOUT))
        while [ "$(date +%s)" -lt "$deadline" ]; do
            if ! alive "$pid" "$st"; then
                break
            fi
            if "$CLIENT" --no-defaults --protocol=socket --socket="$sock" -uroot \
                --connect-timeout=2 -N -B -e 'SELECT 1' >/dev/null 2>&1; then
                ready=1
                break
            fi
            sleep 0.1
        done
        [ "$ready" = 0 ] || break

        local exited=0
        alive "$pid" "$st" || exited=1
        terminate "$pid" "$st" || true
        rm -f "$dir/mariadbd.pidinfo"
        STARTED_PID=""
        if [ "$fixed_port" = 0 ] && grep -qiE 'Address already in use|Bind on TCP/IP port' "$errlog"; then
            log "port $port was taken, retrying with another port"
            port=""
            continue
        fi
        echo "---- last lines of $errlog:" >&2
        tail -n 40 "$errlog" >&2 || true
        echo "----" >&2
        if [ "$exited" = 1 ]; then
            die "mariadbd exited during startup; see $errlog"
        fi
        die "MariaDB did not answer SELECT 1 within ${START_TIMEOUT}s; see $errlog"
    done
    [ "$ready" = 1 ] || die "could not start MariaDB (port conflicts); see $errlog"

    # ---- users (not written to the binlog, so the binlog starts clean)
    if ! "$CLIENT" --no-defaults --protocol=socket --socket="$sock" -uroot -N -B >"$dir/setup.log" 2>&1 <<'SQL'; then
SET SESSION sql_log_bin = 0;
CREATE USER IF NOT EXISTS 'canal'@'%' IDENTIFIED BY 'canal';
ALTER USER 'canal'@'%' IDENTIFIED BY 'canal';
GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'canal'@'%';
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY 'root';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY 'root';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
        cat "$dir/setup.log" >&2 || true
        die "creating users failed"
    fi

    # ---- env file
    local tmp=$dir/env.tmp
    {
        printf '%s=%q\n' \
            MYSQL_HOST 127.0.0.1 \
            MYSQL_PORT "$port" \
            MYSQL_SOCKET "$sock" \
            MYSQL_ADMIN_USER root \
            MYSQL_ADMIN_PASSWORD root \
            MYSQL_REPL_USER canal \
            MYSQL_REPL_PASSWORD canal \
            MYSQL_PID "$pid" \
            MYSQL_SERVER_ID 1 \
            MYSQL_DIR "$dir" \
            MYSQL_DATADIR "$datadir" \
            MYSQL_BINLOG_DIR "$binlogdir" \
            MYSQL_ERROR_LOG "$errlog"
    } >"$tmp"
    mv -f "$tmp" "$dir/env"

    trap - EXIT
    local t1
    t1=$(date +%s%N)
    log "MariaDB ready on 127.0.0.1:$port (pid $pid) in $(((t1 - t0) / 1000000)) ms"
    echo "$dir/env"
}


# ---------------------------------------------------------------- main

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    __watchdog) [ $# -eq 5 ] || usage; cmd_watchdog "$@" ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac
