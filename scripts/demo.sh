#!/usr/bin/env bash
# The main job: bring up the local stack and run the data plane against it, in the foreground.
# Ctrl-C stops the data plane; `scripts/stack.sh down` stops PostgreSQL and Redis.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conclave/target}"
LISTEN="${CONCLAVE_LISTEN:-127.0.0.1:8080}"
say() { printf '\033[1;35m[demo]\033[0m %s\n' "$*"; }

scripts/stack.sh up
eval "$(scripts/stack.sh env)"
say "building the data plane"
cargo build --quiet --locked -p conclave-dataplane
"$CARGO_TARGET_DIR/debug/conclave-dataplane" serve --listen "$LISTEN" --log-format pretty &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
    curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break
    kill -0 $pid 2>/dev/null || { say "the data plane exited; see its log above"; exit 1; }
    sleep 0.1
done
say "GET /healthz -> $(curl -fsS "http://$LISTEN/healthz")"
say "GET /readyz  -> $(curl -sS "http://$LISTEN/readyz")"
say "the data plane is serving on http://$LISTEN (Ctrl-C to stop it; scripts/stack.sh down stops PostgreSQL and Redis)"
wait $pid
