#!/usr/bin/env bash
# Local Kafka-compatible broker reachable ONLY through TLS (+ SASL PLAIN) on 127.0.0.1:PORT,
# so tests can exercise the production (Confluent Cloud) client path:
#   security.protocol=SASL_SSL  sasl.mechanisms=PLAIN  ssl.ca.location=DIR/ca.pem
#
#   scripts/sasl-ssl-broker.sh start  DIR PORT [--check-credentials] [--user U] [--password P]
#                                                # prints "ca=DIR/ca.pem" on stdout when ready
#   scripts/sasl-ssl-broker.sh stop   DIR        # idempotent
#   scripts/sasl-ssl-broker.sh status DIR        # exit 0 if everything is running
#
# By default any SASL PLAIN user/password is accepted. With --check-credentials (implied by
# --user or --password) scripts/kafka-sasl-check-proxy.py sits between stunnel and the broker
# and rejects every other user/password with SASL_AUTHENTICATION_FAILED (error 58), as Kafka and
# Confluent Cloud do. Defaults: user "pedidos", password "pedidos-secret"; the password can also
# come from the environment variable SASL_CHECK_PASSWORD (keeps it out of `ps`).
#
# Layout (see scripts/sasl-ssl-broker.md):
#   noida-db (PLAINTEXT only, accepts any SASL user/password) runs in its own network namespace
#   on a private 127.0.0.1:PORT; socat inside that namespace bridges DIR/broker.sock -> it;
#   stunnel on the host's 127.0.0.1:PORT terminates TLS and connects to DIR/broker.sock (or,
#   checking credentials, to DIR/auth.sock: the proxy, in the namespace, forwarding to noida-db).
#   The broker advertises 127.0.0.1:PORT, which is exactly where the TLS front listens.
#
# Environment:
#   NOIDA_DB_BIN       path of the noida-db binary (default: found via the noida_db Python package)
#   STARTUP_TIMEOUT    seconds to wait for TLS + broker to answer (default 15)
set -euo pipefail

PROG=$(basename "$0")
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  cat >&2 <<EOF
usage: $PROG start DIR PORT [--check-credentials] [--user U] [--password P]
                              start the TLS-only broker; prints ca=DIR/ca.pem when ready.
                              --check-credentials (implied by --user/--password): reject any
                              other SASL PLAIN user/password (defaults: pedidos, pedidos-secret;
                              the password may also come from \$SASL_CHECK_PASSWORD)
       $PROG stop DIR         stop everything started for DIR (idempotent)
       $PROG status DIR       exit 0 if broker, bridge and TLS front are all running
EOF
  exit 2
}

abspath() { mkdir -p "$1" && (cd "$1" && pwd -P); }

SCRIPT_DIR=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
PROXY="$SCRIPT_DIR/kafka-sasl-check-proxy.py"
DEFAULT_USER=pedidos
DEFAULT_PASSWORD=pedidos-secret

need() { # need CMD APT_PACKAGE
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install the Debian/Ubuntu package '$2' (apt-get install -y $2)"
}

find_noida() {
  if [[ -n "${NOIDA_DB_BIN:-}" ]]; then
    [[ -x "$NOIDA_DB_BIN" ]] || die "NOIDA_DB_BIN=$NOIDA_DB_BIN is not executable"
    printf '%s\n' "$NOIDA_DB_BIN"; return
  fi
  local p=""
  for py in python3 python; do
    command -v "$py" >/dev/null 2>&1 || continue
    p=$("$py" -c 'import noida_db,os;print(os.path.join(os.path.dirname(noida_db.__file__),"noida-db"))' 2>/dev/null) || p=""
    [[ -n "$p" && -x "$p" ]] && { printf '%s\n' "$p"; return; }
  done
  p=$(command -v noida-db 2>/dev/null) || true
  [[ -n "$p" ]] && { printf '%s\n' "$p"; return; }
  die "noida-db not found: pip install noida-db==0.2.3 (or set NOIDA_DB_BIN)"
}

# pid_alive PIDFILE DIR: the pid in PIDFILE is running and its command line mentions DIR
# (guards against killing an unrelated process that reused the pid).
pid_alive() {
  local f=$1 dir=$2 pid
  [[ -s "$f" ]] || return 1
  pid=$(tr -dc '0-9' <"$f")
  [[ -n "$pid" && -r /proc/$pid/cmdline ]] || return 1
  # one argument equal to DIR or containing DIR/ (so /tmp/x does not match /tmp/x2)
  tr '\0' '\n' </proc/"$pid"/cmdline | awk -v d="$dir" '$0 == d || index($0, d "/") { f = 1 } END { exit !f }'
}

show_logs() {
  local dir=$1 f
  for f in "$dir"/logs/namespace.log "$dir"/logs/stunnel.log "$dir"/logs/probe.log; do
    [[ -s "$f" ]] || continue
    log "----- last lines of $f -----"
    tail -n 25 "$f" >&2
  done
}

# ---------------------------------------------------------------------------------------------
gen_certs() {
  local dir=$1 l="$1/logs/certs.log"
  if [[ -s $dir/ca.pem && -s $dir/server.pem && -s $dir/server.key && -s $dir/wrong-ca.pem ]] &&
     openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null 2>&1 &&
     openssl x509 -in "$dir/server.pem" -noout -checkend 3600 >/dev/null 2>&1; then
    return 0  # keep existing certificates, so a restarted broker keeps the same CA
  fi
  : >"$l"
  (
    set -e
    umask 077
    # Throwaway CA
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj "/CN=pedidos test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    # Server certificate for localhost / 127.0.0.1 signed by it
    openssl req -new -newkey rsa:2048 -nodes -sha256 \
      -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=localhost"
    cat >"$dir/server.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EOF
    openssl x509 -req -sha256 -days 30 -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
      -CAcreateserial -out "$dir/server.pem" -extfile "$dir/server.ext"
    # A second, unrelated CA for negative tests (its key is useless, drop it)
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 \
      -keyout "$dir/wrong-ca.key" -out "$dir/wrong-ca.pem" -subj "/CN=pedidos unrelated CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    rm -f "$dir/wrong-ca.key" "$dir/server.csr"
    chmod 644 "$dir/ca.pem" "$dir/wrong-ca.pem" "$dir/server.pem"
    openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem"
  ) >>"$l" 2>&1 || { tail -n 25 "$l" >&2; die "certificate generation failed (see $l)"; }
}

# Kafka ApiVersions v0 request (api_key 18, version 0, correlation id 0x5eda, client id "probe")
# sent through TLS (verifying the server against ca.pem); succeeds if a response with the same
# correlation id comes back, i.e. stunnel -> unix socket -> socat -> noida-db all work.
probe_broker() {
  local dir=$1 port=$2 out
  out=$(printf '\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x5e\xda\x00\x05probe' |
         timeout 3 socat -t 2 -T 3 - "OPENSSL:127.0.0.1:$port,cafile=$dir/ca.pem,verify=1,commonname=localhost" 2>/dev/null |
         head -c 8 | od -An -tx1 | tr -d ' \n') || true
  # 4-byte length, then correlation id 00 00 5e da
  [[ ${#out} -eq 16 && ${out:8:8} == "00005eda" ]]
}

tls_verify_ok() {
  local dir=$1 port=$2
  openssl s_client -connect "127.0.0.1:$port" -servername localhost -CAfile "$dir/ca.pem" \
    -verify_return_error -verify_hostname localhost </dev/null 2>&1 | grep -q 'Verify return code: 0 (ok)'
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
cmd_stop() {
  local dir=$1 f pid pids=() pgid
  [[ -d "$dir" ]] || return 0
  dir=$(cd "$dir" && pwd -P)
  # stunnel (daemonised, pid file written by stunnel itself)
  if pid_alive "$dir/stunnel.pid" "$dir"; then pids+=("$(tr -dc '0-9' <"$dir/stunnel.pid")"); fi
  # the namespace: its session leader was started with setsid, so its pid is also the process
  # group of noida-db, socat and socat's per-connection children. Kill the group by id.
  if pid_alive "$dir/namespace.pid" "$dir"; then
    pgid=$(tr -dc '0-9' <"$dir/namespace.pid")
    kill -TERM -- "-$pgid" 2>/dev/null || true
    pids+=("$pgid")
  fi
  for f in noida-db.pid socat.pid proxy.pid; do
    if pid_alive "$dir/$f" "$dir"; then pids+=("$(tr -dc '0-9' <"$dir/$f")"); fi
  done
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local i
  for ((i = 0; i < 50; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if [[ -n "${pgid:-}" ]]; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
  rm -f "$dir/stunnel.pid" "$dir/namespace.pid" "$dir/noida-db.pid" "$dir/socat.pid" "$dir/proxy.pid" \
    "$dir/broker.sock" "$dir/auth.sock"
}

cmd_status() {
  local dir=$1 ok=0 f
  [[ -d "$dir" ]] || { log "$dir does not exist"; return 1; }
  dir=$(cd "$dir" && pwd -P)
  local files=(namespace.pid noida-db.pid socat.pid stunnel.pid)
  # the credential-checking proxy is expected when the TLS front was configured to use it
  grep -q 'auth\.sock' "$dir/stunnel.conf" 2>/dev/null && files+=(proxy.pid)
  for f in "${files[@]}"; do
    if pid_alive "$dir/$f" "$dir"; then log "${f%.pid}: running (pid $(tr -dc '0-9' <"$dir/$f"))"
    else log "${f%.pid}: not running"; ok=1; fi
  done
  return $ok
}

cmd_start() {
  local dir=$1 port=$2 check=0 user=$DEFAULT_USER password=${SASL_CHECK_PASSWORD:-$DEFAULT_PASSWORD}
  shift 2
  while (($#)); do
    case $1 in
      --check-credentials) check=1; shift ;;
      --user) (($# >= 2)) || usage; user=$2; check=1; shift 2 ;;
      --password) (($# >= 2)) || usage; password=$2; check=1; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ -n $user && -n $password ]] || die "--user and --password must not be empty"
  [[ $user != *$'\n'* ]] || die "--user must be one line"
  [[ "$port" =~ ^[0-9]{1,5}$ ]] || die "invalid port '$port'"
  port=$((10#$port))
  ((port >= 1 && port <= 65535)) || die "invalid port '$port'"

  need openssl openssl
  need socat socat
  need stunnel stunnel4
  need unshare util-linux
  need setsid util-linux
  need timeout coreutils
  need od coreutils
  local noida; noida=$(find_noida)
  # `ip` (iproute2) brings loopback up in the namespace; without it, python3 does (ioctl).
  command -v ip >/dev/null 2>&1 || need python3 python3
  if ((check)); then
    need python3 python3
    [[ -r $PROXY ]] || die "$PROXY not found (it ships next to this script)"
  fi

  dir=$(abspath "$dir")
  local sock="$dir/broker.sock" front="$dir/broker.sock"
  ((check)) && front="$dir/auth.sock"
  ((${#sock} < 100)) || die "unix socket path too long (${#sock} chars, max ~100): $sock; use a shorter DIR"

  # Re-runnable: clean up whatever an earlier start left in DIR.
  if pid_alive "$dir/namespace.pid" "$dir" || pid_alive "$dir/stunnel.pid" "$dir"; then
    log "already running in $dir; restarting"
  fi
  cmd_stop "$dir"
  port_in_use "$port" && die "127.0.0.1:$port is already in use on this host; pick another port"

  mkdir -p "$dir/logs" "$dir/data"
  gen_certs "$dir"

  # Network namespace. As root a plain `unshare -n`; otherwise try an unprivileged user namespace.
  local unshare_args=(-n)
  if [[ $EUID -ne 0 ]]; then unshare_args=(-r -n); fi
  : >"$dir/logs/namespace.log"; : >"$dir/logs/probe.log"
  # Inside the namespace: loopback up, noida-db on its private 127.0.0.1:PORT, wait for it, then
  # socat bridging the unix socket to it, and, checking credentials, the proxy on auth.sock.
  # Pids of the same processes are valid on the host (no pid namespace). `wait` keeps the
  # namespace alive; stop kills the process group. The expected password reaches the proxy
  # through the environment only (never a command line, file or log).
  # shellcheck disable=SC2016
  SASL_CHECK_PASSWORD=$password KAFKA_SASL_CHECK_PASSWORD=$password \
  setsid unshare "${unshare_args[@]}" bash -c '
    dir=$1 port=$2 noida=$3 check=$4 proxy=$5 user=$6
    set -u
    if command -v ip >/dev/null 2>&1; then
      ip link set lo up || { echo "ip link set lo up failed"; exit 1; }
    else
      python3 -c "
import fcntl, socket, struct
s = socket.socket()
req = struct.pack(\"16sH22x\", b\"lo\", 0)
flags = struct.unpack(\"16sH22x\", fcntl.ioctl(s, 0x8913, req))[1]   # SIOCGIFFLAGS
fcntl.ioctl(s, 0x8914, struct.pack(\"16sH22x\", b\"lo\", flags | 1))  # SIOCSIFFLAGS, IFF_UP
" || { echo "bringing loopback up failed (install iproute2)"; exit 1; }
    fi
    "$noida" start --only kafka --host 127.0.0.1 --kafka-port "$port" --data-dir "$dir/data" &
    echo $! >"$dir/noida-db.pid"
    for ((i = 0; i < 150; i++)); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      kill -0 "$(cat "$dir/noida-db.pid")" 2>/dev/null || { echo "noida-db exited"; exit 1; }
      sleep 0.1
    done
    socat -lf /dev/stderr UNIX-LISTEN:"$dir/broker.sock",fork,reuseaddr,unlink-early,mode=600 \
      TCP:127.0.0.1:"$port" &
    echo $! >"$dir/socat.pid"
    if ((check)); then
      python3 "$proxy" --listen-unix "$dir/auth.sock" --upstream 127.0.0.1:"$port" --user "$user" &
      echo $! >"$dir/proxy.pid"
    fi
    unset SASL_CHECK_PASSWORD KAFKA_SASL_CHECK_PASSWORD
    wait
  ' pedidos-sasl-ssl-ns "$dir" "$port" "$noida" "$check" "$PROXY" "$user" \
    </dev/null >>"$dir/logs/namespace.log" 2>&1 &
  echo $! >"$dir/namespace.pid"

  cat >"$dir/stunnel.conf" <<EOF
; generated by $PROG for $dir
foreground = no
pid = $dir/stunnel.pid
output = $dir/logs/stunnel.log
debug = notice

[kafka]
accept = 127.0.0.1:$port
connect = $front
cert = $dir/server.pem
key = $dir/server.key
sslVersionMin = TLSv1.2
EOF

  local timeout=${STARTUP_TIMEOUT:-15} t0=$SECONDS
  # wait for the unix socket(s) before starting stunnel (stunnel only connects per client anyway)
  while [[ ! -S $sock || ! -S $front ]]; do
    if ! kill -0 "$(cat "$dir/namespace.pid")" 2>/dev/null; then
      show_logs "$dir"; cmd_stop "$dir"; die "broker namespace exited early (see $dir/logs/namespace.log above)"
    fi
    if ((SECONDS - t0 >= timeout)); then
      show_logs "$dir"; cmd_stop "$dir"; die "noida-db/socat$( ((check)) && echo /proxy) did not come up within ${timeout}s"
    fi
    sleep 0.05
  done
  : >"$dir/logs/stunnel.log"
  if ! stunnel "$dir/stunnel.conf" >>"$dir/logs/stunnel.log" 2>&1; then
    show_logs "$dir"; cmd_stop "$dir"; die "stunnel failed to start (config $dir/stunnel.conf)"
  fi

  until tls_verify_ok "$dir" "$port" && probe_broker "$dir" "$port"; do
    if ((SECONDS - t0 >= timeout)); then
      show_logs "$dir"
      log "openssl s_client output:"
      openssl s_client -connect "127.0.0.1:$port" -servername localhost -CAfile "$dir/ca.pem" </dev/null 2>&1 | tail -n 15 >&2 || true
      cmd_stop "$dir"
      die "TLS front / broker not answering on 127.0.0.1:$port within ${timeout}s"
    fi
    sleep 0.1
  done
  local who="any PLAIN user/password"
  if ((check)); then
    # The proxy must accept the right credentials and refuse others, end to end through TLS.
    local rc=0
    SASL_CHECK_PASSWORD=$password python3 "$PROXY" --probe "127.0.0.1:$port" --cafile "$dir/ca.pem" \
      --user "$user" --password-env SASL_CHECK_PASSWORD >>"$dir/logs/probe.log" 2>&1 || rc=$?
    if ((rc != 0)); then
      show_logs "$dir"; cmd_stop "$dir"
      die "the credential-checking proxy refused the right credentials (probe exit $rc)"
    fi
    rc=0
    SASL_CHECK_PASSWORD="not-$password" python3 "$PROXY" --probe "127.0.0.1:$port" --cafile "$dir/ca.pem" \
      --user "$user" --password-env SASL_CHECK_PASSWORD --versions 0,1,2 >>"$dir/logs/probe.log" 2>&1 || rc=$?
    if ((rc != 3)); then
      show_logs "$dir"; cmd_stop "$dir"
      die "the credential-checking proxy did not refuse a wrong password (probe exit $rc, expected 3)"
    fi
    who="only PLAIN user '$user' with its password"
  fi
  log "ready: SASL_SSL on 127.0.0.1:$port ($who), ca=$dir/ca.pem, wrong CA for negative tests: $dir/wrong-ca.pem; stop with: $0 stop $dir"
  printf 'ca=%s\n' "$dir/ca.pem"
}

# ---------------------------------------------------------------------------------------------
case "${1:-}" in
  start) [[ $# -ge 3 ]] || usage; shift; cmd_start "$@" ;;
  stop) [[ $# -eq 2 ]] || usage; cmd_stop "$2" ;;
  status) [[ $# -eq 2 ]] || usage; cmd_status "$2" ;;
  *) usage ;;
esac
