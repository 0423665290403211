#!/usr/bin/env bash
# Builds Conclave's container images on this machine without a daemon (no Docker engine here):
# conclave-operator and conclave-dataplane, the same contents, user and labels as
# images/<program>/Containerfile gives with Docker, Podman or Buildah (docs/images.md).
#
#   scripts/images.sh [build]       build the images; print the directory holding the archives
#   scripts/images.sh import        build, then import them into a containerd
#   scripts/images.sh load          import the images built earlier (builds them when missing)
#   scripts/images.sh dir           print that directory without building anything
#
# Each image is the release binary (cargo, from this workspace), the shared libraries `ldd`
# lists for it (Debian 12's glibc and libgcc_s: the same as distroless cc-debian12), CA
# certificates, /etc/passwd and /etc/group with a `nonroot` user (65532), and nothing else: no
# shell, no package manager. It is assembled with umoci into an OCI layout, then written as an
# OCI archive with skopeo:
#   $CARGO_TARGET_DIR/images/<tag>/conclave-<program>.tar      (one image each)
#   $CARGO_TARGET_DIR/images/<tag>/oci/                        (the OCI layout, every image)
# A third image, localhost/conclave-pause:<tag> (images/pause/pause.c, static), is the pod sandbox
# of the end-to-end suite's node: nothing can be pulled there, so containerd's sandbox_image is
# this local one. It is not published.
#
# Settings (environment):
#   CONCLAVE_IMAGE_REGISTRY   repository prefix (default ghcr.io/conclave, the chart's default)
#   CONCLAVE_IMAGE_TAG        tag (default: the chart's appVersion, which is also the crates' version)
#   CONCLAVE_IMAGE_PROFILE    cargo profile of the binaries (default release)
#   CONTAINERD_ADDRESS        containerd socket for `import` (default /run/containerd/containerd.sock)
#   CONTAINERD_NAMESPACE      containerd namespace for `import` (default conclave; Kubernetes' is k8s.io)
# Debian packages it needs (umoci, skopeo; containerd for `ctr` on import) are installed with
# apt-get when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\033[1;36m[images]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[images] error:\033[0m %s\n' "$*" >&2; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conclave/target}"
REGISTRY="${CONCLAVE_IMAGE_REGISTRY:-ghcr.io/conclave}"
APP_VERSION="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/conclave/Chart.yaml)"
[ -n "$APP_VERSION" ] || die "no appVersion in charts/conclave/Chart.yaml"
TAG="${CONCLAVE_IMAGE_TAG:-$APP_VERSION}"
PROFILE="${CONCLAVE_IMAGE_PROFILE:-release}"
OUT="$CARGO_TARGET_DIR/images/$TAG"
PROGRAMS=(operator dataplane)

# Installs the Debian packages that provide the given commands, when one is missing.
need() {
    local missing=() cmd pkg
    for cmd in "$@"; do
        pkg="${cmd%%:*}"; cmd="${cmd#*:}"
        command -v "$cmd" >/dev/null || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]} (Debian packages)"
    command -v apt-get >/dev/null || die "need ${missing[*]}: install them with your package manager"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
        || { $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; } \
        || die "could not install ${missing[*]}"
}

build_one() {
    local prog="$1" bin="conclave-$1" revision="$2" created="$3"
    local name="$REGISTRY/conclave-$prog:$TAG" rootfs="$OUT/rootfs-$prog" dir binary
    case "$PROFILE" in dev) dir=debug ;; *) dir="$PROFILE" ;; esac
    binary="$CARGO_TARGET_DIR/$dir/$bin"
    if [ "$prog" = pause ]; then
        name="localhost/conclave-pause:$TAG"
        binary="$OUT/conclave-pause.bin"
        cc -static -Os -Wall -Wextra -Werror -o "$binary" images/pause/pause.c || die "compiling images/pause/pause.c failed"
    fi
    [ -x "$binary" ] || die "$binary was not built"

    rm -rf "$rootfs"
    mkdir -p "$rootfs"/{usr/local/bin,etc/ssl/certs,tmp,home/nonroot}
    chmod 1777 "$rootfs/tmp"
    chown 65532:65532 "$rootfs/home/nonroot"
    install -m 0755 "$binary" "$rootfs/usr/local/bin/$bin"
    strip --strip-all "$rootfs/usr/local/bin/$bin"
    # The shared libraries the binary loads, and the loader itself, at the paths it looks them up.
    local lib
    ! ldd "$binary" 2>/dev/null | grep 'not found' >&2 || die "$bin needs a library this machine lacks"
    while read -r lib; do
        [ -n "$lib" ] || continue
        mkdir -p "$rootfs$(dirname "$lib")"
        cp -L "$lib" "$rootfs$lib"
    done < <(ldd "$binary" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }')
    cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
    printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"

    # The images stay small: a size over the limit (50 MiB unpacked) fails the build.
    local unpacked_kib
    unpacked_kib="$(du -sk "$rootfs" | cut -f1)"
    [ "$unpacked_kib" -le $((50 * 1024)) ] || die "$name would be $unpacked_kib KiB unpacked, over the 50 MiB limit"

    local image="$OUT/oci:$prog"
    umoci new --image "$image"
    umoci insert --image "$image" --history.created_by "scripts/images.sh" "$rootfs" /
    local ports=(--config.exposedports 8080/tcp)
    [ "$prog" = operator ] && ports=(--config.exposedports 8081/tcp)
    [ "$prog" = pause ] && ports=()
    local labels=(
        "org.opencontainers.image.title=$bin"
        "org.opencontainers.image.source=https://github.com/conclave/conclave"
        "org.opencontainers.image.licenses=Apache-2.0"
        "org.opencontainers.image.version=$TAG"
        "org.opencontainers.image.revision=$revision"
        "org.opencontainers.image.created=$created"
    )
    local args=() l
    for l in "${labels[@]}"; do args+=(--config.label "$l" --manifest.annotation "$l"); done
    umoci config --image "$image" --no-history --os linux --architecture amd64 \
        --created "$created" --author "Conclave" \
        --config.user 65532:65532 --config.workingdir /home/nonroot \
        --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        --config.entrypoint "/usr/local/bin/$bin" "${ports[@]}" \
        "${args[@]}"
    umoci gc --layout "$OUT/oci"
    rm -f "$OUT/$bin.tar"
    skopeo copy --quiet "oci:$OUT/oci:$prog" "oci-archive:$OUT/$bin.tar:$name"
    rm -rf "$rootfs"
    [ "$prog" = pause ] && rm -f "$binary"
    say "  $name: $unpacked_kib KiB unpacked, $(du -k "$OUT/$bin.tar" | cut -f1) KiB compressed ($OUT/$bin.tar)"
}

build() {
    need umoci:umoci skopeo:skopeo binutils:strip ca-certificates:update-ca-certificates gcc:cc
    [ -f /etc/ssl/certs/ca-certificates.crt ] || die "/etc/ssl/certs/ca-certificates.crt is missing"
    local started=$SECONDS profile_flag=(--profile "$PROFILE")
    say "building conclave-operator and conclave-dataplane ($PROFILE) with cargo"
    cargo build --locked "${profile_flag[@]}" -p conclave-operator -p conclave-dataplane \
        --bin conclave-operator --bin conclave-dataplane >&2
    say "binaries ready ($((SECONDS - started))s); assembling the images with umoci"
    local revision created
    revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
    git diff --quiet HEAD 2>/dev/null || revision="$revision-dirty"
    created="$(date -u -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)" +%Y-%m-%dT%H:%M:%SZ)"
    mkdir -p "$OUT"
    # Two builds at once (a test run and the demo) take turns on the same directory.
    exec 8>"$OUT/.lock"
    flock 8
    rm -rf "$OUT/oci"
    umoci init --layout "$OUT/oci"
    local p
    for p in "${PROGRAMS[@]}" pause; do build_one "$p" "$revision" "$created"; done
    say "images built in $((SECONDS - started))s"
    exec 8>&-
}

import() {
    need containerd:ctr
    local address="${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}" ns="${CONTAINERD_NAMESPACE:-conclave}" p
    [ -S "$address" ] || die "no containerd socket at $address (set CONTAINERD_ADDRESS)"
    for p in "${PROGRAMS[@]}" pause; do
        ctr --address "$address" -n "$ns" images import "$OUT/conclave-$p.tar" >&2 \
            || die "importing conclave-$p into containerd ($address, namespace $ns) failed"
        say "  imported conclave-$p:$TAG into containerd ($address, namespace $ns)"
    done
}

case "${1:-build}" in
    dir) echo "$OUT" ;;
    build) build; echo "$OUT" ;;
    import) build; import; echo "$OUT" ;;
    load)
        for p in "${PROGRAMS[@]}" pause; do [ -f "$OUT/conclave-$p.tar" ] || { build; break; }; done
        import; echo "$OUT" ;;
    *) die "unknown command '$1' (use build, import, load or dir)" ;;
esac
