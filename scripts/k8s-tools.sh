#!/usr/bin/env bash
# The Kubernetes parts the end-to-end suite and the demo run: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, CoreDNS, kubectl and helm, built once from their official Go modules with this machine's Go toolchain
# (there is no Docker engine here and Kubernetes release binaries cannot be downloaded; the Go
# module proxy can be reached).
#
#   scripts/k8s-tools.sh          build what is missing, then print the directory holding them
#   scripts/k8s-tools.sh dir      print that directory without building anything
#   scripts/k8s-tools.sh check    exit 0 when every tool is already built
#
# With KUBEBUILDER_ASSETS set (the envtest convention) nothing is built: that directory is used
# for kube-apiserver, etcd and kubectl; the node's binaries, CoreDNS and helm are still built here.
#
# Binaries are cached outside the repository, keyed by version:
#   ${CONCLAVE_CACHE:-$HOME/.cache/conclave}/k8s/<kubernetes version>/{kube-apiserver,kubectl,etcd,helm,
#       kube-controller-manager,kube-scheduler,kubelet,kube-proxy,coredns}
# so the first run takes 20-40 minutes on two cores (docs/e2e.md has the measured figures) and
# every later run takes none. Progress
# goes to stderr; the only thing on stdout is the directory.
#
# kube-apiserver cannot be `go install`ed: k8s.io/kubernetes requires its staging modules
# (k8s.io/api, k8s.io/apiserver...) at v0.0.0 and replaces them with ./staging paths. A small
# generated module requires k8s.io/kubernetes and replaces each staging module with the
# matching published v0.X.Y instead. etcd's server module has replace directives too, so it gets
# the same treatment; helm installs directly.
set -euo pipefail

K8S_VERSION="${CONCLAVE_K8S_VERSION:-1.34.4}"   # k8s-openapi 0.29 with feature v1_34
ETCD_VERSION="${CONCLAVE_ETCD_VERSION:-3.6.16}" # at least 3.5.21
HELM_VERSION="${CONCLAVE_HELM_VERSION:-3.19.5}"
COREDNS_VERSION="${CONCLAVE_COREDNS_VERSION:-1.12.4}"
CACHE="${CONCLAVE_CACHE:-$HOME/.cache/conclave}"
OUT="$CACHE/k8s/$K8S_VERSION"
# Built from the generated k8s.io/kubernetes module, each stamped with the version.
K8S_BINS=(kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)
TOOLS=("${K8S_BINS[@]}" etcd helm coredns)

say() { printf '\033[1;36m[k8s-tools]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[k8s-tools] error:\033[0m %s\n' "$*" >&2; exit 1; }

have_all() {
    local t
    for t in "${TOOLS[@]}"; do [ -x "$(tool_path "$t")" ] || return 1; done
    # Built by an earlier version of this script without the version stamp: rebuild (a relink).
    [ -n "${KUBEBUILDER_ASSETS:-}" ] || "$OUT/kube-apiserver" --version 2>/dev/null | grep -q "v$K8S_VERSION" || return 1
    k8s_missing >/dev/null && return 1
    coredns_ok && helm_ok
}
# The binaries of the k8s.io/kubernetes module still to build (each missing one on a line).
k8s_missing() {
    local t any=1
    for t in "${K8S_BINS[@]}"; do
        if [ -n "${KUBEBUILDER_ASSETS:-}" ] && { [ "$t" = kube-apiserver ] || [ "$t" = kubectl ]; }; then continue; fi
        [ -x "$OUT/$t" ] || { echo "$t"; any=0; }
    done
    return $any
}
# (Read whole: `grep -q` closing the pipe early would fail the pipeline under pipefail.)
coredns_ok() { [[ "$("$OUT/coredns" -version 2>/dev/null)" == *"CoreDNS-$COREDNS_VERSION"* ]]; }
helm_ok() { [ "$("$OUT/helm" version --template '{{.Version}}' 2>/dev/null)" = "v$HELM_VERSION" ]; }
tool_path() {
    if [ -n "${KUBEBUILDER_ASSETS:-}" ] && { [ "$1" = kube-apiserver ] || [ "$1" = kubectl ] || [ "$1" = etcd ]; }; then echo "$KUBEBUILDER_ASSETS/$1"; else echo "$OUT/$1"; fi
}

case "${1:-build}" in
    dir) echo "$OUT"; exit 0 ;;
    check) have_all; exit $? ;;
    build) ;;
    *) die "unknown command '$1' (use build, dir or check)" ;;
esac

if have_all; then echo "$OUT"; exit 0; fi

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$GO" ] || die "the Go toolchain is needed once to build the Kubernetes binaries, etcd, CoreDNS and helm (install Go >= 1.24)"
mkdir -p "$OUT"
WORK="$CACHE/k8s/build-$K8S_VERSION"
mkdir -p "$WORK"
LOCK="$WORK/.lock"
# Two concurrent callers (the test script and the demo) wait for each other instead of racing.
exec 9>"$LOCK"
if ! flock -n 9; then say "another build is running; waiting for it"; flock 9; fi
if have_all; then echo "$OUT"; exit 0; fi

export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
export GOMAXPROCS="${GOMAXPROCS:-$(nproc)}"
BUILD=(-p "$GOMAXPROCS" -trimpath -ldflags=-s\ -w)
started=$SECONDS
elapsed() { printf '%dm%02ds' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)); }

# A `go build` that prints a line every 30 s, so a long silent compile does not look stuck.
build_with_progress() {
    local what="$1"; shift
    ("$GO" "$@") &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 30 & wait $! 2>/dev/null || true
        kill -0 "$pid" 2>/dev/null && say "  still building $what ($(elapsed) so far)"
    done
    wait "$pid" || die "building $what failed"
}

say "building Kubernetes tools into $OUT (first run only; 20-40 minutes on two cores)"

# An apiserver built without the version stamp is rebuilt.
if [ -z "${KUBEBUILDER_ASSETS:-}" ] && ! "$OUT/kube-apiserver" --version 2>/dev/null | grep -q "v$K8S_VERSION"; then
    rm -f "$OUT/kube-apiserver"
fi
missing="$(k8s_missing || true)"
if [ -n "$missing" ]; then
    mod="$WORK/kubernetes"
    mkdir -p "$mod"
    say "[1/4] $(echo $missing | tr ' ' ',') $K8S_VERSION: resolving k8s.io/kubernetes@v$K8S_VERSION"
    gomod="$(cd "$mod" && "$GO" mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@v$K8S_VERSION from the Go module proxy"
    staging_version="v0.${K8S_VERSION#1.}"
    {
        echo "// Generated by scripts/k8s-tools.sh: builds kube-apiserver and kubectl from k8s.io/kubernetes."
        echo "module conclave.local/k8s-tools"
        echo
        echo "go 1.24.0"
        echo
        echo "require k8s.io/kubernetes v$K8S_VERSION"
        echo
        echo "replace ("
        sed -n 's|^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*|\1|p' "$gomod" |
            while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"; done
        echo ")"
    } >"$mod/go.mod"
    {
        printf 'package tools\n\nimport (\n'
        for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
            printf '\t_ "k8s.io/kubernetes/cmd/%s/app"\n' "$c"
        done
        printf '\t_ "k8s.io/kubectl/pkg/cmd"\n)\n'
    } >"$mod/tools.go"
    say "  downloading modules"
    (cd "$mod" && "$GO" mod tidy >/dev/null 2>"$WORK/tidy.log") || { cat "$WORK/tidy.log" >&2; die "go mod tidy failed"; }
    # The version the binaries report (/version, `kubectl version`), as Kubernetes' own build
    # stamps it; Helm checks a chart's kubeVersion against it.
    stamp=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        stamp+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
        stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    K8S_BUILD=(-p "$GOMAXPROCS" -trimpath "-ldflags=-s -w$stamp")
    for t in $missing; do
        say "  compiling $t ($(elapsed) so far)"
        (cd "$mod" && build_with_progress "$t" build "${K8S_BUILD[@]}" -o "$OUT/$t.tmp" "k8s.io/kubernetes/cmd/$t")
        mv "$OUT/$t.tmp" "$OUT/$t"
        say "  $t built ($(elapsed))"
    done
fi

if [ -z "${KUBEBUILDER_ASSETS:-}" ] && [ ! -x "$OUT/etcd" ]; then
    mod="$WORK/etcd"
    mkdir -p "$mod"
    say "[2/4] etcd $ETCD_VERSION"
    printf '// Generated by scripts/k8s-tools.sh: builds etcd from its server module.\nmodule conclave.local/etcd-tools\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' "$ETCD_VERSION" >"$mod/go.mod"
    printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3/etcdmain"\n' >"$mod/tools.go"
    (cd "$mod" && "$GO" mod tidy >/dev/null 2>"$WORK/tidy-etcd.log") || { cat "$WORK/tidy-etcd.log" >&2; die "go mod tidy failed for etcd"; }
    (cd "$mod" && build_with_progress etcd build "${BUILD[@]}" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3)
    mv "$OUT/etcd.tmp" "$OUT/etcd"
    say "  etcd built ($(elapsed))"
fi

if ! helm_ok; then
    say "[3/4] helm $HELM_VERSION"
    gobin="$WORK/helm-bin"
    mkdir -p "$gobin"
    # helm's version, and the Kubernetes version `helm template` and `helm lint` assume without a
    # cluster (checked against a chart's kubeVersion), stamped as helm's Makefile does.
    minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
    hflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
    for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        hflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
    done
    (cd "$WORK" && GOBIN="$gobin" build_with_progress helm install -p "$GOMAXPROCS" -trimpath "-ldflags=$hflags" \
        "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION")
    mv "$gobin/helm" "$OUT/helm"
    say "  helm built ($(elapsed))"
fi

if ! coredns_ok; then
    say "[4/4] CoreDNS $COREDNS_VERSION (cluster DNS of the end-to-end node)"
    gobin="$WORK/coredns-bin"
    mkdir -p "$gobin"
    (cd "$WORK" && GOBIN="$gobin" build_with_progress coredns install "${BUILD[@]}" \
        "github.com/coredns/coredns@v$COREDNS_VERSION")
    mv "$gobin/coredns" "$OUT/coredns"
    say "  CoreDNS built ($(elapsed))"
fi

have_all || die "some tools are still missing from $OUT"
say "control-plane tools ready in $OUT ($(elapsed))"
echo "$OUT"
