#!/usr/bin/env bash
# Confluent's own Python client (confluent-kafka, with its Schema Registry serializers) in a
# virtualenv under ${XDG_CACHE_HOME:-$HOME/.cache}/pedidos: the other-language consumer and
# producer of the interoperability test (e2e/tests/registry.rs, e2e/interop/confluent_json.py).
#
#   scripts/confluent-python.sh install
#       Creates the virtualenv and installs confluent-kafka[json,schemaregistry] $VERSION when
#       missing (needs python3 with venv: Debian's python3-venv), and prints its python as the
#       last line of stdout. A second run takes well under a second.
set -euo pipefail

readonly VERSION=2.16.1
readonly PYTHON=${PYTHON:-python3}
readonly VENV="${XDG_CACHE_HOME:-$HOME/.cache}/pedidos/confluent-kafka-venv"

log() { printf 'confluent-python.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

installed_version() {
  "$VENV/bin/python" -c 'import confluent_kafka, jsonschema, referencing; print(confluent_kafka.__version__)' 2>/dev/null
}

install() {
  if [[ -x $VENV/bin/python && $(installed_version) == "$VERSION" ]]; then
    printf '%s\n' "$VENV/bin/python"
    return
  fi
  log "installing confluent-kafka[json,schemaregistry] $VERSION into $VENV"
  # shellcheck source=lib/venv.sh
  . "$(dirname -- "${BASH_SOURCE[0]}")/lib/venv.sh"
  venv_ensure "$VENV" "$PYTHON"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet \
    "confluent-kafka[json,schemaregistry]==$VERSION" >&2 ||
    die "pip could not install confluent-kafka $VERSION (is PyPI reachable?)"
  [[ $(installed_version) == "$VERSION" ]] || die "confluent-kafka $VERSION did not install"
  printf '%s\n' "$VENV/bin/python"
}

case ${1:-} in
  install) install ;;
  *) die "usage: scripts/confluent-python.sh install" ;;
esac
