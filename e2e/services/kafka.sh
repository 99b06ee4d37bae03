#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Throwaway Apache Kafka 4 broker (KRaft, broker and controller in one JVM) for tests, the demo and the bench.
# See README.md next to this file.
#
#   kafka.sh build                                              build target/kafka/lib once; print its path
#   kafka.sh start [--owner-pid PID] [--port PORT] DIR          start (format DIR the first time)
#   kafka.sh stop [--rm] DIR
#   kafka.sh status DIR
#   kafka.sh topic DIR NAME [--partitions N] [--compact] [--config KEY=VALUE]...
#   kafka.sh tool CLASS [args...]                               run a Kafka main class (admin/console tools)
#
# start prints the path of DIR/env (shell-sourceable) as its last stdout line.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")"
SERVICE_NAME=kafka.sh
PIDINFO_NAME=kafka.pidinfo
# shellcheck source=lib.sh
. "$(dirname "$SELF")/lib.sh"

START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
REPO=$(cd "$(dirname "$SELF")/../.." && pwd -P)
POM=$REPO/e2e/kafka/pom.xml
OUT=$REPO/target/kafka
LIB=$OUT/lib

usage() {
    cat >&2 <<EOF
usage: $(basename "$0") build
       $(basename "$0") start [--owner-pid PID] [--port PORT] DIR
       $(basename "$0") stop [--rm] DIR
       $(basename "$0") status DIR
       $(basename "$0") topic DIR NAME [--partitions N] [--compact] [--config KEY=VALUE]...
       $(basename "$0") tool CLASS [args...]
EOF
    exit 2
}

# ---------------------------------------------------------------- helpers
# (log, die, alive, terminate, detach, free_ports, watchdog: see lib.sh)

find_java() {
    JAVA=${JAVA:-$(command -v java || true)}
    [ -n "$JAVA" ] || die "java not found; run $(dirname "$SELF")/install.sh"
}

# build: copy Kafka's jars from Maven Central into target/kafka/lib (e2e/kafka/pom.xml), unless they are there and
# the pom did not change since. Serialised with flock, so concurrent starts build once.
cmd_build() {
    [ $# -eq 0 ] || usage
    ensure_lib
    echo "$LIB"
}

ensure_lib() {
    local stamp=$OUT/.built
    if [ -f "$stamp" ] && [ -d "$LIB" ] && [ ! "$POM" -nt "$stamp" ]; then
        return 0
    fi
    mkdir -p "$OUT"
    (
        flock 9
        if [ -f "$stamp" ] && [ -d "$LIB" ] && [ ! "$POM" -nt "$stamp" ]; then
            exit 0
        fi
        command -v "${MVN:-mvn}" >/dev/null 2>&1 || die "mvn not found; run $(dirname "$SELF")/install.sh"
        log "copying Kafka's jars from Maven Central into $LIB"
        rm -rf "$LIB" "$stamp"
        local t0
        t0=$(date +%s%N)
        if ! (cd "$(dirname "$POM")" && "${MVN:-mvn}" -q -B -Dstyle.color=never package) >"$OUT/build.log" 2>&1; then
            tail -n 40 "$OUT/build.log" >&2 || true
            die "mvn package of $POM failed (log: $OUT/build.log)"
        fi
        touch "$stamp"
        log "Kafka's jars ready in $((($(date +%s%N) - t0) / 1000000)) ms"
    ) 9>"$OUT/.build.lock"
}

# kafka_version: the version of the kafka_2.13 jar in LIB.
kafka_version() {
    local jar
    for jar in "$LIB"/kafka_2.13-*.jar; do
        jar=${jar##*/kafka_2.13-}
        echo "${jar%.jar}"
        return 0
    done
    echo unknown
}

# Options of every short-lived tool JVM (format, topic, tool): small, fast to start.
TOOL_JVM_OPTS=(-Xms16m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData
    -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true)

# run_tool CLASS args...: a Kafka main class on LIB's jars. log4j2's default configuration (errors to stderr)
# applies unless KAFKA_TOOL_LOG4J names another file.
run_tool() {
    local log4j=()
    [ -z "${KAFKA_TOOL_LOG4J:-}" ] || log4j=(-Dlog4j2.configurationFile="$KAFKA_TOOL_LOG4J")
    "$JAVA" "${TOOL_JVM_OPTS[@]}" "${log4j[@]}" -cp "$LIB/*" "$@"
}


# api_versions PORT: a real Kafka request. Sends ApiVersions v0 (correlation id 7) and succeeds when the broker
# answers it without error. A KRaft broker serves its client listener only once it has caught up with the metadata
# and the controller has unfenced it, so an answer means topics can be created and written.
api_versions() {
    local reply
    # shellcheck disable=SC2016 # $0 is the inner shell's
    reply=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x00\x07\x00\x04ping" >&3
        head -c 10 <&3 | od -An -tx1' "$1" 2>/dev/null | tr -d ' \n') || return 1
    [[ "$reply" =~ ^[0-9a-f]{8}000000070000$ ]]
}


# Read "PORT CONTROLLER_PORT" from DIR/ports into PORT / CONTROLLER_PORT.
read_ports() {
    PORT="" CONTROLLER_PORT=""
    if [ -f "$1/ports" ]; then
        read -r PORT CONTROLLER_PORT <"$1/ports" || true
    fi
}


# random_cluster_id: a Kafka Uuid (16 random bytes, base64url without padding, not starting with '-').
random_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [ "${id:0:1}" = - ] || break
    done
    echo "$id"
}

# write_config DIR PORT CONTROLLER_PORT
write_config() {
    local dir=$1 port=$2 cport=$3
    cat >"$dir/server.properties" <<EOF
# Written by e2e/services/kafka.sh: a single KRaft node that is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data

# Tests create their topics (kafka.sh topic, Kafka::create_topic).
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1

# One node: every internal topic has one replica, and transactions work.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0

# Small and quick: a throwaway broker.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.segment.bytes=16777216
log.retention.hours=24
log.retention.check.interval.ms=60000
log.cleaner.dedupe.buffer.size=4194304
log.cleaner.threads=1
offsets.topic.segment.bytes=16777216
transaction.state.log.segment.bytes=16777216
EOF
    cat >"$dir/log4j2.properties" <<'EOF'
# Written by e2e/services/kafka.sh: the broker logs into ${sys:kafka.logs.dir}/server.log.
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
EOF
}

# ---------------------------------------------------------------- stop

cmd_stop() {
    stop_args "$@"
    [ -n "$STOP_DIR" ] || return 0
    local dir=$STOP_DIR
    read_pidinfo "$dir"
    if [ -n "$SVC_PID" ]; then
        terminate "$SVC_PID" "$SVC_ST" || true
    fi
    rm -f "$dir/kafka.pidinfo"
    kill_watchdog "$dir"
    if [ "$STOP_RM" = 1 ]; then
        rm -rf "$dir"
    elif [ -f "$dir/env" ]; then
        sed -i 's/^KAFKA_PID=.*/KAFKA_PID=/' "$dir/env"
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

# ---------------------------------------------------------------- topic, tool

# topic DIR NAME [--partitions N] [--compact] [--config KEY=VALUE]...: create a topic (replication factor 1) on the
# broker of DIR; an existing topic of that name is left as it is.
cmd_topic() {
    [ $# -ge 2 ] || usage
    local dir=$1 name=$2 partitions=1 configs=()
    shift 2
    while [ $# -gt 0 ]; do
        case "$1" in
            --partitions)
                [ $# -ge 2 ] || usage
                partitions=$2
                shift 2
                ;;
            --partitions=*) partitions=${1#*=}; shift ;;
            --compact) configs+=(--config cleanup.policy=compact); shift ;;
            --config)
                [ $# -ge 2 ] || usage
                configs+=(--config "$2")
                shift 2
                ;;
            --config=*) configs+=(--config "${1#*=}"); shift ;;
            *) usage ;;
        esac
    done
    [[ "$partitions" =~ ^[0-9]+$ ]] || die "--partitions must be a number, got '$partitions'"
    [ -f "$dir/env" ] || die "no broker in $dir (no $dir/env)"
    local bootstrap
    bootstrap=$(sed -n 's/^KAFKA_BOOTSTRAP=//p' "$dir/env" | head -n1)
    find_java
    ensure_lib
    run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic "$name" --partitions "$partitions" --replication-factor 1 "${configs[@]}" >&2 \
        || die "creating topic $name failed"
}

cmd_tool() {
    [ $# -ge 1 ] || usage
    find_java
    ensure_lib
    run_tool "$@"
}

# ---------------------------------------------------------------- watchdog

# watchdog_collect DIR: note the current broker in cmd_watchdog's last_pid/last_st.
watchdog_collect() {
    read_pidinfo "$1"
    if [ -n "$SVC_PID" ]; then last_pid=$SVC_PID last_st=$SVC_ST; fi
}

# __watchdog OWNER_PID OWNER_STARTTIME DIR SVC_PID SVC_STARTTIME
cmd_watchdog() {
    local owner=$1 owner_st=$2 dir=$3
    local last_pid=$4 last_st=$5
    watchdog_wait Kafka "$owner" "$owner_st" "$dir" watchdog_collect
    if [ -n "$last_pid" ]; then
        terminate "$last_pid" "$last_st" || true
    fi
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
            -*) usage ;;
            *) break ;;
        esac
    done
    [ $# -eq 1 ] || usage
    local dir=$1

    check_owner_pid "$owner"
    if [ -n "$port" ]; then
        [[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number, got '$port'"
    fi
    find_java
    ensure_lib
    dir=$(abs_dir "$dir")

    read_pidinfo "$dir"
    if [ -n "$SVC_PID" ] && alive "$SVC_PID" "$SVC_ST"; then
        die "a Kafka broker is already running in $dir (pid $SVC_PID); stop it first"
    fi
    kill_watchdog "$dir"

    local t0
    t0=$(date +%s%N)

    # Reuse the previous ports on a restart of the same DIR, if still free.
    read_ports "$dir"
    local cport=""
    if [ -z "$port" ] && [ -n "$PORT" ] && port_is_free "$PORT"; then
        port=$PORT
    fi
    if [ -n "$CONTROLLER_PORT" ] && [ "$CONTROLLER_PORT" != "$port" ] && port_is_free "$CONTROLLER_PORT"; then
        cport=$CONTROLLER_PORT
    fi
    local fixed_port=0
    [ -z "$port" ] || fixed_port=1
    # The readiness probe cannot tell this broker from another one already listening there.
    if [ "$fixed_port" = 1 ] && ! port_is_free "$port"; then
        die "127.0.0.1:$port (--port) is taken; stop what listens there or choose another port"
    fi

    # Clean up whatever we started if we fail half-way.
    STARTED_PID="" STARTED_ST="" WATCHDOG_STARTED=0
    START_DIR=$dir
    trap start_failed_cleanup EXIT

    local attempt pid st ready out=$dir/kafka.out logfile=$dir/server.log
    for attempt in 1 2 3 4 5; do
        [ "$attempt" = 1 ] || log "attempt $attempt"
        local picked
        read -r -a picked <<<"$(free_ports 2)"
        [ -n "$port" ] || port=${picked[0]}
        if [ -z "$cport" ] || [ "$cport" = "$port" ]; then
            cport=${picked[1]}
            [ "$cport" != "$port" ] || cport=${picked[0]}
        fi
        echo "$port $cport" >"$dir/ports"
        write_config "$dir" "$port" "$cport"

        # ---- format the storage (first start only)
        if [ ! -f "$dir/data/meta.properties" ]; then
            local cluster_id
            cluster_id=$(random_cluster_id)
            if ! run_tool kafka.tools.StorageTool format --cluster-id "$cluster_id" \
                --config "$dir/server.properties" >"$dir/format.log" 2>&1; then
                cat "$dir/format.log" >&2 || true
                die "formatting the KRaft storage failed (log: $dir/format.log)"
            fi
        fi

        echo "==== $(date '+%F %T') starting on 127.0.0.1:$port (controller $cport)" >>"$out"
        pid=$(detach "$out" "$JAVA" \
            -Xms64m -Xmx384m -XX:+UseSerialGC -XX:-UsePerfData \
            -XX:+ExitOnOutOfMemoryError \
            -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
            -Dkafka.logs.dir="$dir" \
            -Dlog4j2.configurationFile="$dir/log4j2.properties" \
            -cp "$LIB/*" \
            kafka.Kafka "$dir/server.properties")
        st=$(starttime_of "$pid" || echo "")
        STARTED_PID=$pid STARTED_ST=$st
        echo "$pid $st" >"$dir/kafka.pidinfo"
        # the watchdog also covers the startup phase (caller killed meanwhile)
        if [ -n "$owner" ]; then
            WATCHDOG_STARTED=1
            start_watchdog "$owner" "$dir" "$pid" "$st"
        fi

        ready=0
        local deadline
        deadline=$(($(date +%s) + START_TIMEOUT))
        while [ "$(date +%s)" -lt "$deadline" ]; do
            alive "$pid" "$st" || break
            if api_versions "$port"; then
                ready=1
                break
            fi
            sleep 0.1
        done
        [ "$ready" = 0 ] || break

        local exited=0
        alive "$pid" "$st" || exited=1
        terminate "$pid" "$st" || true
        rm -f "$dir/kafka.pidinfo"
        STARTED_PID=""
        # A port taken meanwhile: retry with other ports (only the controller's when --port fixed the broker's).
        if grep -qs 'Address already in use' "$out" "$logfile" \
            && { [ "$fixed_port" = 0 ] || ! port_is_free "$cport"; }; then
            log "a port was taken, retrying with other ports"
            # Forget the log lines of this attempt, so the next one does not see them.
            : >"$logfile"
            : >"$out"
            [ "$fixed_port" = 1 ] || port=""
            cport=""
            continue
        fi
        for f in "$logfile" "$out"; do
            if [ -s "$f" ]; then
                echo "---- last lines of $f:" >&2
                tail -n 40 "$f" >&2 || true
            fi
        done
        echo "----" >&2
        if [ "$exited" = 1 ]; then
            die "the Kafka broker exited during startup; see $logfile"
        fi
        die "the Kafka broker did not answer ApiVersions within ${START_TIMEOUT}s; see $logfile"
    done
    [ "$ready" = 1 ] || die "could not start Kafka (port conflicts); see $logfile"

    # ---- env file
    local tmp=$dir/env.tmp
    {
        printf '%s=%q\n' \
            KAFKA_BOOTSTRAP "127.0.0.1:$port" \
            KAFKA_PORT "$port" \
            KAFKA_CONTROLLER_PORT "$cport" \
            KAFKA_PID "$pid" \
            KAFKA_DIR "$dir" \
            KAFKA_LOG "$logfile" \
            KAFKA_OUT "$out" \
            KAFKA_CONFIG "$dir/server.properties" \
            KAFKA_LIB "$LIB" \
            KAFKA_VERSION "$(kafka_version)"
    } >"$tmp"
    mv -f "$tmp" "$dir/env"

    trap - EXIT
    log "Kafka $(kafka_version) ready on 127.0.0.1:$port (pid $pid) in $((($(date +%s%N) - t0) / 1000000)) ms"
    echo "$dir/env"
}


# ---------------------------------------------------------------- main

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
    build) cmd_build "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    topic) cmd_topic "$@" ;;
    tool) cmd_tool "$@" ;;
    __watchdog) [ $# -eq 5 ] || usage; cmd_watchdog "$@" ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac
