#!/usr/bin/env bash
# Every test Conclave has, on a fresh machine or a warm one: installs what is missing, brings up
# the local stack (PostgreSQL, Redis), the end-to-end node's Debian packages (containerd, runc, CNI
# plugins) and the Kubernetes tools (kube-apiserver, etcd, kubectl, helm, kubelet, controller
# manager, scheduler, kube-proxy, CoreDNS: built once from their Go modules, then cached), then
# checks formatting, lints, sqlx offline data, builds the container images and runs the whole test
# suite against the real services, the end-to-end suite (e2e/: a real kube-apiserver and node,
# the Helm chart, the operator, the data plane) included.
# `.ci/run` calls exactly this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
step() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }

# Build artefacts live outside the clone so a second run (or a fresh clone) is incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conclave/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A fresh clone compiles this workspace's crates anew (their paths differ), so incremental caches
# would only fill the disk (about 13 GiB a clone); CI (CI=true) goes without them.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
if command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
cargo --version
# The end-to-end node evicts pods and deletes images when its disk is 99 % full; a build needs a
# few GiB on top. Say so at the start rather than with a puzzling failure half an hour later.
mkdir -p "$CARGO_TARGET_DIR"
free_gib=$(( $(df --output=avail -k "$CARGO_TARGET_DIR" | tail -1) / 1048576 ))
if [ "$free_gib" -lt 10 ]; then
    echo "warning: only ${free_gib} GiB free where $CARGO_TARGET_DIR is; a full run needs about 10" >&2
fi

step "local stack"
# The tests make databases of their own from this tree's migrations; the shared development
# database is left as it is (it may be ahead of or behind this checkout).
scripts/stack.sh up --no-migrate
eval "$(scripts/stack.sh env)"

# Databases left behind by an interrupted earlier run: only those whose creating process is gone
# (each is marked with it), so a demo, another test run or a benchmark beside this one keeps its own.
cargo run --quiet --locked -p conclave-testkit --bin conclave-test-sweep

step "the end-to-end node's Debian packages (containerd, runc, CNI plugins, iptables)"
scripts/node-packages.sh

step "Kubernetes tools (first run: builds kube-apiserver, etcd, kubectl, helm, the node's binaries, CoreDNS; later runs: cached)"
tools_started=$SECONDS
scripts/k8s-tools.sh >/dev/null
echo "control-plane tools ready in $((SECONDS - tools_started))s: $(scripts/k8s-tools.sh dir)"

step "formatting"
cargo fmt --all --check

step "sqlx offline data"
scripts/sqlx-prepare.sh --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "API documentation (broken links and unescaped markup fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "binaries (operator, data plane, CLI, the demo's conclave-local)"
cargo build --workspace --bins --locked

step "container images (scripts/images.sh: release binaries, umoci, skopeo; no daemon)"
images_started=$SECONDS
scripts/images.sh build >/dev/null
echo "images built in $((SECONDS - images_started))s: $(scripts/images.sh dir)"

step "tests (the end-to-end suite prints its steps as [e2e] lines)"
tests_started=$SECONDS
status=0
cargo test --workspace --exclude conclave-e2e --locked --no-fail-fast || status=$?
echo "unit and integration tests finished in $((SECONDS - tests_started))s"

step "the S3 attachment store against an S3-compatible server (moto, on loopback)"
# The aws backend is behind the data plane's `s3` feature (it brings a C build); it is built and
# tested here so the store that production may choose is exercised like the default one.
export CONCLAVE_MOTO_PYTHON="${CONCLAVE_MOTO_PYTHON:-python3}"
if ! "$CONCLAVE_MOTO_PYTHON" -c 'import moto.server' 2>/dev/null; then
    "$CONCLAVE_MOTO_PYTHON" -m pip install --quiet 'moto[server]' \
        || "$CONCLAVE_MOTO_PYTHON" -m pip install --quiet --break-system-packages 'moto[server]'
fi
cargo clippy -p conclave-dataplane --features s3 --all-targets --locked -- -D warnings
cargo test -p conclave-dataplane --features s3 --locked --lib attachments::storage || status=$?

step "property-based fuzzing of the API against its OpenAPI document (schemathesis, on loopback)"
# Generated requests, valid and invalid, to every operation of a live data plane; any 5xx, or any
# answer the document does not describe, fails. Bounded: CONCLAVE_FUZZ_EXAMPLES per operation and
# CONCLAVE_FUZZ_SECONDS in all (dataplane/tests/api/fuzz.rs).
scripts_dir="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
if ! "${CONCLAVE_SCHEMATHESIS:-$scripts_dir/st}" --version >/dev/null 2>&1 && ! command -v st >/dev/null; then
    python3 -m pip install --quiet 'schemathesis>=4,<5' \
        || python3 -m pip install --quiet --break-system-packages 'schemathesis>=4,<5'
fi
if [ -z "${CONCLAVE_SCHEMATHESIS:-}" ]; then
    if [ -x "$scripts_dir/st" ]; then CONCLAVE_SCHEMATHESIS="$scripts_dir/st"; else CONCLAVE_SCHEMATHESIS="$(command -v st)"; fi
fi
export CONCLAVE_SCHEMATHESIS
fuzz_started=$SECONDS
cargo test -p conclave-dataplane --test api --locked -- fuzz:: --ignored --nocapture || status=$?
echo "fuzzing finished in $((SECONDS - fuzz_started))s"

step "end-to-end suite: etcd + kube-apiserver, Helm chart, operator, data plane, two people chatting"
e2e_started=$SECONDS
# --nocapture: each scenario step is printed as it happens; one test at a time (two cores).
cargo test -p conclave-e2e --locked --no-fail-fast -- --nocapture --test-threads=1 || status=$?
echo "end-to-end suite finished in $((SECONDS - e2e_started))s"
exit $status
