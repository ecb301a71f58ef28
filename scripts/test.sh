#!/usr/bin/env bash
# The project's test command (what CI runs): installs what it needs (scripts/lib/install.sh),
# then formatting, lints, the Prometheus alert rules (promtool: syntax and unit tests), the deploy
# files (scripts/deploy-check.sh: Dockerfile, compose.yaml, the Helm chart, Alertmanager), a
# build of the daemons, the API against its own OpenAPI document (Schemathesis, once with
# api.auth = "none" and once with "jwt"), the AsyncAPI parser the API tests check
# /asyncapi.json with, the container images (scripts/images.sh) and their
# smoke test against a real broker (scripts/image-smoke.sh), then every test of the workspace,
# the integration tests against real Apache Kafka brokers (one node, three nodes, SASL_SSL) and
# a real Prometheus scraping the mesh (e2e/tests/observability.rs).
#
# Usage: ./scripts/test.sh [extra `cargo test` arguments]
#   e.g. ./scripts/test.sh -- --nocapture      ./scripts/test.sh -p fraud (only that crate's tests)
# Environment: PEDIDOS_SKIP_IMAGES=1 skips building and running the images (says so).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "requirements (scripts/lib/install.sh: Debian packages, Rust; nothing when present)"
. scripts/lib/install.sh
install_requirements

# The API tests hold a thousand long-polling clients and their server in one process: lift the
# soft file-descriptor limit (1,024 on many machines) to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

step "Apache Kafka (scripts/kafka.sh install)"
echo "Kafka jars in $(scripts/kafka.sh install | tail -n 1)"

step "Apicurio Registry, the Schema Registry of the tests (scripts/apicurio.sh install: Java 21+, Maven)"
echo "Apicurio Registry in $(scripts/apicurio.sh install | tail -n 1), run with $(scripts/apicurio.sh java)"

step "Confluent's Python client, the other-language consumer of the registry tests (scripts/confluent-python.sh install)"
echo "confluent-kafka in $(scripts/confluent-python.sh install | tail -n 1)"

step "formatting (cargo fmt --check)"
cargo fmt --all -- --check

step "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "Prometheus configuration and alert rules (promtool check, promtool test rules)"
promtool check config ops/prometheus/prometheus.yml
promtool test rules ops/prometheus/alerts.test.yml

step "deploy files (scripts/deploy-check.sh: hadolint, compose-go, helm lint/template, kubernetes-validate --strict, amtool)"
scripts/deploy-check.sh

step "daemon binaries (cargo build --bins), spawned by the end-to-end tests"
cargo build --workspace --bins

step "API contract, api.auth = \"none\" (scripts/schemathesis.sh: property-based tests from /openapi.json)"
scripts/schemathesis.sh

step "API contract, api.auth = \"jwt\" (SCHEMATHESIS_AUTH=jwt scripts/schemathesis.sh: with an operator token)"
SCHEMATHESIS_AUTH=jwt scripts/schemathesis.sh

step "AsyncAPI parser (scripts/asyncapi-check.sh --install: the API tests validate /asyncapi.json with it)"
scripts/asyncapi-check.sh --install

if [[ ${PEDIDOS_SKIP_IMAGES:-} == 1 ]]; then
  step "container images: SKIPPED (PEDIDOS_SKIP_IMAGES=1)"
else
  step "container images (scripts/images.sh: buildah, one cargo build of the four daemons)"
  scripts/images.sh
  step "container images' smoke test (scripts/image-smoke.sh: an order through the containers, SIGTERM)"
  scripts/image-smoke.sh
fi

# Every crate, unless the arguments pick packages (`--workspace` would override `-p`).
scope=(--workspace)
for arg in "$@"; do
  case $arg in
    --) break ;;
    -p | -p?* | --package | --package=*) scope=() ;;
  esac
done
step "tests (cargo test ${scope[*]} $*)"
cargo test "${scope[@]}" "$@"

step "all checks passed"
