#!/usr/bin/env bash
# Run a throw-away single-node Apache Kafka (KRaft, broker+controller) on
# 127.0.0.1 without Docker: the jars come from Maven Central via Maven and are
# cached, so only the first start needs the network.
#
#   ops/kafka/local-kafka.sh start     # fetch (once), format, start, wait until it answers
#   ops/kafka/local-kafka.sh stop      # TERM, wait, KILL; removes the PID file
#   ops/kafka/local-kafka.sh status    # exit 0 if running, 1 if not
#   ops/kafka/local-kafka.sh logs [-f] # last $VIGIL_KAFKA_LOG_LINES lines of the broker log
#   ops/kafka/local-kafka.sh bootstrap # print the bootstrap address (127.0.0.1:PORT)
#   ops/kafka/local-kafka.sh fetch     # only download the jars into the cache
#
# Environment (all optional):
#   VIGIL_KAFKA_CACHE            cache dir             [~/.cache/vigil/kafka-$KAFKA_VERSION]
#   VIGIL_KAFKA_PORT             client (PLAINTEXT) port                          [9092]
#   VIGIL_KAFKA_CONTROLLER_PORT  KRaft controller port                    [PORT + 1]
#   VIGIL_KAFKA_DATA             log/metadata dir               [$CACHE/data-$PORT]
#   VIGIL_KAFKA_RUN              pid/log/config dir              [$CACHE/run-$PORT]
#   VIGIL_KAFKA_KEEP_DATA=1      keep existing data instead of wiping + reformatting
#   VIGIL_KAFKA_TIMEOUT          seconds to wait for the broker to answer         [90]
#   VIGIL_KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL     [30]
#   VIGIL_KAFKA_HEAP             JVM heap flags                  [-Xms256m -Xmx1G]
#   VIGIL_KAFKA_JVM_OPTS         extra JVM flags
#   VIGIL_KAFKA_SASL_PORT        also listen with SASL_PLAINTEXT (SCRAM-SHA-512) on this
#                                port; the PLAINTEXT port stays (inter-broker + probe)  [off]
#   VIGIL_KAFKA_SSL_PORT         also listen with SASL_SSL (SCRAM-SHA-512 over TLS) on
#                                this port; a private test CA and the broker's certificate
#                                (SAN IP:127.0.0.1, DNS:localhost) are made with openssl in
#                                $RUN/tls; clients trust $RUN/tls/ca.pem            [off]
#   VIGIL_KAFKA_SASL_USER        SCRAM user created at format time                    [vigil]
#   VIGIL_KAFKA_SASL_PASSWORD    its password (required with VIGIL_KAFKA_SASL_PORT or
#                                VIGIL_KAFKA_SSL_PORT; only used by `format`, never
#                                written to server.properties)
#   VIGIL_KAFKA_EXTRA_PROPS      extra server.properties lines (appended, win over template)
#   VIGIL_KAFKA_EXTRA_PROPS_FILE file with extra server.properties lines (appended)
#   VIGIL_KAFKA_PARTITIONS_INTERNAL partitions of __consumer_offsets/__transaction_state [8]
#   VIGIL_KAFKA_LOG_LINES        lines shown by `logs` and on failure             [80]
#   VIGIL_PYTHON                 python used for the readiness probe
#                                [repo .venv/bin/python, else python3]
#   JAVA                         java binary                  [$JAVA_HOME/bin/java or java]
#   MVN                          maven binary                                    [mvn]
set -euo pipefail

# Keep in sync with docker-compose.yml (tests/ops/test_compose.py checks it).
KAFKA_VERSION="4.1.1"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

CACHE="${VIGIL_KAFKA_CACHE:-${HOME:-/root}/.cache/vigil/kafka-$KAFKA_VERSION}"
LIBS="$CACHE/libs"
PORT="${VIGIL_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${VIGIL_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
DATA="${VIGIL_KAFKA_DATA:-$CACHE/data-$PORT}"
RUN_DIR="${VIGIL_KAFKA_RUN:-$CACHE/run-$PORT}"
PID_FILE="$RUN_DIR/kafka.pid"
LOG_FILE="$RUN_DIR/kafka.log"
PROPS_FILE="$RUN_DIR/server.properties"
TIMEOUT="${VIGIL_KAFKA_TIMEOUT:-90}"
STOP_TIMEOUT="${VIGIL_KAFKA_STOP_TIMEOUT:-30}"
HEAP="${VIGIL_KAFKA_HEAP:--Xms256m -Xmx1G}"
INTERNAL_PARTITIONS="${VIGIL_KAFKA_PARTITIONS_INTERNAL:-8}"
LOG_LINES="${VIGIL_KAFKA_LOG_LINES:-80}"
BOOTSTRAP="127.0.0.1:$PORT"
SASL_PORT="${VIGIL_KAFKA_SASL_PORT:-}"
SASL_USER="${VIGIL_KAFKA_SASL_USER:-vigil}"
SSL_PORT="${VIGIL_KAFKA_SSL_PORT:-}"
TLS_DIR="$RUN_DIR/tls"

if [[ -n "${JAVA:-}" ]]; then :
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"
else JAVA="java"; fi
MVN="${MVN:-mvn}"

if [[ -n "${VIGIL_PYTHON:-}" ]]; then PYTHON="$VIGIL_PYTHON"
elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"
else PYTHON="$(command -v python3 || true)"; fi

log() { printf '[local-kafka] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

# --------------------------------------------------------------------------- jars
libs_ready() { [[ -f "$LIBS/.complete" ]] && [[ "$(cat "$LIBS/.complete")" == "$KAFKA_VERSION" ]]; }

fetch() {
    if libs_ready; then
        log "using cached Kafka $KAFKA_VERSION jars in $LIBS"
        return 0
    fi
    command -v "$MVN" >/dev/null 2>&1 || die "Maven ($MVN) not found; install it (apt-get install -y maven) or pre-fill $LIBS"
    mkdir -p "$CACHE"
    local tmp="$CACHE/libs.tmp.$$"
    rm -rf "$tmp"
    log "fetching Kafka $KAFKA_VERSION and its runtime dependencies from Maven Central ..."
    local t0=$SECONDS
    if ! "$MVN" -q -B -Dstyle.color=never -f "$SCRIPT_DIR/pom.xml" \
            dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$tmp" >"$CACHE/mvn.log" 2>&1; then
        tail -n 40 "$CACHE/mvn.log" >&2 || true
        rm -rf "$tmp"
        die "Maven could not fetch Kafka (full log: $CACHE/mvn.log)"
    fi
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"; }
    echo "$KAFKA_VERSION" >"$tmp/.complete"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - t0)) s"
}

classpath() { printf '%s/*' "$LIBS"; }

run_java_tool() { # main-class args...
    "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.properties" \
        -Dlog4j2.rootLevel=WARN \
        -cp "$(classpath)" "$@"
}

# --------------------------------------------------------------------------- process
read_pid() { if [[ -f "$PID_FILE" ]]; then tr -dc '0-9' <"$PID_FILE"; fi; }

# Is $1 alive and really our broker (guards against PID reuse)?
is_our_kafka() {
    local pid="$1"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 0   # no procfs: trust kill -0
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "kafka.Kafka $PROPS_FILE"
}

running_pid() {
    local pid
    pid="$(read_pid)"
    if is_our_kafka "$pid"; then echo "$pid"; fi
}

port_in_use() { # port -> 0 if something accepts connections on 127.0.0.1:port
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --------------------------------------------------------------------------- readiness
have_confluent_kafka() {
    [[ -n "$PYTHON" ]] && "$PYTHON" -c 'import confluent_kafka' 2>/dev/null
}

# One metadata request; 0 if the broker answered with at least one broker.
probe() {
    if [[ "${_PROBE_KIND:-}" == "python" ]]; then
        "$PYTHON" - "$BOOTSTRAP" <<'PY' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "socket.timeout.ms": 3000})
md = admin.list_topics(timeout=3)
sys.exit(0 if md.brokers else 1)
PY
    else
        run_java_tool org.apache.kafka.tools.TopicCommand \
            --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1
    fi
}

choose_probe() {
    if [[ -n "${_PROBE_KIND:-}" ]]; then return; fi
    if have_confluent_kafka; then _PROBE_KIND=python; else _PROBE_KIND=java; fi
    log "readiness probe: $([[ $_PROBE_KIND == python ]] && echo "confluent_kafka via $PYTHON" || echo "java TopicCommand --list")"
}

show_log_tail() {
    if [[ -f "$LOG_FILE" ]]; then
        log "last $LOG_LINES lines of $LOG_FILE:"
        tail -n "$LOG_LINES" "$LOG_FILE" >&2 || true
    fi
}

wait_ready() { # pid [kill-on-timeout]
    local pid="$1" kill_on_timeout="${2:-0}" deadline=$((SECONDS + TIMEOUT))
    choose_probe
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail
            rm -f "$PID_FILE"
            die "Kafka process $pid died during startup"
        fi
        if probe; then return 0; fi
        if ((SECONDS >= deadline)); then
            show_log_tail
            if [[ "$kill_on_timeout" == "1" ]]; then
                log "Kafka did not answer within ${TIMEOUT}s; stopping the half-started broker"
                cmd_stop
                die "Kafka did not answer a metadata request on $BOOTSTRAP within ${TIMEOUT}s (VIGIL_KAFKA_TIMEOUT)"
            fi
            die "Kafka did not answer a metadata request on $BOOTSTRAP within ${TIMEOUT}s (pid $pid still running; '$0 stop' to kill it)"
        fi
        sleep 1
    done
}

# --------------------------------------------------------------------------- config + format
render_config() {
    mkdir -p "$RUN_DIR"
    sed -e "s#@PORT@#$PORT#g" \
        -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" \
        -e "s#@LOG_DIRS@#$DATA#g" \
        -e "s#@OFFSETS_PARTITIONS@#$INTERNAL_PARTITIONS#g" \
        -e "s#@TXN_PARTITIONS@#$INTERNAL_PARTITIONS#g" \
        "$SCRIPT_DIR/server.properties.in" >"$PROPS_FILE.tmp"
    {
        if [[ -n "$SASL_PORT" || -n "$SSL_PORT" ]]; then
            # The broker side of SCRAM needs no secret: credentials live in the cluster
            # metadata (added by `format --add-scram`), so no password in this file.
            local listeners="PLAINTEXT://127.0.0.1:$PORT" map="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
            if [[ -n "$SASL_PORT" ]]; then
                listeners+=",SASL_PLAINTEXT://127.0.0.1:$SASL_PORT"; map+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
            fi
            if [[ -n "$SSL_PORT" ]]; then
                listeners+=",SASL_SSL://127.0.0.1:$SSL_PORT"; map+=",SASL_SSL:SASL_SSL"
            fi
            cat <<EOF

# --- SCRAM-SHA-512 listeners (VIGIL_KAFKA_SASL_PORT: SASL_PLAINTEXT, VIGIL_KAFKA_SSL_PORT: SASL_SSL)
listeners=$listeners,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=$listeners
listener.security.protocol.map=$map
sasl.enabled.mechanisms=SCRAM-SHA-512
EOF
            local name
            for name in sasl_plaintext sasl_ssl; do
                cat <<EOF
listener.name.$name.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.$name.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
            done
            if [[ -n "$SSL_PORT" ]]; then
                # PEM keystore (KIP-651): the unencrypted PKCS#8 key and its chain in one file
                cat <<EOF
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/broker-keystore.pem
EOF
            fi
        fi
        if [[ -n "${VIGIL_KAFKA_EXTRA_PROPS:-}" ]]; then
            printf '\n# --- from VIGIL_KAFKA_EXTRA_PROPS\n%s\n' "$VIGIL_KAFKA_EXTRA_PROPS"
        fi
        if [[ -n "${VIGIL_KAFKA_EXTRA_PROPS_FILE:-}" ]]; then
            printf '\n# --- from %s\n' "$VIGIL_KAFKA_EXTRA_PROPS_FILE"
            cat "$VIGIL_KAFKA_EXTRA_PROPS_FILE"
        fi
    } >>"$PROPS_FILE.tmp"
    mv "$PROPS_FILE.tmp" "$PROPS_FILE"
}

make_tls() { # a private CA and the broker's certificate for 127.0.0.1, once per run dir
    [[ -f "$TLS_DIR/broker-keystore.pem" && -f "$TLS_DIR/ca.pem" ]] && return 0
    command -v openssl >/dev/null 2>&1 || die "openssl not found (needed for VIGIL_KAFKA_SSL_PORT)"
    mkdir -p "$TLS_DIR"
    chmod 700 "$TLS_DIR"
    log "making a test CA and a broker certificate in $TLS_DIR"
    (
        cd "$TLS_DIR"
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=vigil-local-test-ca" \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout broker.key -out broker.csr
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
            "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >broker.ext
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
            -extfile broker.ext -out broker.crt
        cat broker.key broker.crt ca.pem >broker-keystore.pem
        rm -f broker.csr ca.srl
    ) >"$RUN_DIR/tls.log" 2>&1 || { cat "$RUN_DIR/tls.log" >&2; die "making the test certificates failed"; }
}

new_cluster_id() { # 16 random bytes, URL-safe base64 without padding (Kafka Uuid form)
    # An id starting with '-' is taken for an option by kafka-storage's argument parser
    # ("argument --cluster-id/-t: expected one argument"), 1 start in 64: draw again.
    local cid="-"
    while [[ "$cid" == -* ]]; do
        cid="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    echo "$cid"
}

format_storage() {
    if [[ "${VIGIL_KAFKA_KEEP_DATA:-0}" == "1" && -f "$DATA/meta.properties" ]]; then
        log "keeping existing data in $DATA (VIGIL_KAFKA_KEEP_DATA=1)"
        return 0
    fi
    case "$DATA" in ""|/|"$HOME"|"$REPO_ROOT") die "refusing to wipe data dir '$DATA'";; esac
    rm -rf "$DATA"
    mkdir -p "$DATA"
    local cid
    cid="$(new_cluster_id)"
    local scram=()
    if [[ -n "$SASL_PORT" || -n "$SSL_PORT" ]]; then
        # The credential goes into the __cluster_metadata log at format time (KRaft has
        # no ZooKeeper to hold it). The value is visible in this JVM's command line for
        # the second the tool runs: a dev-box broker, not a production one.
        scram=(--add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$VIGIL_KAFKA_SASL_PASSWORD]")
        log "adding SCRAM-SHA-512 user '$SASL_USER'"
    fi
    log "formatting KRaft storage in $DATA (cluster id $cid)"
    if ! run_java_tool kafka.tools.StorageTool format --standalone \
            --config "$PROPS_FILE" --cluster-id "$cid" "${scram[@]}" >"$RUN_DIR/format.log" 2>&1; then
        cat "$RUN_DIR/format.log" >&2
        die "kafka-storage format failed"
    fi
}

# --------------------------------------------------------------------------- commands
cmd_start() {
    mkdir -p "$RUN_DIR"
    local pid
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
        log "Kafka already running (pid $pid); checking it answers on $BOOTSTRAP"
        wait_ready "$pid"
        log "Kafka is up on $BOOTSTRAP (pid $pid)"
        return 0
    fi
    rm -f "$PID_FILE"
    if port_in_use "$PORT"; then die "port $PORT on 127.0.0.1 is already in use by another process (set VIGIL_KAFKA_PORT)"; fi
    if [[ -n "$SASL_PORT" ]]; then
        [[ "$SASL_PORT" =~ ^[0-9]+$ ]] || die "VIGIL_KAFKA_SASL_PORT must be a port number, not '$SASL_PORT'"
        [[ "$SASL_PORT" != "$PORT" && "$SASL_PORT" != "$CONTROLLER_PORT" ]] || die "VIGIL_KAFKA_SASL_PORT must differ from the client and controller ports"
        [[ -n "${VIGIL_KAFKA_SASL_PASSWORD:-}" ]] || die "VIGIL_KAFKA_SASL_PORT is set but VIGIL_KAFKA_SASL_PASSWORD is empty"
        case "$SASL_USER$VIGIL_KAFKA_SASL_PASSWORD" in
            *[],=\"[]*) die "VIGIL_KAFKA_SASL_USER/PASSWORD must not contain , = [ ] or a double quote";;
        esac
        if port_in_use "$SASL_PORT"; then die "SASL port $SASL_PORT on 127.0.0.1 is already in use (set VIGIL_KAFKA_SASL_PORT)"; fi
    fi
    if [[ -n "$SSL_PORT" ]]; then
        [[ "$SSL_PORT" =~ ^[0-9]+$ ]] || die "VIGIL_KAFKA_SSL_PORT must be a port number, not '$SSL_PORT'"
        [[ "$SSL_PORT" != "$PORT" && "$SSL_PORT" != "$CONTROLLER_PORT" && "$SSL_PORT" != "$SASL_PORT" ]] || die "VIGIL_KAFKA_SSL_PORT must differ from the other ports"
        [[ -n "${VIGIL_KAFKA_SASL_PASSWORD:-}" ]] || die "VIGIL_KAFKA_SSL_PORT is set but VIGIL_KAFKA_SASL_PASSWORD is empty"
        case "$SASL_USER$VIGIL_KAFKA_SASL_PASSWORD" in
            *[],=\"[]*) die "VIGIL_KAFKA_SASL_USER/PASSWORD must not contain , = [ ] or a double quote";;
        esac
        if port_in_use "$SSL_PORT"; then die "TLS port $SSL_PORT on 127.0.0.1 is already in use (set VIGIL_KAFKA_SSL_PORT)"; fi
    fi
    if port_in_use "$CONTROLLER_PORT"; then die "controller port $CONTROLLER_PORT on 127.0.0.1 is already in use (set VIGIL_KAFKA_CONTROLLER_PORT)"; fi
    command -v "$JAVA" >/dev/null 2>&1 || die "java not found (need Java 17+)"

    local t0=$SECONDS
    fetch
    [[ -z "$SSL_PORT" ]] || make_tls
    render_config
    format_storage

    # shellcheck disable=SC2206
    local heap=($HEAP) extra=(${VIGIL_KAFKA_JVM_OPTS:-})
    log "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (controller 127.0.0.1:$CONTROLLER_PORT), log: $LOG_FILE"
    : >"$LOG_FILE"
    # setsid: own session, so Ctrl-C in the calling shell / its process group
    # does not take the broker down; `stop` is the way to end it.
    nohup setsid "$JAVA" "${heap[@]}" \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.properties" \
        -Dkafka.logs.dir="$RUN_DIR" \
        "${extra[@]}" \
        -cp "$(classpath)" kafka.Kafka "$PROPS_FILE" \
        </dev/null >>"$LOG_FILE" 2>&1 &
    pid=$!
    echo "$pid" >"$PID_FILE"
    wait_ready "$pid" 1
    log "Kafka is up on $BOOTSTRAP (pid $pid) after $((SECONDS - t0)) s"
    if [[ -n "$SASL_PORT" ]]; then
        log "SASL_PLAINTEXT (SCRAM-SHA-512, user '$SASL_USER') on 127.0.0.1:$SASL_PORT"
    fi
    if [[ -n "$SSL_PORT" ]]; then
        log "SASL_SSL (SCRAM-SHA-512 over TLS, user '$SASL_USER') on 127.0.0.1:$SSL_PORT; CA: $TLS_DIR/ca.pem"
    fi
}

cmd_stop() {
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        rm -f "$PID_FILE"
        log "Kafka is not running"
        return 0
    fi
    log "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
        log "still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
        echo "running (pid $pid) on $BOOTSTRAP"
        return 0
    fi
    echo "not running"
    return 1
}

cmd_logs() {
    [[ -f "$LOG_FILE" ]] || die "no log file at $LOG_FILE"
    if [[ "${1:-}" == "-f" ]]; then exec tail -n "$LOG_LINES" -F "$LOG_FILE"; fi
    tail -n "$LOG_LINES" "$LOG_FILE"
}

main() {
    local cmd="${1:-}"
    shift || true
    case "$cmd" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        restart) cmd_stop; cmd_start ;;
        status) cmd_status ;;
        logs) cmd_logs "$@" ;;
        fetch) fetch ;;
        bootstrap) echo "$BOOTSTRAP" ;;
        -h|--help|help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
