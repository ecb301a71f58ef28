# shellcheck shell=bash
# The one list of the mesh's daemons for the scripts (run-local.sh, bench.sh, the image build):
# sourced, never run. The Rust side's list is `e2e::Daemon`. Adding a daemon: a line here.
#
# DAEMONS                 the daemons, in start order: the API first (it creates the topics)
# DAEMON_ADMIN_KEY[name]  the configuration key of its HTTP port (`/health`, `/ready`, `/metrics`)
# DAEMON_ADMIN_ADDR[name] that key's default
# DAEMON_COLOUR[name]     its label's colour in run-local.sh's output (an ANSI SGR code)

DAEMONS=(api fraud notification monitoring)

declare -A DAEMON_ADMIN_KEY=(
  [api]=api.listen
  [fraud]=fraud.admin_listen
  [notification]=notification.admin_listen
  [monitoring]=monitoring.admin_listen
)
declare -A DAEMON_ADMIN_ADDR=(
  [api]=127.0.0.1:8000
  [fraud]=127.0.0.1:9101
  [notification]=127.0.0.1:9102
  [monitoring]=127.0.0.1:9103
)
declare -A DAEMON_COLOUR=([api]=32 [fraud]=33 [notification]=36 [monitoring]=35)

# daemon_packages: `-p api -p fraud …`, for cargo.
daemon_packages() {
  local name
  for name in "${DAEMONS[@]}"; do printf -- '-p\n%s\n' "$name"; done
}

# daemon_env_var NAME: the environment variable that sets NAME's admin address
# (`PEDIDOS_FRAUD__ADMIN_LISTEN`).
daemon_env_var() {
  local key=${DAEMON_ADMIN_KEY[$1]}
  local section=${key%%.*} field=${key#*.}
  printf 'PEDIDOS_%s__%s\n' "${section^^}" "${field^^}"
}
