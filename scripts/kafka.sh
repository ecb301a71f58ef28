#!/usr/bin/env bash
# Apache Kafka (KRaft) for pedidos: the one launcher the local run, the benchmark and the test kit
# use. The broker is assembled from Maven Central jars (no tarball, no Docker) into a cache outside
# the clone, and run straight with `java`.
#
#   scripts/kafka.sh install
#       Fetches Kafka $KAFKA_VERSION and a log4j2 backend into $PEDIDOS_KAFKA_HOME (default
#       ${XDG_CACHE_HOME:-$HOME/.cache}/pedidos/kafka-<version>) and prints that directory as the
#       last line of stdout. Idempotent; a second run takes well under a second.
#
#   scripts/kafka.sh run --dir DIR [options]
#       Writes DIR/server.properties, formats DIR/data on first use and runs one KRaft node in the
#       foreground (exec: the caller's pid is the JVM's). SIGTERM shuts it down cleanly; data is
#       kept in DIR across restarts. Ready when its log says "Kafka Server started".
#       --node-id N           node id (1)
#       --port P              PLAINTEXT listener on 127.0.0.1 (9092)
#       --controller-port C   CONTROLLER listener on 127.0.0.1 (9093)
#       --voters LIST         the controller quorum, "1@127.0.0.1:9093,2@..." (this node alone)
#       --cluster-id ID       the cluster id to format with; the same on every node of a cluster
#                             (default: kept in DIR/cluster-id, generated the first time)
#       --sasl-ssl-port S     also a SASL_SSL listener (mechanism PLAIN) on 127.0.0.1:S
#       --pem FILE            its PEM key + certificate chain (needed with --sasl-ssl-port)
#       --users LIST          its PLAIN users, "alice:secret,bob:other" (needed with --sasl-ssl-port)
#       --heap SIZE           JVM heap (512m)
#       --property K=V        any other broker property (last wins; may be repeated)
#
#   scripts/kafka.sh start --dir DIR [run options]
#       `run` in the background, its output in DIR/kafka.log; returns once the node is ready
#       (or fails with the log's last lines) and prints its pid as the last line of stdout.
#       PEDIDOS_KAFKA_START_TIMEOUT (seconds, default 120) bounds the wait.
#
#   scripts/kafka.sh stop PID
#       SIGTERM and a wait for the clean shutdown; SIGKILL after 60 s.
#
#   scripts/kafka.sh cluster-id
#       Prints a new cluster id.
#
# Environment: PEDIDOS_KAFKA_HOME (where the jars go), JAVA (the java binary), MVN (mvn),
# PEDIDOS_KAFKA_JVM_OPTS (extra options for the broker's JVM, split on whitespace, after the
# defaults: a -javaagent, say; not given to the formatting JVM).
set -euo pipefail

readonly KAFKA_VERSION=4.1.1
readonly LOG4J_VERSION=2.24.3
readonly SLF4J_VERSION=2.0.17
readonly DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
readonly HOME_DIR="${PEDIDOS_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/pedidos/kafka-$KAFKA_VERSION}"
readonly SCRIPTS=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
JAVA=${JAVA:-java}
MVN=${MVN:-mvn}

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

require_java() {
  command -v "$JAVA" >/dev/null 2>&1 ||
    die "no java on PATH: Apache Kafka $KAFKA_VERSION needs Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
  local version major
  version=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
  major=${version%%.*}
  [[ $major =~ ^[0-9]+$ && $major -ge 17 ]] ||
    die "java is version ${version:-unknown}; Apache Kafka $KAFKA_VERSION needs Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
}

# The install is complete when the marker exists: it is written last.
installed() { [[ -f $HOME_DIR/installed ]]; }

install() {
  if installed; then
    printf '%s\n' "$HOME_DIR"
    return
  fi
  require_java
  command -v "$MVN" >/dev/null 2>&1 ||
    die "no mvn on PATH: installing Apache Kafka from Maven Central needs Maven 3 (Debian: apt-get install maven)"
  log "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $HOME_DIR"
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/pedidos-kafka-install.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>pedidos</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$HOME_DIR/lib"
  mkdir -p "$HOME_DIR/lib"
  "$MVN" -B -q -f "$work/pom.xml" "$DEPENDENCY_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$HOME_DIR/lib" >&2 ||
    die "Maven could not fetch Apache Kafka $KAFKA_VERSION (is Maven Central reachable?)"
  # One version of each logging jar, or SLF4J picks one at random.
  local jar
  for jar in slf4j-api log4j-api log4j-core log4j-slf4j2-impl; do
    local count
    count=$(find "$HOME_DIR/lib" -name "$jar-[0-9]*.jar" | wc -l)
    [[ $count == 1 ]] || die "$HOME_DIR/lib holds $count versions of $jar"
  done
  [[ -n $(find "$HOME_DIR/lib" -name "kafka_2.13-$KAFKA_VERSION.jar") ]] ||
    die "Maven did not bring kafka_2.13-$KAFKA_VERSION.jar"
  printf '%s\n' "$KAFKA_VERSION" >"$HOME_DIR/installed"
  log "installed Apache Kafka $KAFKA_VERSION ($(find "$HOME_DIR/lib" -name '*.jar' | wc -l) jars)"
  printf '%s\n' "$HOME_DIR"
}

# A random UUID as Kafka writes it: 22 characters of URL-safe base64, no padding; never starting
# with "-", which the storage tool would take for an option.
cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ $id == -* ]] || break
  done
  printf '%s\n' "$id"
}

java_cmd() {
  local heap=$1
  # Small heap and pause target: a test or laptop broker, not a production one.
  printf '%s\n' "$JAVA" "-Xms$heap" "-Xmx$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$SCRIPTS/kafka-log4j2.properties" -cp "$HOME_DIR/lib/*"
}

run() {
  local dir="" node_id=1 port=9092 controller_port=9093 voters="" cluster="" heap=512m
  local sasl_port="" pem="" users=""
  local -a extra=()
  while (($#)); do
    case $1 in
      --dir) dir=$2 ;;
      --node-id) node_id=$2 ;;
      --port) port=$2 ;;
      --controller-port) controller_port=$2 ;;
      --voters) voters=$2 ;;
      --cluster-id) cluster=$2 ;;
      --sasl-ssl-port) sasl_port=$2 ;;
      --pem) pem=$2 ;;
      --users) users=$2 ;;
      --heap) heap=$2 ;;
      --property) extra+=("$2") ;;
      *) die "unknown option $1 (see the top of $0)" ;;
    esac
    shift 2
  done
  [[ -n $dir ]] || die "run needs --dir DIR"
  installed || die "Apache Kafka is not installed: run scripts/kafka.sh install"
  require_java
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ -n $voters ]] || voters="$node_id@127.0.0.1:$controller_port"
  local nodes replicas min_isr
  nodes=$(tr ',' '\n' <<<"$voters" | grep -c .)
  # Every internal topic as replicated as the cluster allows, up to Confluent Cloud's 3 / 2.
  replicas=$((nodes < 3 ? nodes : 3))
  min_isr=$((replicas > 1 ? 2 : 1))

  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port"
  local advertised="PLAINTEXT://127.0.0.1:$port"
  if [[ -n $sasl_port ]]; then
    [[ -f $pem ]] || die "--sasl-ssl-port needs --pem FILE (a key and certificate chain in PEM)"
    [[ -n $users ]] || die "--sasl-ssl-port needs --users NAME:PASSWORD,..."
    listeners+=",SASL_SSL://127.0.0.1:$sasl_port"
    advertised+=",SASL_SSL://127.0.0.1:$sasl_port"
  fi

  {
    cat <<EOF
# Written by scripts/kafka.sh; rewritten at every start.
process.roles=broker,controller
node.id=$node_id
controller.quorum.voters=$voters
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$dir/data
num.partitions=3
default.replication.factor=$replicas
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replicas
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=4
EOF
    if [[ -n $sasl_port ]]; then
      local jaas='org.apache.kafka.common.security.plain.PlainLoginModule required' entry
      IFS=',' read -ra entries <<<"$users"
      for entry in "${entries[@]}"; do
        jaas+=" user_${entry%%:*}=\"${entry#*:}\""
      done
      printf '%s\n' \
        "sasl.enabled.mechanisms=PLAIN" \
        "listener.name.sasl_ssl.plain.sasl.jaas.config=$jaas;" \
        "ssl.keystore.type=PEM" \
        "ssl.keystore.location=$(cd "$(dirname "$pem")" && pwd)/$(basename "$pem")"
    fi
    local property
    for property in "${extra[@]}"; do printf '%s\n' "$property"; done
  } >"$dir/server.properties"
  chmod 600 "$dir/server.properties"

  local -a java
  mapfile -t java < <(java_cmd "$heap")
  if [[ ! -f $dir/data/meta.properties ]]; then
    if [[ -z $cluster ]]; then
      [[ -f $dir/cluster-id ]] || cluster_id >"$dir/cluster-id"
      cluster=$(<"$dir/cluster-id")
    fi
    "${java[@]}" kafka.tools.StorageTool format -t "$cluster" -c "$dir/server.properties" \
      --ignore-formatted >&2 || die "formatting $dir/data failed"
  fi
  local -a jvm_opts=()
  read -ra jvm_opts <<<"${PEDIDOS_KAFKA_JVM_OPTS:-}"
  exec "${java[@]}" "${jvm_opts[@]}" kafka.Kafka "$dir/server.properties"
}

# The value of option $1 in the remaining arguments.
option() {
  local name=$1
  shift
  while (($#)); do
    [[ $1 == "$name" ]] && {
      printf '%s\n' "$2"
      return
    }
    shift
  done
}

start() {
  local dir
  dir=$(option --dir "$@")
  [[ -n $dir ]] || die "start needs --dir DIR"
  mkdir -p "$dir"
  local log="$dir/kafka.log" timeout=${PEDIDOS_KAFKA_START_TIMEOUT:-120}
  local from=0
  touch "$log"
  from=$(wc -c <"$log")
  # setsid: the node outlives this script and ignores the caller's terminal signals; callers
  # stop it with `stop PID`.
  setsid "$0" run "$@" >>"$log" 2>&1 </dev/null &
  local pid=$! i
  for ((i = 0; i < timeout * 10; i++)); do
    if tail -c +$((from + 1)) "$log" | grep -q "Kafka Server started"; then
      printf '%s\n' "$pid"
      return
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$log" >&2
      die "the Kafka node exited at start-up (its log: $log)"
    fi
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  tail -n 30 "$log" >&2
  die "the Kafka node did not start within $timeout s (its log: $log)"
}

stop() {
  local pid=${1:-} i
  [[ -n $pid ]] || die "stop needs the PID that start printed"
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "the Kafka node (pid $pid) ignored SIGTERM for 60 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

case ${1:-} in
  install) install ;;
  run)
    shift
    run "$@"
    ;;
  start)
    shift
    start "$@"
    ;;
  stop) stop "${2:-}" ;;
  cluster-id) cluster_id ;;
  *) die "usage: scripts/kafka.sh install | run --dir DIR [options] | start --dir DIR [options] | stop PID | cluster-id (see the top of $0)" ;;
esac
