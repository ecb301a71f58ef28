#!/usr/bin/env bash
# Makes sure the noida-db broker the tests run (a Kafka-compatible single binary shipped in the
# PyPI package `noida-db`) is available, and prints the absolute path of the binary as the last
# line of stdout. Idempotent and quick when it is already installed. Progress goes to stderr.
#
# Looks, in order, at: $PEDIDOS_NOIDA_DB (an explicit choice, kept even if it is another
# version), the `noida_db` package of python3, the project's cached virtualenv. If none has
# version 0.2.3 it runs `python3 -m pip install --user noida-db==0.2.3`, and if that is refused
# (no pip, or an "externally managed" system Python as on Debian 12) it installs into a
# virtualenv under ${XDG_CACHE_HOME:-$HOME/.cache}/pedidos/venv.
#
# Usage: scripts/install-noida.sh            (then: export PEDIDOS_NOIDA_DB=<last line>)
set -euo pipefail

readonly VERSION=0.2.3
readonly PYTHON=${PYTHON:-python3}
readonly VENV="${XDG_CACHE_HOME:-$HOME/.cache}/pedidos/venv"

log() { printf 'install-noida: %s\n' "$*" >&2; }

# Prints the binary inside the noida_db package importable by the given python, if any.
package_binary() {
  "$1" -c 'import noida_db, os; print(os.path.join(os.path.dirname(os.path.abspath(noida_db.__file__)), "noida-db"))' \
    2>/dev/null
}

# True if $1 is an executable noida-db of the wanted version. (It prints a harmless
# "GLIBC_2.39 not found" warning on older glibc; stderr is ignored.)
is_wanted() {
  [[ -f $1 && -x $1 ]] && "$1" version 2>/dev/null | grep -qx "noida-db $VERSION"
}

# Prints the binary of the given python's noida_db package if it is the wanted version.
wanted_from() {
  local bin
  bin=$(package_binary "$1") || return 1
  is_wanted "$bin" || return 1
  printf '%s\n' "$bin"
}

found() {
  log "using $1"
  printf '%s\n' "$1"
  exit 0
}

if [[ -n ${PEDIDOS_NOIDA_DB:-} ]]; then
  bin=$(readlink -f -- "$PEDIDOS_NOIDA_DB" || true)
  if [[ -n $bin && -f $bin && -x $bin ]]; then
    is_wanted "$bin" || log "warning: PEDIDOS_NOIDA_DB=$PEDIDOS_NOIDA_DB is not noida-db $VERSION; using it anyway"
    found "$bin"
  fi
  log "PEDIDOS_NOIDA_DB=$PEDIDOS_NOIDA_DB is not an executable file; ignoring it"
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  log "error: $PYTHON not found; install Python 3 (Debian: apt-get install python3 python3-venv)"
  exit 1
fi

if bin=$(wanted_from "$PYTHON"); then found "$bin"; fi
if [[ -x $VENV/bin/python ]] && bin=$(wanted_from "$VENV/bin/python"); then found "$bin"; fi

log "noida-db $VERSION not found; installing it with pip --user"
if "$PYTHON" -m pip --version >/dev/null 2>&1 &&
  "$PYTHON" -m pip install --user --disable-pip-version-check --quiet "noida-db==$VERSION" >&2 &&
  bin=$(wanted_from "$PYTHON"); then
  found "$bin"
fi

log "pip --user did not work here; installing into the virtualenv $VENV"
if [[ ! -x $VENV/bin/python ]]; then
  mkdir -p -- "$(dirname -- "$VENV")"
  if ! "$PYTHON" -m venv "$VENV" >&2; then
    rm -rf -- "$VENV"
    log "error: cannot create a virtualenv (Debian: apt-get install python3-venv)"
    exit 1
  fi
fi
"$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "noida-db==$VERSION" >&2
if bin=$(wanted_from "$VENV/bin/python"); then found "$bin"; fi

log "error: installed noida-db $VERSION but cannot find or run its binary"
exit 1
