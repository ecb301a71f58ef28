# shellcheck shell=bash disable=SC2034 # (the arrays are for the scripts that source this file)
# The mesh's daemons for the scripts (run-local.sh, bench.sh, images.sh, deploy-check.sh …), read
# from scripts/lib/daemons.txt, the one list (the e2e harness embeds the same file): sourced,
# never run. Adding a daemon: a line in daemons.txt.
#
# DAEMONS                 the daemons, in start order: the API first (it creates the topics)
# DAEMON_ADMIN_KEY[name]  the configuration key of its HTTP port (`/health`, `/ready`, `/metrics`)
# DAEMON_ADMIN_ADDR[name] that key's default
# DAEMON_COLOUR[name]     its label's colour in run-local.sh's output (an ANSI SGR code)

DAEMONS=()
declare -A DAEMON_ADMIN_KEY=() DAEMON_ADMIN_ADDR=() DAEMON_COLOUR=()
while read -r _name _key _addr _colour; do
  [[ -z $_name || $_name == '#'* ]] && continue
  DAEMONS+=("$_name")
  DAEMON_ADMIN_KEY[$_name]=$_key
  DAEMON_ADMIN_ADDR[$_name]=$_addr
  DAEMON_COLOUR[$_name]=$_colour
done <"$(dirname -- "${BASH_SOURCE[0]}")/daemons.txt"
unset _name _key _addr _colour

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

# daemon_address NAME: where NAME listens for `/health`, `/ready`, `/metrics`: the address its
# variable sets in the environment, else the default.
daemon_address() {
  local var
  var=$(daemon_env_var "$1")
  printf '%s\n' "${!var:-${DAEMON_ADMIN_ADDR[$1]}}"
}

# prometheus_targets: the daemons as Prometheus file_sd targets (JSON), each with its name as
# its job, at daemon_address.
prometheus_targets() {
  local name sep=''
  printf '['
  for name in "${DAEMONS[@]}"; do
    printf '%s\n  {"targets": ["%s"], "labels": {"job": "%s"}}' "$sep" "$(daemon_address "$name")" "$name"
    sep=,
  done
  printf '\n]\n'
}
