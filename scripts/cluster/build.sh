#!/usr/bin/env bash
# Builds the real cluster's Go programs once per pinned version and caches them; prints the bin dir.
#   build.sh kubernetes v1.37.2   -> etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
#   build.sh charon v1.10.3       -> charon (cgo: links libc, for the BLS library)
#   build.sh coredns v1.15.0      -> coredns
#   build.sh local-path v0.0.30   -> local-path-provisioner
#   build.sh prysm v6.1.4         -> validator (Prysm's validator client; cgo, for BLS)
# Every one builds from a wrapper module committed in modules/ (its go.sum pins the sources); the
# binaries land in $DVT_CACHE/bin/NAME-VERSION and a stamp file marks a finished build, so a warm
# run does nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${DVT_CACHE:-$root/.cache}
name=${1:?usage: build.sh NAME VERSION}; version=${2:?usage: build.sh NAME VERSION}
module=$here/modules/$name-$version
out=$cache/bin/$name-$version
[ -d "$module" ] || { echo "build.sh: no wrapper module $module" >&2; exit 2; }
if [ -f "$out/.built" ]; then echo "$out"; exit 0; fi
mkdir -p "$out"
log() { echo "build.sh: $*" >&2; }
build() { # package output [cgo]
  local start=$SECONDS
  log "building $2 ($1)"
  (cd "$module" && CGO_ENABLED=${3:-0} go build -trimpath -ldflags "$ldflags" -o "$out/$2" "$1") >&2
  log "built $2 in $((SECONDS - start)) s"
}
case $name in
  kubernetes)
    minor=${version#v1.}; minor=${minor%%.*}
    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    build go.etcd.io/etcd/server/v3 etcd
    for c in kube-scheduler kube-proxy kubelet kube-controller-manager kube-apiserver; do
      build "k8s.io/kubernetes/cmd/$c" "$c"
    done ;;
  charon)
    # As Charon's own Dockerfile at the tag: a plain `go build` (no version ldflags; it prints
    # its minor, app/version/version.go), cgo on for the BLS library.
    ldflags="-s -w"
    build github.com/obolnetwork/charon charon 1 ;;
  coredns) ldflags="-s -w"; build github.com/coredns/coredns coredns ;;
  local-path) ldflags="-s -w"; build github.com/rancher/local-path-provisioner local-path-provisioner ;;
  prysm)
    # Prysm builds its release binaries with Bazel, which stamps the version through x_defs
    # (runtime/version); a plain `go build` of the same package reports "Prysm/Unknown/Local
    # build" and is otherwise the same program. cgo on: the BLS library (supranational/blst).
    ldflags="-s -w"
    build github.com/OffchainLabs/prysm/v6/cmd/validator validator 1 ;;
  *) echo "build.sh: unknown program $name" >&2; exit 2 ;;
esac
touch "$out/.built"
echo "$out"
