#!/usr/bin/env bash
# End-to-end on kind, for machines with Docker (the development machines here have none; the same
# scenarios run on the simulated cluster in `cargo test`: tests/e2e.rs, tests/quorum.rs).
#
#   e2e/kind.sh up        create the cluster, build and load the image, install the chart
#   e2e/kind.sh scenario  apply the 4-member example and check what the operator builds
#   e2e/kind.sh down      delete the cluster
#
# What this can and cannot show: the operator's objects, placement, status and events are real.
# Charon needs beacon nodes and the real DKG keys of the example's lock to become Ready, and the
# example keystores carry public keys only, so member pods will not turn Ready here: the scenario
# checks the objects and the reported state, not signing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cluster=${CLUSTER:-dvt-e2e}
image=${IMAGE:-dvt-operator:e2e}
tools=$("$root/scripts/install-tools.sh")
export PATH="$PATH:$tools"

case "${1:-}" in
up)
  kind create cluster --name "$cluster" --config "$root/e2e/kind-config.yaml"
  docker build -t "$image" "$root"
  kind load docker-image "$image" --name "$cluster"
  helm upgrade --install dvt-operator "$root/charts/dvt-operator" --namespace dvt-system --create-namespace \
    --set image.repository="${image%:*}" --set image.tag="${image#*:}" --set image.pullPolicy=Never --wait
  ;;
scenario)
  kubectl apply -f "$root/examples/stader-4.yaml"
  echo "waiting for the operator to build stader-4..."
  for _ in $(seq 60); do
    count=$(kubectl get statefulsets -l dvt.io/distributed-validator=stader-4 -o name | wc -l)
    [ "$count" -eq 4 ] && break
    sleep 2
  done
  [ "$(kubectl get statefulsets -l dvt.io/distributed-validator=stader-4 -o name | wc -l)" -eq 4 ]
  kubectl get pdb stader-4 -o jsonpath='{.spec.minAvailable}' | grep -qx 3
  kubectl get dv stader-4
  # Each member is pinned to its own zone.
  zones=$(kubectl get dv stader-4 -o jsonpath='{range .status.members[*]}{.zone}{"\n"}{end}' | sort -u | wc -l)
  [ "$zones" -eq 4 ]
  kubectl get dv stader-4 -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}{"\n"}{end}'
  echo "scenario passed: 4 StatefulSets, PDB minAvailable 3, one member per zone"
  ;;
down)
  kind delete cluster --name "$cluster"
  ;;
*)
  echo "usage: $0 up|scenario|down" >&2
  exit 2
  ;;
esac
