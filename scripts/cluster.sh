#!/usr/bin/env bash
# A real Kubernetes cluster on this machine, built from the Go module proxy (facts in
# ../shared/REAL-CLUSTER.md): etcd, kube-apiserver, kube-controller-manager and kube-scheduler in
# the network namespace dvt-cp; one network namespace per node (dvt-n1 ...) with its own
# containerd, kubelet and kube-proxy; a bridge in dvt-net joining them; CoreDNS, the
# local-path provisioner and an expandable StorageClass as add-ons. The root namespace keeps
# only loopback: a forwarder on 127.0.0.1:6443 reaches the apiserver.
#
#   scripts/cluster.sh up [--k8s VERSION] [--nodes N]   builds (cached), starts, prints the kubeconfig path last
#   scripts/cluster.sh down                            stops everything in order, leaves nothing behind
#   scripts/cluster.sh load                            builds the images and imports them into every node
#   scripts/cluster.sh kubelet stop|start NODE         a node failure: its kubelet stops (pods keep running)
#   scripts/cluster.sh node poweroff|poweron NODE      a power cut: its containers die, its kubelet stops
#   scripts/cluster.sh container kill NODE ID          SIGKILL to one container (ID from the pod's status)
#   scripts/cluster.sh status                          what runs
#
# State lives in $DVT_CLUSTER_DIR (default /var/lib/dvt-cluster): one cluster per machine, since
# network namespace names are global. Needs root (namespaces, mounts).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
export root
# shellcheck source=scripts/cluster/lib.sh
source "$here/cluster/lib.sh"

usage() { sed -n '9,16p' "$0" >&2; exit 2; }

command=${1:-}; shift || true
case $command in
  up)
    version=$DEFAULT_K8S_VERSION; nodes=8
    while [ $# -gt 0 ]; do
      case $1 in
        --k8s) version=$2; shift 2 ;;
        --nodes) nodes=$2; shift 2 ;;
        *) usage ;;
      esac
    done
    cluster_up "$version" "$nodes" ;;
  down) cluster_down ;;
  load) cluster_load ;;
  kubelet)
    [ $# -eq 2 ] || usage
    case $1 in stop) kubelet_stop "$2" ;; start) kubelet_start "$2" ;; *) usage ;; esac ;;
  node)
    [ $# -eq 2 ] || usage
    case $1 in poweroff) node_poweroff "$2" ;; poweron) node_poweron "$2" ;; *) usage ;; esac ;;
  container)
    [ $# -eq 3 ] && [ "$1" = kill ] || usage
    container_kill "$2" "$3" ;;
  status) cluster_status ;;
  *) usage ;;
esac
