#!/usr/bin/env bash
# Static checks of everything that deploys pedidos, none of which can run here (no Docker engine,
# no cluster); a broken file fails this script, and so ./scripts/test.sh:
#   Dockerfile, deploy/images/rust.Dockerfile   hadolint; one stage per daemon of
#                            scripts/lib/daemons.txt with its entry point and port; the build
#                            reading that list; .dockerignore letting it and each crate in
#   compose.yaml             compose-go's loader (the Compose Specification's schema, references,
#                            interpolation) with each profile and env file: no broker, --profile
#                            kafka, kafka + postgres, deploy/compose/kafka3.env, and
#                            deploy/compose/confluent.env.example as .env; the services and
#                            settings each should give; every mounted file exists
#   deploy/compose/prometheus.yml   promtool check config, with alerts.yml beside it as mounted;
#                            a job per daemon at its service
#   deploy/alertmanager/alertmanager.yml   amtool check-config
#   deploy/helm/pedidos      helm lint --strict; helm template with the defaults (must fail,
#                            naming the values to set) and with several sets of values (Confluent
#                            Cloud, PostgreSQL and three API replicas, PLAINTEXT and anonymous),
#                            each rendered manifest against the Kubernetes JSON schemas in strict
#                            mode (kubernetes-validate) and the ServiceMonitor and PrometheusRule
#                            against prometheus-operator's CRDs; the PrometheusRule equal to
#                            ops/prometheus/alerts.yml; secrets only from the Secret; the chart's
#                            refusals (SQLite above one replica, anonymous without saying so)
# Tools are fetched on first use into the cache (scripts/lib/deploy-tools.sh): about 5 minutes
# once (Go, and Helm built from source), then a few seconds.
#
# Usage: scripts/deploy-check.sh
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
. scripts/lib/daemons.sh
. scripts/lib/deploy-tools.sh

step() { printf 'deploy-check.sh: %s\n' "$*" >&2; }
die() {
  printf 'deploy-check.sh: error: %s\n' "$*" >&2
  exit 1
}

ensure_deploy_venv
ensure_helm
ensure_compose_check
ensure_operator_crds
PY=$DEPLOY_VENV/bin/python
CHECK=(env PYTHONDONTWRITEBYTECODE=1 "$PY" scripts/lib/deploy_check.py)

work=$(mktemp -d "${TMPDIR:-/tmp}/pedidos-deploy-check.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

# The one list of daemons, for the checks: name, HTTP port, the variable that sets its address.
for daemon in "${DAEMONS[@]}"; do
  printf '{"name": "%s", "port": %s, "var": "%s"}\n' "$daemon" "${DAEMON_ADMIN_ADDR[$daemon]##*:}" \
    "$(daemon_env_var "$daemon")"
done | "$PY" -c 'import json, sys; print(json.dumps([json.loads(l) for l in sys.stdin]))' >"$work/daemons.json"

# --- the Dockerfiles ---------------------------------------------------------------------------
step "hadolint Dockerfile deploy/images/rust.Dockerfile"
"$DEPLOY_VENV/bin/hadolint" Dockerfile deploy/images/rust.Dockerfile
"${CHECK[@]}" dockerfile "$work/daemons.json" Dockerfile .dockerignore

# --- compose.yaml ------------------------------------------------------------------------------
# Each scenario loads a copy of the files compose.yaml names, so a developer's own .env does not
# leak in and the Confluent Cloud example can play .env.
compose_scenario() {
  local scenario=$1
  shift
  local dir=$work/compose-$scenario
  mkdir -p "$dir"
  cp --parents -r compose.yaml Dockerfile deploy/compose deploy/alertmanager ops "$dir/"
  if [[ $scenario == confluent ]]; then cp deploy/compose/confluent.env.example "$dir/.env"; fi
  step "compose.yaml, $scenario${*:+ ($*)}"
  (cd "$dir" && "$COMPOSE_CHECK" "$@" compose.yaml) >"$dir.json" ||
    die "compose.yaml does not load ($scenario)"
  "${CHECK[@]}" compose "$work/daemons.json" "$scenario" "$dir.json"
}
compose_scenario none
compose_scenario local -profile kafka
compose_scenario postgres -profile kafka -profile postgres
compose_scenario kafka3 -env-file deploy/compose/kafka3.env
compose_scenario confluent

step "promtool check config deploy/compose/prometheus.yml (with ops/prometheus/alerts.yml as mounted)"
mkdir -p "$work/prometheus"
cp deploy/compose/prometheus.yml ops/prometheus/alerts.yml "$work/prometheus/"
promtool check config "$work/prometheus/prometheus.yml"
"${CHECK[@]}" prometheus "$work/daemons.json" deploy/compose/prometheus.yml

step "amtool check-config deploy/alertmanager/alertmanager.yml"
amtool check-config deploy/alertmanager/alertmanager.yml

# --- the Helm chart ----------------------------------------------------------------------------
chart=deploy/helm/pedidos
confluent=(--set kafka.bootstrapServers=pkc-xxxxx.us-east-1.aws.confluent.cloud:9092 --set secret.name=pedidos)

step "helm lint --strict $chart"
# (Without Helm's note that files/alerts.yml is a link: it is meant to be.)
"$HELM" lint --strict "$chart" "${confluent[@]}" >"$work/lint.log" 2>&1 ||
  { cat "$work/lint.log" >&2; die "helm lint failed"; }
grep -v 'found symbolic link' "$work/lint.log" >&2

render() {
  local name=$1
  shift
  "$HELM" template pedidos "$chart" "$@" 2>"$work/$name.err" >"$work/$name.yaml"
}

step "helm template $chart (defaults alone): refused, naming kafka.bootstrapServers"
if render defaults; then die "the chart rendered without kafka.bootstrapServers"; fi
grep -q 'set kafka.bootstrapServers' "$work/defaults.err" || { cat "$work/defaults.err" >&2; die "unexpected error"; }

validate() {
  local name=$1 replicas=$2
  shift 2
  step "helm template $chart $*"
  render "$name" "$@" || { cat "$work/$name.err" >&2; die "helm template failed ($name)"; }
  "$DEPLOY_VENV/bin/kubernetes-validate" --strict --quiet "$work/$name.yaml" 2>&1 |
    grep -v "Couldn't find schema for kind \(PrometheusRule\|ServiceMonitor\) " >&2 || true
  "$DEPLOY_VENV/bin/kubernetes-validate" --strict --quiet --no-warn "$work/$name.yaml" >/dev/null ||
    die "kubernetes-validate --strict refused the $name manifests"
  "${CHECK[@]}" crs "$OPERATOR_CRDS" "$work/$name.yaml" >/dev/null
  "${CHECK[@]}" chart "$work/daemons.json" ops/prometheus/alerts.yml "$work/$name.yaml" --replicas-api "$replicas"
}
validate confluent 1 "${confluent[@]}"
validate postgres 3 "${confluent[@]}" --set api.store=postgres --set api.replicas=3 \
  --set networkPolicy.enabled=true --set api.jwt.publicKeySecret.name=issuer \
  --set api.jwt.publicKeySecret.key=issuer.pem --set api.jwt.issuer=https://id.example.com/
validate plaintext 1 --set kafka.bootstrapServers=kafka.kafka.svc:9092 --set kafka.securityProtocol=PLAINTEXT \
  --set api.auth=none --set api.allowAnonymous=true --set serviceMonitor.enabled=false

refused() {
  local name=$1 expect=$2
  shift 2
  step "helm template $chart $*: refused"
  if render "$name" "${confluent[@]}" "$@"; then die "the chart rendered $*"; fi
  grep -q "$expect" "$work/$name.err" || { cat "$work/$name.err" >&2; die "unexpected error ($name)"; }
}
refused sqlite-replicas 'an SQLite order view serves one instance' --set api.replicas=2
refused anonymous 'Set api.allowAnonymous=true' --set api.auth=none
refused store 'api.store must be sqlite or postgres' --set api.store=mysql

step "all deploy checks passed"
