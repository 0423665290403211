#!/usr/bin/env bash
# The Debian packages the end-to-end node needs (e2e/src/node.rs): containerd, runc, the CNI
# plugins, iptables, nsenter, ip, and a C compiler for the pod sandbox image. Installs those
# missing with apt-get, then prints the containerd and runc versions. scripts/test.sh and
# scripts/demo.sh both run it.
set -euo pipefail
node_pkgs=()
command -v containerd >/dev/null || node_pkgs+=(containerd)
command -v runc >/dev/null || node_pkgs+=(runc)
[ -x /usr/lib/cni/bridge ] || node_pkgs+=(containernetworking-plugins)
command -v iptables >/dev/null || node_pkgs+=(iptables)
command -v nsenter >/dev/null || node_pkgs+=(util-linux)
command -v ip >/dev/null || node_pkgs+=(iproute2)
command -v cc >/dev/null || node_pkgs+=(gcc libc6-dev)
if [ ${#node_pkgs[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${node_pkgs[@]}" >/dev/null
fi
echo "containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1 {print $3}')"
