#!/usr/bin/env bash
# Apicurio Registry 3 for pedidos's tests: a Schema Registry with a Confluent-compatible API
# (/apis/ccompat/v7), run from its Maven Central distribution (the `all` tar.gz, a Quarkus app)
# with in-memory storage. No Docker.
#
#   scripts/apicurio.sh install
#       Fetches apicurio-registry-app $APICURIO_VERSION (Maven checks its checksum) and unpacks it
#       into $PEDIDOS_APICURIO_HOME (default ${XDG_CACHE_HOME:-$HOME/.cache}/pedidos/apicurio-<version>),
#       checks for a Java 21+ runtime, and prints that directory as the last line of stdout.
#       Idempotent; a second run takes well under a second.
#
#   scripts/apicurio.sh run --port P
#       Runs the registry in the foreground on 127.0.0.1:P (exec: the caller's pid is the JVM's),
#       in-memory storage, its management interface off. Ready when its log says "Listening on".
#
#   scripts/apicurio.sh java
#       Prints the Java 21+ it runs with: $PEDIDOS_APICURIO_JAVA, else `java` on PATH when it is 21
#       or newer, else the newest under /usr/lib/jvm.
set -euo pipefail

readonly APICURIO_VERSION=3.3.3
readonly ARTIFACT=io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all
readonly DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
readonly HOME_DIR="${PEDIDOS_APICURIO_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/pedidos/apicurio-$APICURIO_VERSION}"
MVN=${MVN:-mvn}

log() { printf 'apicurio.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

java_major() {
  "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}

find_java() {
  local candidate major best="" best_major=0
  if [[ -n ${PEDIDOS_APICURIO_JAVA:-} ]]; then
    major=$(java_major "$PEDIDOS_APICURIO_JAVA" || true)
    [[ -n $major && $major -ge 21 ]] ||
      die "PEDIDOS_APICURIO_JAVA=$PEDIDOS_APICURIO_JAVA is not a Java 21 or newer"
    printf '%s\n' "$PEDIDOS_APICURIO_JAVA"
    return
  fi
  if command -v java >/dev/null 2>&1; then
    major=$(java_major java || true)
    if [[ -n $major && $major -ge 21 ]]; then
      command -v java
      return
    fi
  fi
  for candidate in /usr/lib/jvm/*/bin/java; do
    [[ -x $candidate ]] || continue
    major=$(java_major "$candidate" || true)
    if [[ -n $major && $major -ge 21 && $major -gt $best_major ]]; then
      best=$candidate best_major=$major
    fi
  done
  [[ -n $best ]] ||
    die "Apicurio Registry $APICURIO_VERSION needs Java 21 or newer: none on PATH or under /usr/lib/jvm (install a Temurin 21+ JDK, or Debian's openjdk-21-jre-headless where available, or set PEDIDOS_APICURIO_JAVA)"
  printf '%s\n' "$best"
}

installed() { [[ -f $HOME_DIR/installed && -f $HOME_DIR/app/quarkus-run.jar ]]; }

install() {
  find_java >/dev/null
  if installed; then
    printf '%s\n' "$HOME_DIR"
    return
  fi
  command -v "$MVN" >/dev/null 2>&1 ||
    die "no mvn on PATH: fetching Apicurio Registry from Maven Central needs Maven 3 (Debian: apt-get install maven)"
  log "fetching Apicurio Registry $APICURIO_VERSION (about 160 MB) from Maven Central into $HOME_DIR"
  mkdir -p "$HOME_DIR"
  "$MVN" -B -q "$DEPENDENCY_PLUGIN:copy" -Dartifact="$ARTIFACT" -DoutputDirectory="$HOME_DIR" \
    -Dmdep.stripVersion=true >&2 ||
    die "Maven could not fetch $ARTIFACT (is Maven Central reachable?)"
  rm -rf "$HOME_DIR/app"
  mkdir -p "$HOME_DIR/app"
  tar -xzf "$HOME_DIR/apicurio-registry-app-all.tar.gz" -C "$HOME_DIR/app" ||
    die "cannot unpack $HOME_DIR/apicurio-registry-app-all.tar.gz"
  rm -f "$HOME_DIR/apicurio-registry-app-all.tar.gz"
  [[ -f $HOME_DIR/app/quarkus-run.jar ]] || die "the distribution has no quarkus-run.jar"
  printf '%s\n' "$APICURIO_VERSION" >"$HOME_DIR/installed"
  log "installed Apicurio Registry $APICURIO_VERSION"
  printf '%s\n' "$HOME_DIR"
}

run() {
  local port=""
  while (($#)); do
    case $1 in
      --port)
        port=$2
        shift 2
        ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ -n $port ]] || die "run needs --port"
  installed || die "not installed: run scripts/apicurio.sh install first"
  local java
  java=$(find_java)
  # In-memory storage (H2) is the distribution's default; the management interface (metrics,
  # health, built in) would listen on 0.0.0.0:9000, one port for every instance: loopback, any
  # free port.
  exec "$java" -Xms64m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port=0 \
    -jar "$HOME_DIR/app/quarkus-run.jar"
}

case ${1:-} in
  install) install ;;
  run)
    shift
    run "$@"
    ;;
  java) find_java ;;
  *) die "usage: scripts/apicurio.sh install | run --port P | java" ;;
esac
