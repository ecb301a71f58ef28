#!/usr/bin/env bash
# Validates an AsyncAPI document with the AsyncAPI Initiative's own parser (npm @asyncapi/parser:
# the schema of the spec, reference resolution, and its Spectral rules), and fails on any error
# or warning. The API tests run it on the document the API serves at /asyncapi.json.
#
# The parser lives under ${XDG_CACHE_HOME:-$HOME/.cache}/pedidos/asyncapi-parser, installed on
# first use with the machine's Node.js (18 or newer) and npm.
#
# Usage: scripts/asyncapi-check.sh FILE      (FILE `-` reads standard input)
#        scripts/asyncapi-check.sh --install (only installs the parser)
set -euo pipefail
here=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

readonly VERSION=3.6.6
readonly PREFIX="${XDG_CACHE_HOME:-$HOME/.cache}/pedidos/asyncapi-parser"

die() {
  printf 'asyncapi-check.sh: error: %s\n' "$*" >&2
  exit 1
}

command -v node >/dev/null 2>&1 || die "Node.js is missing (Debian: apt-get install nodejs npm)"
if [[ ! -f $PREFIX/node_modules/@asyncapi/parser/package.json ]] ||
  ! grep -q "\"version\": \"$VERSION\"" "$PREFIX/node_modules/@asyncapi/parser/package.json"; then
  command -v npm >/dev/null 2>&1 || die "npm is missing (Debian: apt-get install npm)"
  printf 'asyncapi-check.sh: installing @asyncapi/parser %s into %s\n' "$VERSION" "$PREFIX" >&2
  mkdir -p "$PREFIX"
  npm install --silent --no-audit --no-fund --prefix "$PREFIX" "@asyncapi/parser@$VERSION" >&2
fi
[[ ${1:-} == --install ]] && exit 0
[[ $# -eq 1 ]] || die "usage: $0 FILE (or - for standard input)"
ASYNCAPI_PARSER_PREFIX=$PREFIX exec node "$here/lib/asyncapi_check.cjs" "$1"
