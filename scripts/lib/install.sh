# shellcheck shell=bash
# What ./scripts/test.sh needs on a fresh Debian 12 machine, installed when missing: sourced by
# test.sh (and so by .ci/run), never run. Every step checks first and does nothing when done,
# so a second run costs well under a second. Installing needs root (or sudo).
#
# install_requirements: the Debian packages, then the Rust toolchain (rustup's; Debian's rustc
# is older than the workspace's rust-version) with rustfmt and clippy. The image checks' own
# tools (Go, Helm, hadolint, kubernetes-validate) are fetched on first use into the cache by
# scripts/lib/deploy-tools.sh.

# rdkafka (feature "ssl") builds librdkafka with configure/make/cc against the system OpenSSL
# and zlib; Java 17 and Maven fetch and host the Apache Kafka brokers of the tests
# (scripts/kafka.sh); Node.js and npm host the AsyncAPI parser; python3 + venv host Schemathesis, hadolint and kubernetes-validate;
# postgresql is the API's shared order store, whose tests start servers of their own
# (testkit::Postgres; Debian's own cluster is not used); prometheus (with promtool) scrapes the
# mesh in e2e/tests/observability.rs and checks the alert rules; prometheus-alertmanager brings
# amtool for the Alertmanager configuration; buildah and debootstrap build the container images
# without a daemon or a registry (scripts/images.sh); curl and ca-certificates fetch crates,
# rustup and the Go toolchain.
INSTALL_PACKAGES=(
  build-essential pkg-config libssl-dev zlib1g-dev
  python3 python3-venv
  postgresql prometheus prometheus-alertmanager
  buildah debootstrap
  ca-certificates curl
)

install_log() { printf '\n==> %s\n' "$*"; }

install_debian_packages() {
  local package missing=() java_major sudo=()
  for package in "${INSTALL_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$package")
    fi
  done
  # A JDK or Maven installed some other way (SDKMAN, a vendor build) is as good as Debian's.
  java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1 || true)
  if [[ -z $java_major || $java_major -lt 17 ]]; then missing+=(openjdk-17-jre-headless); fi
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  # Node.js and npm host the AsyncAPI parser (scripts/asyncapi-check.sh); any install will do.
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  ((${#missing[@]})) || return 0
  install_log "installing Debian packages: ${missing[*]}"
  if ((EUID != 0)); then sudo=(sudo); fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

install_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    install_log "installing Rust with rustup"
    # rustup-init itself, from rustup's own host (what the sh.rustup.rs script downloads).
    local init
    init=$(mktemp)
    curl --proto '=https' --tlsv1.2 -fsSL -o "$init" \
      https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init
    chmod +x "$init"
    "$init" -y --no-modify-path --profile minimal --component rustfmt,clippy
    rm -f -- "$init"
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
  fi
  if command -v rustup >/dev/null 2>&1; then
    local installed component
    installed=$(rustup component list --installed)
    for component in rustfmt clippy; do
      if ! grep -q "^$component" <<<"$installed"; then
        install_log "adding Rust component $component"
        rustup component add "$component"
      fi
    done
  fi
}

install_requirements() {
  install_debian_packages
  install_rust
}
