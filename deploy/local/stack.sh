#!/usr/bin/env bash
# Local stack without Docker: Apache Kafka (KRaft, one combined broker + controller, run from the
# Maven Central jars resolved by deploy/local/kafka/pom.xml) and Redis (Debian's redis-server).
#
# Usage: deploy/local/stack.sh [--profile demo|test] COMMAND [kafka|redis ...]
#   fetch    resolve the Kafka jars into .cache/kafka-jars/<hash of pom.xml> (network once)
#   start    start the services that are not running yet; returns without waiting
#   wait     wait until the services answer (METERING_STACK_TIMEOUT seconds, default 120)
#   up       start + wait
#   status   one line per service; exit 0 = all running, 3 = none running, 1 = some
#   stop     stop the services (graceful, then SIGKILL after 60 s)
#   env      print `export ...` lines with the client addresses
#
# Profiles (defaults; each can be overridden by the environment variable named in brackets):
#   demo: state .state/stack [METERING_STACK_DIR], Kafka 127.0.0.1:19092 [KAFKA_PORT],
#         controller 19093 [KAFKA_CONTROLLER_PORT], Redis 16379 [REDIS_PORT],
#         appendonly yes [REDIS_APPENDONLY], 16 databases [REDIS_DATABASES]
#   test: state .state/test-stack, Kafka 29092, controller 29093, Redis 26379, appendonly no,
#         64 databases (each test gets its own)
# Also: KAFKA_HEAP_OPTS (default -Xms256m -Xmx768m), METERING_KAFKA_JVM_OPTS (extra JVM flags),
# METERING_KAFKA_JARS_CACHE (default .cache/kafka-jars).
#
# A service is "running" when its pid file names a live process of the right kind. A port that
# answers without such a process is reported and never started twice.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$repo/deploy/local"

profile=${METERING_STACK_PROFILE:-demo}
if [[ ${1:-} == --profile ]]; then
    profile=${2:?--profile needs a value}
    shift 2
fi
case $profile in
    demo) d_dir=.state/stack d_kafka=19092 d_ctrl=19093 d_redis=16379 d_aof=yes d_dbs=16 ;;
    test) d_dir=.state/test-stack d_kafka=29092 d_ctrl=29093 d_redis=26379 d_aof=no d_dbs=64 ;;
    *) echo "stack.sh: unknown profile '$profile' (demo or test)" >&2; exit 2 ;;
esac
command=${1:-status}
[[ $# -gt 0 ]] && shift
services=("$@")
[[ ${#services[@]} -gt 0 ]] || services=(kafka redis)

stack_dir=${METERING_STACK_DIR:-$d_dir}
[[ $stack_dir == /* ]] || stack_dir="$repo/$stack_dir"
kafka_port=${KAFKA_PORT:-$d_kafka}
ctrl_port=${KAFKA_CONTROLLER_PORT:-$d_ctrl}
redis_port=${REDIS_PORT:-$d_redis}
redis_aof=${REDIS_APPENDONLY:-$d_aof}
redis_dbs=${REDIS_DATABASES:-$d_dbs}
heap_opts=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
timeout=${METERING_STACK_TIMEOUT:-120}
jar_cache=${METERING_KAFKA_JARS_CACHE:-$repo/.cache/kafka-jars}

kdir="$stack_dir/kafka"
rdir="$stack_dir/redis"
kafka_pidfile="$kdir/kafka.pid"
redis_pidfile="$rdir/redis.pid"

say() { printf 'stack[%s]: %s\n' "$profile" "$*"; }
die() { printf 'stack[%s]: error: %s\n' "$profile" "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_of PIDFILE PATTERN: print the pid when it is alive and its command line contains PATTERN.
pid_of() {
    local pid cmd
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *"$2"* ]] || return 1
    echo "$pid"
}
kafka_pid() { pid_of "$kafka_pidfile" "$kdir/server.properties"; }
redis_pid() { pid_of "$redis_pidfile" "redis-server"; }

# ---------------------------------------------------------------------------------------- jars
jars_dir() { echo "$jar_cache/$(sha256sum "$here/kafka/pom.xml" | cut -c1-16)"; }

fetch_jars() {
    local dest tmp
    dest=$(jars_dir)
    [[ -f $dest/.complete ]] && return 0
    mkdir -p "$jar_cache"
    exec 8>"$jar_cache/.lock"
    flock -w 600 8 || die "another fetch holds $jar_cache/.lock"
    if [[ ! -f $dest/.complete ]]; then
        command -v mvn >/dev/null || die "Maven (mvn) is needed once to fetch the Kafka jars"
        say "fetching Kafka jars with Maven into ${dest#"$repo"/} (once per pom.xml)"
        tmp=$(mktemp -d "$jar_cache/.tmp.XXXXXX")
        local began=$SECONDS
        # The plugin version is pinned: an unpinned prefix makes Maven look up the newest one.
        if ! mvn -q -B -Dstyle.color=never -f "$here/kafka/pom.xml" \
            org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
            -DoutputDirectory="$tmp" -DincludeScope=runtime 8>&-; then
            rm -rf "$tmp"
            die "mvn could not resolve the Kafka jars"
        fi
        touch "$tmp/.complete"
        chmod 755 "$tmp"
        rm -rf "$dest"
        mv "$tmp" "$dest"
        # Jars of an older pom.xml are no longer needed.
        find "$jar_cache" -mindepth 1 -maxdepth 1 -type d ! -path "$dest" -exec rm -rf {} +
        say "fetched $(find "$dest" -name '*.jar' | wc -l) jars in $((SECONDS - began)) s"
    fi
    exec 8>&-
}

# --------------------------------------------------------------------------------------- kafka
check_java() {
    command -v java >/dev/null || die "Java 17 or newer is needed to run Kafka"
    local v
    v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
    [[ ${v:-0} -ge 17 ]] || die "Kafka 4 needs Java 17 or newer (found: ${v:-unknown})"
}

# What `StorageTool random-uuid` prints (16 random bytes, base64url, no padding; never starting
# with "-"), without starting a JVM for it.
new_cluster_id() {
    local id=-
    while [[ $id == -* ]]; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)
    done
    echo "$id"
}

start_kafka() {
    local pid jars
    if pid=$(kafka_pid); then
        say "kafka already running (pid $pid, 127.0.0.1:$kafka_port)"
        return 0
    fi
    for p in "$kafka_port" "$ctrl_port"; do
        if port_open "$p"; then die "port $p is in use by a process that is not this stack's Kafka"; fi
    done
    check_java
    fetch_jars
    jars=$(jars_dir)
    mkdir -p "$kdir/data" "$kdir/logs"
    sed -e "s|@KAFKA_PORT@|$kafka_port|g" -e "s|@KAFKA_CONTROLLER_PORT@|$ctrl_port|g" \
        -e "s|@KAFKA_DATA_DIR@|$kdir/data|g" "$here/kafka/server.properties" >"$kdir/server.properties"
    if [[ ! -f $kdir/data/meta.properties ]]; then
        [[ -s $kdir/cluster-id ]] || new_cluster_id >"$kdir/cluster-id"
        say "formatting Kafka storage (cluster id $(<"$kdir/cluster-id"))"
        java -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
            -Dkafka.logs.dir="$kdir/logs" -cp "$jars/*" kafka.tools.StorageTool format \
            --config "$kdir/server.properties" --cluster-id "$(<"$kdir/cluster-id")" \
            >"$kdir/logs/format.log" 2>&1 8>&- 9>&- ||
            { cat "$kdir/logs/format.log" >&2; die "kafka storage format failed"; }
    fi
    # A fresh server.log per start, so `wait` reads only this run's lines.
    [[ -f $kdir/logs/server.log ]] && mv "$kdir/logs/server.log" "$kdir/logs/server.log.previous"
    rm -f "$kafka_pidfile"
    # setsid: the broker outlives this script and ignores the terminal's Ctrl-C.
    # shellcheck disable=SC2086,SC2016
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$kafka_pidfile" \
        java $heap_opts -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true ${METERING_KAFKA_JVM_OPTS:-} \
        -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" -Dkafka.logs.dir="$kdir/logs" \
        -cp "$jars/*" kafka.Kafka "$kdir/server.properties" \
        </dev/null >"$kdir/logs/stdout.log" 2>&1 8>&- 9>&- &
    for _ in $(seq 50); do [[ -s $kafka_pidfile ]] && break; sleep 0.1; done
    pid=$(kafka_pid) || die "kafka did not start; see ${kdir#"$repo"/}/logs/stdout.log"
    say "kafka started (pid $pid, 127.0.0.1:$kafka_port, controller $ctrl_port)"
}

# Ready = the port answers and this process logged "Kafka Server started" (the broker is then
# unfenced). The pid is remembered in kafka/ready, since server.log may roll over later.
kafka_ready() {
    local pid
    port_open "$kafka_port" || return 1
    pid=$(kafka_pid) || return 1
    [[ $(cat "$kdir/ready" 2>/dev/null) == "$pid" ]] && return 0
    grep -q 'Kafka Server started' "$kdir/logs/server.log" 2>/dev/null || return 1
    echo "$pid" >"$kdir/ready"
}

wait_kafka() {
    local deadline=$((SECONDS + timeout))
    until kafka_ready; do
        if ! kafka_pid >/dev/null; then
            tail -n 30 "$kdir/logs/server.log" "$kdir/logs/stdout.log" >&2 2>/dev/null || true
            die "kafka is not running (see ${kdir#"$repo"/}/logs/)"
        fi
        ((SECONDS < deadline)) || die "kafka not ready after ${timeout} s (see ${kdir#"$repo"/}/logs/)"
        sleep 0.2
    done
    say "kafka ready on 127.0.0.1:$kafka_port"
}

# --------------------------------------------------------------------------------------- redis
start_redis() {
    local pid
    if pid=$(redis_pid); then
        say "redis already running (pid $pid, 127.0.0.1:$redis_port)"
        return 0
    fi
    if port_open "$redis_port"; then
        die "port $redis_port is in use by a process that is not this stack's Redis"
    fi
    command -v redis-server >/dev/null ||
        die "redis-server is missing (deploy/demo and deploy/test install it: apt-get install redis-server)"
    mkdir -p "$rdir/data"
    cat >"$rdir/redis.conf" <<EOF
# Written by deploy/local/stack.sh (profile $profile); edit deploy/local/redis/redis.conf instead.
include $here/redis/redis.conf
port $redis_port
dir $rdir/data
pidfile $redis_pidfile
logfile $rdir/redis.log
appendonly $redis_aof
databases $redis_dbs
EOF
    rm -f "$redis_pidfile"
    # daemonize yes: redis-server forks, detaches (setsid) and writes its own pid file.
    redis-server "$rdir/redis.conf" 8>&- 9>&- || die "redis-server failed; see ${rdir#"$repo"/}/redis.log"
    for _ in $(seq 50); do [[ -s $redis_pidfile ]] && break; sleep 0.1; done
    pid=$(redis_pid) || die "redis did not start; see ${rdir#"$repo"/}/redis.log"
    say "redis started (pid $pid, 127.0.0.1:$redis_port, appendonly $redis_aof, $redis_dbs databases)"
}

redis_ready() { # PING answers +PONG once the data set is loaded (-LOADING before).
    local reply
    reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$redis_port" && printf 'PING\r\n' >&3 &&
        read -r -t 2 line <&3 && echo "$line") 2>/dev/null) || return 1
    [[ $reply == +PONG* ]]
}

wait_redis() {
    local deadline=$((SECONDS + timeout))
    until redis_ready; do
        redis_pid >/dev/null || die "redis is not running (see ${rdir#"$repo"/}/redis.log)"
        ((SECONDS < deadline)) || die "redis not ready after ${timeout} s"
        sleep 0.1
    done
    say "redis ready on 127.0.0.1:$redis_port"
}

# ---------------------------------------------------------------------------------------- both
stop_service() { # NAME PIDFILE PID
    local i
    kill -TERM "$3" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$3" 2>/dev/null; then
        say "$1 (pid $3) still running after 60 s: SIGKILL"
        kill -KILL "$3" 2>/dev/null || true
    fi
    rm -f "$2"
    say "$1 stopped"
}

status_line() { # NAME PID_FUNCTION PORT LOG
    local pid
    if pid=$($2); then
        printf '%-6s running  pid %-7s 127.0.0.1:%s  log %s\n' "$1" "$pid" "$3" "${4#"$repo"/}"
        return 0
    fi
    if port_open "$3"; then
        printf '%-6s port 127.0.0.1:%s answers, but not from this stack (state %s)\n' "$1" "$3" \
            "${stack_dir#"$repo"/}"
    else
        printf '%-6s stopped\n' "$1"
    fi
    return 1
}

lock() {
    mkdir -p "$stack_dir"
    exec 9>"$stack_dir/.lock"
    flock -w 300 9 || die "another stack.sh holds ${stack_dir#"$repo"/}/.lock"
}

for s in "${services[@]}"; do
    [[ $s == kafka || $s == redis ]] || die "unknown service '$s' (kafka or redis)"
done

case $command in
    fetch) fetch_jars; say "Kafka jars ready in $(jars_dir | sed "s|^$repo/||")" ;;
    start | up)
        lock
        for s in "${services[@]}"; do "start_$s"; done
        exec 9>&-
        if [[ $command == up ]]; then for s in "${services[@]}"; do "wait_$s"; done; fi
        ;;
    wait) for s in "${services[@]}"; do "wait_$s"; done ;;
    stop)
        lock
        for s in "${services[@]}"; do
            if pid=$("${s}_pid"); then
                stop_service "$s" "$stack_dir/$s/$s.pid" "$pid"
            else
                say "$s not running"
            fi
        done
        ;;
    status)
        running=0
        for s in "${services[@]}"; do
            case $s in
                kafka) status_line kafka kafka_pid "$kafka_port" "$kdir/logs/server.log" && running=$((running + 1)) ;;
                redis) status_line redis redis_pid "$redis_port" "$rdir/redis.log" && running=$((running + 1)) ;;
            esac
        done
        ((running == ${#services[@]})) && exit 0
        ((running == 0)) && exit 3
        exit 1
        ;;
    env)
        prefix=METERING_
        [[ $profile == test ]] && prefix=METERING_TEST_
        echo "export ${prefix}KAFKA_BOOTSTRAP=127.0.0.1:$kafka_port"
        echo "export ${prefix}REDIS_URL=redis://127.0.0.1:$redis_port"
        ;;
    *) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
