# shellcheck shell=bash
# Sourced: the virtualenvs of the test tools (Schemathesis, confluent-kafka) under the cache.
# Uses the sourcing script's `die`.

# venv_ensure VENV PYTHON: creates the virtualenv VENV with PYTHON unless it is there.
venv_ensure() {
  local venv=$1 python=$2
  command -v "$python" >/dev/null 2>&1 || die "$python not found (Debian: apt-get install python3 python3-venv)"
  [[ -x $venv/bin/python ]] && return
  mkdir -p -- "$(dirname -- "$venv")"
  "$python" -m venv "$venv" >&2 || {
    rm -rf -- "$venv"
    die "cannot create a virtualenv (Debian: apt-get install python3-venv)"
  }
}
