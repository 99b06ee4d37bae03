# shellcheck shell=bash
# Helpers shared by mariadb.sh, zookeeper.sh and ../k8s/control-plane.sh.  Sourced, never executed.
#
# The sourcing script sets, before sourcing:
#   SELF          absolute path of the sourcing script (the watchdog re-runs it)
#   SERVICE_NAME  prefix of log/die messages, e.g. "mariadb.sh"
# and, before calling terminate:
#   STOP_TIMEOUT  seconds to wait after SIGTERM before sending SIGKILL
#
# Then it sources this file by a path computed from its own location:
#   . "$(dirname "$SELF")/lib.sh"

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "$0: this file is sourced by the service scripts, not run" >&2
    exit 2
fi
: "${SELF:?set SELF before sourcing lib.sh}" "${SERVICE_NAME:?set SERVICE_NAME before sourcing lib.sh}"

log() { echo "$SERVICE_NAME: $*" >&2; }
die() { echo "$SERVICE_NAME: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- processes

# Print "STATE STARTTIME" of a pid (from /proc/PID/stat), or fail.
proc_info() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo "$1 ${20}"
}

# alive PID [STARTTIME]: the process exists, is not a zombie and (if given)
# has the same start time (guards against pid reuse).
alive() {
    local info state st
    [ -n "${1:-}" ] || return 1
    info=$(proc_info "$1") || return 1
    state=${info%% *}
    st=${info#* }
    [ "$state" != Z ] || return 1
    [ -z "${2:-}" ] || [ "$2" = "$st" ]
}

starttime_of() { local i; i=$(proc_info "$1") || return 1; echo "${i#* }"; }

# terminate PID STARTTIME: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL.
terminate() {
    local pid=$1 st=${2:-} i
    alive "$pid" "$st" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        alive "$pid" "$st" || return 0
        sleep 0.1
    done
    log "pid $pid did not stop within ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" "$st" || return 0
        sleep 0.1
    done
    log "pid $pid still alive after SIGKILL"
    return 1
}

# Start a fully detached background process: new session, stdin from
# /dev/null, stdout+stderr appended to LOGFILE, every other inherited fd
# closed.  Prints its pid.
#   detach LOGFILE cmd args...
detach() {
    local logfile=$1
    shift
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ] 2>/dev/null; then
                eval "exec $fd>&-" 2>/dev/null || true
            fi
        done
        # No job control in a script, so this subshell is not a process group
        # leader and setsid execs in place: $! is the real daemon pid.
        exec setsid "$@" </dev/null >>"$logfile" 2>&1
    ) </dev/null >/dev/null 2>&1 &
    echo $!
}

# ---------------------------------------------------------------- components
# A script that runs several processes in one DIR (control-plane.sh, node.sh) keeps each one's "PID STARTTIME" in
# DIR/NAME.pidinfo and its output in DIR/NAME.log.

# read_comp DIR NAME: sets COMP_PID COMP_ST from DIR/NAME.pidinfo
read_comp() {
    COMP_PID="" COMP_ST=""
    [ -f "$1/$2.pidinfo" ] && read -r COMP_PID COMP_ST <"$1/$2.pidinfo" || true
}

comp_running() {
    read_comp "$1" "$2"
    [ -n "$COMP_PID" ] && alive "$COMP_PID" "$COMP_ST"
}

# launch DIR NAME cmd args...: start a component detached, log to DIR/NAME.log
launch() {
    local dir=$1 name=$2 pid st
    shift 2
    echo "==== $(date '+%F %T') $*" >>"$dir/$name.log"
    pid=$(detach "$dir/$name.log" "$@")
    st=$(starttime_of "$pid" || echo "")
    echo "$pid $st" >"$dir/$name.pidinfo"
}

# tail_log DIR NAME
tail_log() {
    local f=$1/$2.log
    if [ -s "$f" ]; then
        echo "---- last lines of $f:" >&2
        tail -n 40 "$f" >&2 || true
        echo "----" >&2
    fi
}

# ---------------------------------------------------------------- files, ports

# free_ports N: N distinct loopback ports that can be bound right now, on one
# line.  Chosen below the ephemeral range so that outgoing client connections
# cannot grab them.
free_ports() {
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
socks, ports = [], []
while len(ports) < n:
    p = random.randint(15000, 32000)
    if p in ports:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close()
        continue
    socks.append(s)
    ports.append(p)
print(" ".join(map(str, ports)))
EOF
    else
        local ports=() p
        while [ ${#ports[@]} -lt "$1" ]; do
            p=$((15000 + RANDOM % 17000))
            [[ " ${ports[*]} " != *" $p "* ]] || continue
            if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
                ports+=("$p")
            fi
        done
        echo "${ports[*]}"
    fi
}

# abs_dir DIR: create DIR if needed and print its absolute physical path.
abs_dir() {
    mkdir -p "$1"
    (cd "$1" && pwd -P)
}

# ---------------------------------------------------------------- --owner-pid watchdog
#
# The watchdog is the sourcing script re-run as "SELF __watchdog OWNER
# OWNER_STARTTIME DIR [service args...]", detached, logging to
# DIR/watchdog.log; "PID STARTTIME" of it is kept in DIR/watchdog.pidinfo.

# check_owner_pid OWNER: die unless OWNER is empty or a live pid.
check_owner_pid() {
    [ -n "$1" ] || return 0
    [[ "$1" =~ ^[0-9]+$ ]] || die "--owner-pid must be a pid, got '$1'"
    alive "$1" || die "--owner-pid $1: no such process"
}

# spawn_watchdog OWNER OWNER_STARTTIME DIR [service args...]: start the
# watchdog of DIR and record its pid (kill_watchdog the old one first).
spawn_watchdog() {
    local wpid
    wpid=$(detach "$3/watchdog.log" bash "$SELF" __watchdog "$@")
    echo "$wpid $(starttime_of "$wpid" || echo 0)" >"$3/watchdog.pidinfo"
}

# Kill the watchdog of DIR, unless we are the watchdog.
kill_watchdog() {
    local dir=$1 wpid wst i
    [ -f "$dir/watchdog.pidinfo" ] || return 0
    read -r wpid wst <"$dir/watchdog.pidinfo" || true
    rm -f "$dir/watchdog.pidinfo"
    if [ -n "${wpid:-}" ] && [ "$wpid" != "$$" ] && alive "$wpid" "${wst:-}"; then
        kill -TERM "$wpid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            alive "$wpid" "${wst:-}" || return 0
            sleep 0.1
        done
        kill -KILL "$wpid" 2>/dev/null || true
    fi
}

# watchdog_wait WHAT OWNER OWNER_STARTTIME DIR COLLECT: the watchdog's polling
# loop.  Every second it runs "COLLECT DIR" while DIR exists (to note the
# service's current pids, in the caller's variables), and returns as soon as
# OWNER is gone or DIR was deleted, after logging why ("stopping WHAT").  A
# SIGTERM/SIGINT while waiting (a normal stop kills the watchdog) exits 0;
# once it returns they are ignored, so the caller's cleanup runs to the end.
watchdog_wait() {
    local what=$1 owner=$2 owner_st=$3 dir=$4 collect=$5 sleeper=""
    trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 0' TERM INT
    while :; do
        if [ -d "$dir" ]; then
            "$collect" "$dir"
        fi
        if ! alive "$owner" "$owner_st"; then
            echo "$(date '+%F %T') owner $owner is gone: stopping $what and removing $dir"
            break
        fi
        if [ ! -d "$dir" ]; then
            echo "$(date '+%F %T') $dir was removed: stopping $what"
            break
        fi
        # 'wait' (unlike a foreground sleep) is interrupted by SIGTERM at once
        sleep 1 &
        sleeper=$!
        wait "$sleeper" || true
        sleeper=""
    done
    trap '' TERM INT
}

# ---------------------------------------------------------------- stop

# stop_args ARGS...: parses the `[--rm] DIR` of a stop command into STOP_RM (0 or 1) and STOP_DIR (DIR made
# absolute, or empty when it does not exist, in which case there is nothing to stop). Anything else calls usage.
stop_args() {
    local dir=""
    STOP_RM=0 STOP_DIR=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --rm) STOP_RM=1 ;;
            -*) usage ;;
            *) [ -z "$dir" ] || usage; dir=$1 ;;
        esac
        shift
    done
    [ -n "$dir" ] || usage
    if [ -d "$dir" ]; then
        STOP_DIR=$(cd "$dir" && pwd -P)
    fi
}

# ---------------------------------------------------------------- single-process services (mariadb.sh, kafka.sh)
# Each sets PIDINFO_NAME: the file in DIR that holds "PID STARTTIME" of its server process.

# read_pidinfo DIR: SVC_PID and SVC_ST of DIR's server, empty when there is none.
# shellcheck disable=SC2034 # SVC_PID and SVC_ST are read by the sourcing script
read_pidinfo() {
    SVC_PID="" SVC_ST=""
    if [ -f "$1/$PIDINFO_NAME" ]; then
        read -r SVC_PID SVC_ST <"$1/$PIDINFO_NAME" || true
    fi
}

# port_is_free PORT: whether 127.0.0.1:PORT can be bound, with SO_REUSEADDR like the servers themselves, so that
# TIME_WAIT leftovers do not count.
port_is_free() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket,sys
s=socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("127.0.0.1",int(sys.argv[1])))
except OSError: sys.exit(1)' "$1"
    else
        ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# start_watchdog OWNER DIR SVC_PID SVC_STARTTIME: (re)start the watchdog.
start_watchdog() {
    local owner=$1 dir=$2 owner_st
    kill_watchdog "$dir"
    owner_st=$(starttime_of "$owner") || die "--owner-pid $owner: process is gone"
    spawn_watchdog "$owner" "$owner_st" "$dir" "$3" "$4"
}

# The EXIT trap of a start: stop the half-started server (STARTED_PID, STARTED_ST) and the watchdog of START_DIR.
start_failed_cleanup() {
    local rc=$? dir=$START_DIR
    if [ -n "${STARTED_PID:-}" ]; then
        terminate "$STARTED_PID" "$STARTED_ST" || true
        rm -f "$dir/$PIDINFO_NAME"
    fi
    if [ "${WATCHDOG_STARTED:-0}" = 1 ]; then
        kill_watchdog "$dir"
    fi
    exit "$rc"
}
