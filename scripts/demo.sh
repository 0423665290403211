#!/usr/bin/env bash
# The demo: the whole Conclave system on this machine, then a scripted two-person end-to-end
# encrypted conversation with the `conclave` CLI, then it keeps running for you.
#
#   PostgreSQL + Redis (scripts/stack.sh)  ->  a real etcd + kube-apiserver (TLS, RBAC) and a
#   real node (containerd + runc, kubelet, kube-proxy, CoreDNS, controller manager, scheduler)
#   -> helm install charts/conclave  ->  the operator as a pod from its image
#   -> kubectl apply examples/  ->  the migration Job and the data-plane pods, behind their Service
#   -> alice and bob register, accept their invitations, join a workspace and talk.
#
# It runs the same path as the end-to-end suite's platform scenario (e2e/src/system.rs), so it
# needs root (the node's network namespace, mounts and cgroups) and the node's Debian packages
# (installed when missing). The first run builds kube-apiserver, etcd, kubectl, helm and the
# node's binaries from their Go modules (20-40 minutes, once; cached in ~/.cache/conclave/k8s/)
# and the images (release builds, minutes). Later runs start in well under a minute.
# Ctrl-C stops everything it started; `scripts/stack.sh down` stops PostgreSQL and Redis.
#
# Settings: CONCLAVE_DEMO_PORT (the data plane's port, default 8080), CONCLAVE_DEMO_DIR (state,
# default ~/.local/share/conclave/demo), CONCLAVE_DEMO_NO_WAIT=1 (stop after the conversation).
#
# One demo per state directory: `$STATE/demo.pid` names this script's and conclave-local's
# processes (pid and start time, so a reused pid is not taken for them). A second demo on the
# same directory while they run refuses to start; files a demo that did not finish left behind
# are cleared before anything waits for the new run's.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conclave/target}"
PORT="${CONCLAVE_DEMO_PORT:-8080}"
STATE="${CONCLAVE_DEMO_DIR:-$HOME/.local/share/conclave/demo}"
BIN="$CARGO_TARGET_DIR/debug"
PASSWORD="correct horse battery staple"
n=0
step() { n=$((n + 1)); printf '\n\033[1;35m[demo %d]\033[0m \033[1m%s\033[0m\n' "$n" "$*"; }
say() { printf '\033[1;35m[demo]\033[0m %s\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
die() { printf '\033[1;31m[demo] error:\033[0m %s\n' "$*" >&2; exit 1; }
# When process $1 started (field 22 of /proc/<pid>/stat, after the parenthesised command
# name); empty when it does not run.
started_at() {
    local stat fields
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    read -ra fields <<<"${stat##*) }"
    echo "${fields[19]}"
}
started=$SECONDS

RUN="$STATE/demo.pid"
mkdir -p "$STATE"
if [ -f "$RUN" ]; then
    while read -r pid start; do
        if [ -n "$pid" ] && [ "$(started_at "$pid")" = "$start" ]; then
            die "a demo is already running with state in $STATE (pid $pid): stop it with Ctrl-C in its terminal (or kill $pid), or run this one with another CONCLAVE_DEMO_DIR and CONCLAVE_DEMO_PORT"
        fi
    done <"$RUN"
    say "the previous demo in $STATE did not finish cleaning up; clearing what it left"
fi
# Nothing from an earlier run may be taken for this one's: its env file least of all.
rm -rf "$STATE/env" "$STATE/env.partial" "$STATE/people" "$STATE/bob-listen.txt" \
    "$STATE/reminder-bot" "$STATE/reminder-bot.txt" "$STATE/reminder-bot-token"
echo "$$ $(started_at $$)" >"$RUN"
trap 'rm -f "$RUN"' EXIT

[ "$(id -u)" = 0 ] || die "the demo runs a Kubernetes node (network namespace, mounts, cgroups): run it as root"

step "PostgreSQL and Redis on loopback"
# No migration of the shared `conclave` database: the demo runs on a database of its own,
# migrated from the current schema (and dropped when the demo stops).
scripts/stack.sh up --no-migrate
eval "$(scripts/stack.sh env)"

step "the Kubernetes tools and the node's packages"
scripts/node-packages.sh
if ! scripts/k8s-tools.sh check; then
    say "first run: building kube-apiserver, etcd, kubectl, helm and the node's binaries from their official Go modules."
    say "This takes 20-40 minutes once; the binaries are cached in $(scripts/k8s-tools.sh dir)."
fi
scripts/k8s-tools.sh >/dev/null
TOOLS="$(scripts/k8s-tools.sh dir)"
say "kube-apiserver, etcd, kubectl, helm, kubelet and the rest are in $TOOLS"

step "building Conclave (CLI, local system runner) and the images (operator, data plane)"
cargo build --quiet --locked -p conclave-client -p conclave-e2e --bins
cargo build --quiet --locked -p conclave-client --example reminder_bot
scripts/images.sh build >/dev/null
say "images built into $(scripts/images.sh dir); the node imports them into its containerd"
# kubectl from the tools, without putting them in PATH: build scripts (the cc crate's, for ring)
# watch PATH, so the node's image build (run by conclave-local) would rebuild every release
# binary that depends on ring under another PATH than the tests'.
kubectl() { "$TOOLS/kubectl" "$@"; }

step "bringing the system up: etcd + kube-apiserver, the node, helm install, operator pod, DataPlane, data-plane pods"
"$BIN/conclave-local" up --state-dir "$STATE" --port "$PORT" &
local_pid=$!
echo "$local_pid $(started_at "$local_pid")" >>"$RUN"
bot_pid=""
cleanup() {
    if [ -n "$bot_pid" ] && kill -0 "$bot_pid" 2>/dev/null; then
        kill -TERM "$bot_pid" 2>/dev/null || true
        wait "$bot_pid" 2>/dev/null || true
    fi
    if kill -0 "$local_pid" 2>/dev/null; then
        kill -TERM "$local_pid" 2>/dev/null || true
        wait "$local_pid" 2>/dev/null || true
    fi
    rm -f "$STATE/env" "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 1200); do
    [ -f "$STATE/env" ] && break
    kill -0 "$local_pid" 2>/dev/null || die "the local system did not start (see above)"
    sleep 0.5
done
[ -f "$STATE/env" ] || die "the local system did not come up within 10 minutes"
# shellcheck disable=SC1091
. "$STATE/env"
[ "${CONCLAVE_LOCAL_PID:-}" = "$local_pid" ] || die "$STATE/env was not written by this run's conclave-local (pid $local_pid)"
NS="$CONCLAVE_NAMESPACE"
conclave() { CONCLAVE_PASSWORD="$PASSWORD" "$BIN/conclave" --server "$CONCLAVE_SERVER" --home "$STATE/people" "$@"; }
show kubectl -n "$NS" get dataplane
show kubectl get pods -A -o wide

# The newest email to $1 whose subject contains $2, waiting up to $3 seconds; prints its token $4.
mailed_token() {
    local to="$1" subject="$2" wait="$3" prefix="$4" file=""
    for _ in $(seq 1 $((wait * 5))); do
        file="$(grep -l "^Subject: .*$subject" "$CONCLAVE_MAIL_DIR"/*-"$to".txt 2>/dev/null | tail -1 || true)"
        [ -n "$file" ] && break
        sleep 0.2
    done
    [ -n "$file" ] && grep -oE "${prefix}[A-Za-z0-9_-]+" "$file" | head -1
}

step "alice and bob create accounts with the CLI and confirm them by email"
for who in alice bob; do
    show conclave --profile "$who" register --email "$who@example.org" --display-name "${who^}"
    token="$(mailed_token "$who@example.org" Confirm 15 cve_)" || die "no confirmation email for $who"
    say "the data plane emailed $who a confirmation token (through the DataPlane's SMTP relay)"
    show conclave --profile "$who" confirm "$token"
    show conclave --profile "$who" login --email "$who@example.org" --device-name "$who-laptop"
done

step "the platform engineer declares the tenant with kubectl"
show kubectl -n "$NS" apply -f examples/organization.yaml -f examples/workspaces.yaml -f examples/webhook.yaml -f examples/bot.yaml
show kubectl -n "$NS" wait --for=condition=Ready --timeout=90s organization/acme workspace/acme-general workspace/acme-engineering webhookendpoint/acme-general-events botagent/helper
show kubectl -n "$NS" get conclave
ORG_ID="$(kubectl -n "$NS" get organization acme -o jsonpath='{.status.organizationId}')"

step "alice and bob accept the owner invitations the operator created (initialOwners)"
for who in alice bob; do
    token="$(mailed_token "$who@example.org" invited 20 cvi_ || true)"
    if [ -n "$token" ]; then
        say "the data plane emailed $who the invitation"
    else
        # The operator keeps no usable invitation token; the data plane's outbox worker mints
        # and emails it. A build without that worker gets the same write done here.
        say "no invitation email for $who (this data plane has no outbox worker yet): minting the token as it would"
        token="cvi_$(head -c 32 /dev/urandom | basenc --base64url | tr -d '=')"
        digest="$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)"
        db_url="${CONCLAVE_OWNER_DATABASE_URL%/*}/$CONCLAVE_DATABASE_NAME"
        psql "$db_url" -XAtq -c "UPDATE organization_invitations SET token_hash = decode('$digest', 'hex') WHERE organization_id = '$ORG_ID' AND email = '$who@example.org' AND accepted_at IS NULL" >/dev/null
    fi
    show conclave --profile "$who" accept-invitation --org "$ORG_ID" --token "$token"
    show conclave --profile "$who" join --org acme --workspace general
done

step "an end-to-end-encrypted conversation"
created="$(conclave --profile alice create-conversation --org acme --workspace general --kind group --member bob@example.org)"
echo "$created"
CONV="$(grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' <<<"$created" | head -1)"
say "bob listens on the WebSocket (in the background)"
conclave --profile bob listen --org acme --conversation "$CONV" --count 1 >"$STATE/bob-listen.txt" 2>&1 &
listen_pid=$!
sleep 1
show conclave --profile alice send --org acme --conversation "$CONV" "Hi Bob! This was encrypted on my laptop; the server only stores ciphertext."
for _ in $(seq 1 50); do kill -0 "$listen_pid" 2>/dev/null || break; sleep 0.2; done
kill "$listen_pid" 2>/dev/null || true
say "bob's screen:"
sed 's/^/    /' "$STATE/bob-listen.txt"
show conclave --profile bob send --org acme --conversation "$CONV" "Hi Alice, decrypted on my side. Loud and clear."
show conclave --profile alice history --org acme --conversation "$CONV"
say "what PostgreSQL holds for the same messages (the first bytes of each ciphertext):"
psql "${CONCLAVE_OWNER_DATABASE_URL%/*}/$CONCLAVE_DATABASE_NAME" -X -c \
    "SELECT seq, key_generation, octet_length(ciphertext) AS bytes, encode(substr(ciphertext, 1, 16), 'hex') AS ciphertext_starts FROM messages WHERE conversation_id = '$CONV' ORDER BY seq"

step "a bot joins the conversation: a member device with keys of its own (docs/bots.md)"
show kubectl -n "$NS" apply -f examples/reminder-bot.yaml
show kubectl -n "$NS" wait --for=condition=Ready --timeout=60s botagent/reminder
# Where a Deployment would mount the Secret, the demo copies its token to a private file.
(umask 077 && kubectl -n "$NS" get secret reminder-bot-token -o jsonpath='{.data.token}' | base64 -d >"$STATE/reminder-bot-token")
CONCLAVE_SERVER="$CONCLAVE_SERVER" CONCLAVE_BOT_TOKEN_FILE="$STATE/reminder-bot-token" CONCLAVE_BOT_STATE="$STATE/reminder-bot" \
    "$BIN/examples/reminder_bot" >"$STATE/reminder-bot.txt" 2>&1 &
bot_pid=$!
BOT_USER=""
for _ in $(seq 1 100); do
    BOT_USER="$(grep -oE 'user [0-9a-f-]{36}' "$STATE/reminder-bot.txt" 2>/dev/null | head -1 | cut -d' ' -f2 || true)"
    [ -n "$BOT_USER" ] && break
    kill -0 "$bot_pid" 2>/dev/null || break
    sleep 0.2
done
[ -n "$BOT_USER" ] || die "the reminder bot did not start: $(cat "$STATE/reminder-bot.txt")"
say "the reminder bot generated its device keys, opened a session with its token and published key packages"
show conclave --profile alice invite --org acme --conversation "$CONV" --member "$BOT_USER"
show conclave --profile alice send --org acme --conversation "$CONV" "/remind 3s stretch your legs"
sleep 6
show conclave --profile bob history --org acme --conversation "$CONV"

step "done in $((SECONDS - started))s; the system keeps running"
cat <<EOF

  Keep talking (in another terminal):
    export CONCLAVE_HOME='$STATE/people' CONCLAVE_SERVER='$CONCLAVE_SERVER' CONCLAVE_PASSWORD='$PASSWORD'
    $BIN/conclave --profile bob listen --org acme
    $BIN/conclave --profile alice send --org acme --conversation $CONV "another message"

  Look at the cluster:
    export KUBECONFIG='$KUBECONFIG' PATH='$TOOLS':\$PATH
    kubectl -n $NS get conclave
    kubectl -n $NS get pods,deploy,svc,hpa,pdb,cm,secrets
    kubectl explain organization.spec

  Stop: Ctrl-C here (the node with its pods, kube-apiserver, etcd; this run's database is dropped).
        scripts/stack.sh down stops PostgreSQL and Redis.
EOF
if [ -n "${CONCLAVE_DEMO_NO_WAIT:-}" ]; then exit 0; fi
wait "$local_pid"
