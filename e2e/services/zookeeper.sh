#!/usr/bin/env bash
# Throwaway ZooKeeper (standalone or 3-node ensemble) for tests and the demo.
# See README.md next to this file.
#
#   zookeeper.sh start          [--owner-pid PID] DIR     standalone, 1 node
#   zookeeper.sh start-ensemble [--owner-pid PID] DIR     3 nodes
#   zookeeper.sh stop [--rm] DIR                          stop every node
#   zookeeper.sh stop-node DIR N                          stop node N (1..3)
#   zookeeper.sh start-node [--no-wait] DIR N             restart node N
#   zookeeper.sh status DIR
#
# start/start-ensemble/start-node print the path of DIR/env (shell-sourceable)
# as their last stdout line.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")"
SERVICE_NAME=zookeeper.sh
# shellcheck source=lib.sh
. "$(dirname "$SELF")/lib.sh"

START_TIMEOUT=${ZK_START_TIMEOUT:-60}
STOP_TIMEOUT=${ZK_STOP_TIMEOUT:-30}
ENSEMBLE_SIZE=3

usage() {
    cat >&2 <<EOF
usage: $(basename "$0") start          [--owner-pid PID] DIR
       $(basename "$0") start-ensemble [--owner-pid PID] DIR
       $(basename "$0") stop [--rm] DIR
       $(basename "$0") stop-node DIR N
       $(basename "$0") start-node [--no-wait] DIR N
       $(basename "$0") status DIR
EOF
    exit 2
}

# ---------------------------------------------------------------- helpers
# (log, die, alive, terminate, detach, free_ports, watchdog: see lib.sh)

# zk4 PORT CMD: send a four-letter word, print the reply (empty on failure).
zk4() {
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "%s" "$1" >&3
        cat <&3' "$1" "$2" 2>/dev/null || true
}

# zk_mode PORT: "leader", "follower", "standalone", or "" if not serving.
zk_mode() {
    zk4 "$1" srvr | sed -n 's/^Mode: //p' | head -n1
}

find_java() {
    JAVA=${JAVA:-$(command -v java || true)}
    [ -n "$JAVA" ] || die "java not found; run $(dirname "$SELF")/install.sh"
    if [ -n "${ZOOKEEPER_CLASSPATH:-}" ]; then
        ZK_CP=$ZOOKEEPER_CLASSPATH
        return
    fi
    local jar=/usr/share/java/zookeeper.jar
    [ -f "$jar" ] || die "$jar not found; run $(dirname "$SELF")/install.sh"
    # zookeeper.jar's manifest Class-Path pulls in its dependencies; add an
    # slf4j binding + log4j 1.2 so the server actually writes a log.  (Do not
    # use /usr/share/java/*: it holds several competing slf4j bindings.)
    ZK_CP=$jar
    if [ -f /usr/share/java/slf4j-log4j12.jar ] && [ -f /usr/share/java/log4j-1.2.jar ]; then
        ZK_CP=$ZK_CP:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar
    fi
}

node_count() {
    local n=0
    while [ -d "$1/node$((n + 1))" ]; do n=$((n + 1)); done
    echo "$n"
}

# read_node DIR N: sets NODE_DIR CLIENT_PORT QUORUM_PORT ELECTION_PORT NODE_PID NODE_ST
read_node() {
    NODE_DIR=$1/node$2
    CLIENT_PORT="" QUORUM_PORT="" ELECTION_PORT="" NODE_PID="" NODE_ST=""
    [ -f "$NODE_DIR/ports" ] && read -r CLIENT_PORT QUORUM_PORT ELECTION_PORT <"$NODE_DIR/ports" || true
    [ -f "$NODE_DIR/pidinfo" ] && read -r NODE_PID NODE_ST <"$NODE_DIR/pidinfo" || true
}

node_running() {
    read_node "$1" "$2"
    [ -n "$NODE_PID" ] && alive "$NODE_PID" "$NODE_ST"
}

# launch_node DIR N: start the JVM of node N, record its pid.
launch_node() {
    local dir=$1 n=$2 pid st
    read_node "$dir" "$n"
    pid=$(detach "$NODE_DIR/zookeeper.out" "$JAVA" \
        -Xms16m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData \
        -Djava.net.preferIPv4Stack=true \
        -Dzookeeper.log.dir="$NODE_DIR" \
        -Dzookeeper.log.file=zookeeper.log \
        -Dlog4j.configuration="file:$dir/log4j.properties" \
        -Dzookeeper.jmx.log4j.disable=true \
        -cp "$ZK_CP" \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$NODE_DIR/zoo.cfg")
    st=$(starttime_of "$pid" || echo "")
    echo "$pid $st" >"$NODE_DIR/pidinfo"
}

stop_node_pid() {
    local dir=$1 n=$2
    read_node "$dir" "$n"
    if [ -n "$NODE_PID" ]; then
        terminate "$NODE_PID" "$NODE_ST" || true
    fi
    rm -f "$NODE_DIR/pidinfo"
}

# write_env DIR
write_env() {
    local dir=$1 n count mode servers="" pids="" tmp
    count=$(node_count "$dir")
    mode=$(cat "$dir/mode")
    tmp=$dir/env.tmp
    {
        printf 'ZK_MODE=%s\n' "$mode"
        printf 'ZK_NODES=%s\n' "$count"
        printf 'ZK_DIR=%q\n' "$dir"
        for ((n = 1; n <= count; n++)); do
            read_node "$dir" "$n"
            servers+="${servers:+,}127.0.0.1:$CLIENT_PORT"
            if [ -n "$NODE_PID" ] && alive "$NODE_PID" "$NODE_ST"; then
                pids+="${pids:+,}$NODE_PID"
            else
                NODE_PID=""
            fi
            printf 'ZK_NODE%d_PORT=%s\n' "$n" "$CLIENT_PORT"
            printf 'ZK_NODE%d_PID=%s\n' "$n" "$NODE_PID"
            if [ "$mode" = ensemble ]; then
                printf 'ZK_NODE%d_QUORUM_PORT=%s\n' "$n" "$QUORUM_PORT"
                printf 'ZK_NODE%d_ELECTION_PORT=%s\n' "$n" "$ELECTION_PORT"
            fi
            printf 'ZK_NODE%d_LOG=%q\n' "$n" "$NODE_DIR/zookeeper.log"
        done
        printf 'ZK_SERVERS=%s\n' "$servers"
        printf 'ZK_PIDS=%s\n' "$pids"
    } >"$tmp"
    mv -f "$tmp" "$dir/env"
}

print_logs() {
    local dir=$1 n count
    count=$(node_count "$dir")
    for ((n = 1; n <= count; n++)); do
        for f in "$dir/node$n/zookeeper.log" "$dir/node$n/zookeeper.out"; do
            if [ -s "$f" ]; then
                echo "---- last lines of $f:" >&2
                tail -n 25 "$f" >&2 || true
            fi
        done
    done
    echo "----" >&2
}

bind_error() {
    local dir=$1 n count
    count=$(node_count "$dir")
    for ((n = 1; n <= count; n++)); do
        if grep -qs 'Address already in use' "$dir/node$n/zookeeper.log" "$dir/node$n/zookeeper.out"; then
            return 0
        fi
    done
    return 1
}

# wait_ready DIR NODES...: wait until every given node serves (standalone:
# Mode standalone; ensemble: leader/follower, and among all running nodes
# exactly one leader).  Returns 1 on timeout, 2 if a node died.
wait_ready() {
    local dir=$1
    shift
    local mode deadline n modes leaders ok count
    mode=$(cat "$dir/mode")
    count=$(node_count "$dir")
    deadline=$(($(date +%s) + START_TIMEOUT))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        ok=1
        for n in "$@"; do
            node_running "$dir" "$n" || return 2
            modes=$(zk_mode "$CLIENT_PORT")
            if [ "$mode" = standalone ]; then
                [ "$modes" = standalone ] || ok=0
            else
                [ "$modes" = leader ] || [ "$modes" = follower ] || ok=0
            fi
        done
        if [ "$ok" = 1 ] && [ "$mode" = ensemble ]; then
            leaders=0
            for ((n = 1; n <= count; n++)); do
                node_running "$dir" "$n" || continue
                [ "$(zk_mode "$CLIENT_PORT")" != leader ] || leaders=$((leaders + 1))
            done
            [ "$leaders" = 1 ] || ok=0
        fi
        [ "$ok" = 0 ] || return 0
        sleep 0.2
    done
    return 1
}

# wait_port_open PORT: until ruok answers imok (node running, maybe not serving)
wait_ruok() {
    local dir=$1 n=$2 deadline
    deadline=$(($(date +%s) + START_TIMEOUT))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        node_running "$dir" "$n" || return 2
        [ "$(zk4 "$CLIENT_PORT" ruok)" != imok ] || return 0
        sleep 0.2
    done
    return 1
}

# ---------------------------------------------------------------- watchdog

# restart_watchdog DIR: (re)start the watchdog if DIR has an owner, passing
# the current node pids so it can act even if DIR is deleted right away.
restart_watchdog() {
    local dir=$1 owner owner_st n count pids=""
    [ -f "$dir/owner" ] || return 0
    read -r owner owner_st <"$dir/owner"
    kill_watchdog "$dir"
    count=$(node_count "$dir")
    for ((n = 1; n <= count; n++)); do
        read_node "$dir" "$n"
        [ -z "$NODE_PID" ] || pids+="${pids:+,}$NODE_PID:$NODE_ST"
    done
    spawn_watchdog "$owner" "$owner_st" "$dir" "$pids"
}

# watchdog_collect DIR: note every node's current pid in cmd_watchdog's "known".
watchdog_collect() {
    local n count
    count=$(node_count "$1")
    for ((n = 1; n <= count; n++)); do
        read_node "$1" "$n"
        [ -z "$NODE_PID" ] || known[$NODE_PID]=$NODE_ST
    done
}

# __watchdog OWNER_PID OWNER_STARTTIME DIR PID:ST,PID:ST,...
cmd_watchdog() {
    local owner=$1 owner_st=$2 dir=$3
    declare -A known=()
    local item
    IFS=, read -r -a items <<<"$4"
    for item in "${items[@]}"; do
        [ -z "$item" ] || known[${item%%:*}]=${item#*:}
    done
    watchdog_wait ZooKeeper "$owner" "$owner_st" "$dir" watchdog_collect
    local pid
    for pid in "${!known[@]}"; do
        alive "$pid" "${known[$pid]}" && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${!known[@]}"; do
        terminate "$pid" "${known[$pid]}" || true
    done
    rm -rf "$dir"
    exit 0
}

# ---------------------------------------------------------------- commands

stop_all() {
    local dir=$1 n count
    count=$(node_count "$dir")
    # SIGTERM everything first so the nodes shut down in parallel
    for ((n = 1; n <= count; n++)); do
        read_node "$dir" "$n"
        if [ -n "$NODE_PID" ] && alive "$NODE_PID" "$NODE_ST"; then
            kill -TERM "$NODE_PID" 2>/dev/null || true
        fi
    done
    for ((n = 1; n <= count; n++)); do
        stop_node_pid "$dir" "$n"
    done
}

cmd_stop() {
    stop_args "$@"
    local dir=$STOP_DIR
    [ -n "$dir" ] || return 0
    stop_all "$dir"
    kill_watchdog "$dir"
    if [ "$STOP_RM" = 1 ]; then
        rm -rf "$dir"
    elif [ -f "$dir/mode" ]; then
        write_env "$dir"
    fi
}

check_node_arg() {
    local dir=$1 n=$2
    [[ "$n" =~ ^[0-9]+$ ]] || die "node number must be a number, got '$n'"
    [ -f "$dir/node$n/zoo.cfg" ] || die "no node $n in $dir"
}

cmd_stop_node() {
    [ $# -eq 2 ] || usage
    local dir=$1 n=$2
    [ -d "$dir" ] || die "no such directory: $dir"
    dir=$(cd "$dir" && pwd -P)
    check_node_arg "$dir" "$n"
    stop_node_pid "$dir" "$n"
    write_env "$dir"
}

cmd_start_node() {
    local wait=1
    while [ $# -gt 0 ]; do
        case "$1" in
            --no-wait) wait=0; shift ;;
            -*) usage ;;
            *) break ;;
        esac
    done
    [ $# -eq 2 ] || usage
    local dir=$1 n=$2 rc=0
    [ -d "$dir" ] || die "no such directory: $dir"
    dir=$(cd "$dir" && pwd -P)
    check_node_arg "$dir" "$n"
    find_java
    if node_running "$dir" "$n"; then
        die "node $n is already running (pid $NODE_PID)"
    fi
    launch_node "$dir" "$n"
    restart_watchdog "$dir"
    if [ "$wait" = 1 ]; then
        wait_ready "$dir" "$n" || rc=$?
    else
        wait_ruok "$dir" "$n" || rc=$?
    fi
    write_env "$dir"
    if [ "$rc" != 0 ]; then
        print_logs "$dir"
        [ "$rc" = 2 ] && die "node $n exited during startup"
        die "node $n did not become ready within ${START_TIMEOUT}s (node left running)"
    fi
    echo "$dir/env"
}

cmd_status() {
    [ $# -eq 1 ] || usage
    local dir=$1 n count running=0
    [ -f "$dir/mode" ] || { echo "not running (no $dir/mode)" >&2; return 1; }
    dir=$(cd "$dir" && pwd -P)
    count=$(node_count "$dir")
    for ((n = 1; n <= count; n++)); do
        if node_running "$dir" "$n"; then
            running=$((running + 1))
            echo "node$n: pid $NODE_PID port $CLIENT_PORT mode $(zk_mode "$CLIENT_PORT")"
        else
            echo "node$n: stopped (port $CLIENT_PORT)"
        fi
    done
    [ "$running" -gt 0 ]
}

# start MODE [--owner-pid PID] DIR
cmd_start() {
    local mode=$1 owner=""
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --owner-pid)
                [ $# -ge 2 ] || usage
                owner=$2
                shift 2
                ;;
            --owner-pid=*) owner=${1#*=}; shift ;;
            -*) usage ;;
            *) break ;;
        esac
    done
    [ $# -eq 1 ] || usage
    local dir=$1
    check_owner_pid "$owner"
    find_java
    dir=$(abs_dir "$dir")

    local n count
    count=$(node_count "$dir")
    for ((n = 1; n <= count; n++)); do
        if node_running "$dir" "$n"; then
            die "ZooKeeper node $n is already running in $dir (pid $NODE_PID); stop it first"
        fi
    done
    kill_watchdog "$dir"

    local nodes=1
    [ "$mode" = standalone ] || nodes=$ENSEMBLE_SIZE

    local t0
    t0=$(date +%s%N)

    # fresh state every time
    rm -rf "$dir"/node* "$dir/env" "$dir/owner" "$dir/watchdog.log"
    echo "$mode" >"$dir/mode"
    if [ -n "$owner" ]; then
        echo "$owner $(starttime_of "$owner")" >"$dir/owner"
    fi
    cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${zookeeper.log.dir}/${zookeeper.log.file}
log4j.appender.FILE.Append=true
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n
EOF

    START_DIR=$dir
    trap start_failed_cleanup EXIT

    local attempt rc all=()
    for ((n = 1; n <= nodes; n++)); do all+=("$n"); done
    for attempt in 1 2 3 4 5; do
        local ports
        read -r -a ports <<<"$(free_ports $((nodes * 3)))"
        rm -rf "$dir"/node*
        for ((n = 1; n <= nodes; n++)); do
            local nd=$dir/node$n
            mkdir -p "$nd/data"
            echo "$n" >"$nd/data/myid"
            echo "${ports[$(((n - 1) * 3))]} ${ports[$(((n - 1) * 3 + 1))]} ${ports[$(((n - 1) * 3 + 2))]}" >"$nd/ports"
            {
                echo "tickTime=500"
                echo "initLimit=10"
                echo "syncLimit=5"
                echo "dataDir=$nd/data"
                echo "clientPort=${ports[$(((n - 1) * 3))]}"
                echo "clientPortAddress=127.0.0.1"
                echo "maxClientCnxns=0"
                echo "admin.enableServer=false"
                echo "4lw.commands.whitelist=*"
                echo "forceSync=no"
                echo "preAllocSize=4096"
                if [ "$mode" = ensemble ]; then
                    local m
                    for ((m = 1; m <= nodes; m++)); do
                        echo "server.$m=127.0.0.1:${ports[$(((m - 1) * 3 + 1))]}:${ports[$(((m - 1) * 3 + 2))]}"
                    done
                fi
            } >"$nd/zoo.cfg"
        done
        for ((n = 1; n <= nodes; n++)); do
            launch_node "$dir" "$n"
        done
        restart_watchdog "$dir"

        rc=0
        wait_ready "$dir" "${all[@]}" || rc=$?
        [ "$rc" != 0 ] || break

        if bind_error "$dir"; then
            log "a port was taken, retrying with other ports"
            stop_all "$dir"
            continue
        fi
        print_logs "$dir"
        stop_all "$dir"
        [ "$rc" = 2 ] && die "a ZooKeeper node exited during startup"
        die "ZooKeeper did not become ready within ${START_TIMEOUT}s"
    done
    [ "$rc" = 0 ] || die "could not start ZooKeeper (port conflicts)"

    write_env "$dir"
    trap - EXIT
    local t1
    t1=$(date +%s%N)
    log "ZooKeeper $mode ready: $(sed -n 's/^ZK_SERVERS=//p' "$dir/env") in $(((t1 - t0) / 1000000)) ms"
    echo "$dir/env"
}

start_failed_cleanup() {
    local rc=$? dir=$START_DIR
    stop_all "$dir" || true
    kill_watchdog "$dir" || true
    exit "$rc"
}

# ---------------------------------------------------------------- main

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
    start) cmd_start standalone "$@" ;;
    start-ensemble) cmd_start ensemble "$@" ;;
    stop) cmd_stop "$@" ;;
    stop-node) cmd_stop_node "$@" ;;
    start-node) cmd_start_node "$@" ;;
    status) cmd_status "$@" ;;
    __watchdog) [ $# -eq 4 ] || usage; cmd_watchdog "$@" ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac
