#!/usr/bin/env bash
# Builds every image the real cluster runs, without a registry, into $DVT_CACHE/images/*.tar
# (docker-archive tarballs for `ctr images import`), under the exact names the operator, the
# chart and the add-ons use:
#   registry.k8s.io/pause:3.10                 Kubernetes' own pause.c (build/pause at the pinned release)
#   dvt.local/busybox:1.35                     Debian's static busybox (local-path helper pods)
#   registry.k8s.io/coredns/coredns:v1.15.0    real, from the Go module proxy
#   rancher/local-path-provisioner:v0.0.30     real, from the Go module proxy
#   obolnetwork/charon:v1.10.3                 real, from the Go module proxy
#   obolnetwork/charon:v1.9.0                  real, the release before: the upgrade scenario
#     (every flag the operator generates for v1.10.3 is one v1.9.0 has, cmd/run.go at both tags)
#   ghcr.io/dvt-operator/dvt-operator:local    this checkout's release binary (helm: --set image.tag=local)
#   gcr.io/offchainlabs/prysm/validator:v6.1.4  REAL: Prysm's validator from the Go module proxy
#   the other four validator clients' pinned images: STAND-INS (scripts/cluster/standin), not
#     the real clients: no registry reachable here ships them (npm serves no Lodestar whose
#     dependencies install beyond 1.5.1, scripts/lodestar/package.json). Each checks its command
#     line against the client's flag catalogue and stays up; it signs nothing (test-network DVs
#     sign with Charon's validator mock).
# usage: images.sh K8S_VERSION
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${DVT_CACHE:-$root/.cache}
version=${1:?usage: images.sh K8S_VERSION}
out=$cache/images
work=$cache/image-work
mkdir -p "$out" "$work"
mkimage() { python3 "$here/mkimage.py" "$@"; }
log() { echo "images: $*" >&2; }

# pause: as Kubernetes builds it (build/pause/Makefile: -Os -Wall -Werror -static).
pause_src=$(cd "$here/modules/kubernetes-$version" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
gcc -Os -Wall -Werror -static -DVERSION=v3.10-dvt -o "$work/pause" "$pause_src"
mkimage "$out/pause.tar" --ref registry.k8s.io/pause:3.10 --entrypoint /pause --user 65535 "file:$work/pause:/pause"

mkimage "$out/busybox.tar" --ref dvt.local/busybox:1.35 --entrypoint /bin/sh busybox:/bin

bin=$("$here/build.sh" coredns v1.15.0)
mkimage "$out/coredns.tar" --ref registry.k8s.io/coredns/coredns:v1.15.0 --entrypoint /coredns "elf:$bin/coredns:/coredns"

bin=$("$here/build.sh" local-path v0.0.30)
mkimage "$out/local-path.tar" --ref rancher/local-path-provisioner:v0.0.30 --entrypoint local-path-provisioner \
  "elf:$bin/local-path-provisioner:/usr/bin/local-path-provisioner"

# Charon: its Dockerfile's final stage is debian:trixie-slim with the binary at
# /usr/local/bin/charon, the user charon and the working directory /opt/charon; cgo links libc
# (elf: brings it). Busybox stands in for Debian's /bin/sh, which the operator's
# remove-old-enr-key-copy init step runs in the Charon image.
for charon in v1.10.3 v1.9.0; do
  bin=$("$here/build.sh" charon "$charon")
  mkimage "$out/charon-$charon.tar" --ref "obolnetwork/charon:$charon" --entrypoint /usr/local/bin/charon --user 1000 \
    "elf:$bin/charon:/usr/local/bin/charon" dir:/opt/charon:1777 busybox:/bin
done

# The operator: the chart's image name, from the release binary without the simulator (as the
# Dockerfile builds it), dynamically linked here (no musl target on these machines).
(cd "$root" && cargo build --release --locked --no-default-features --bin dvt-operator >&2)
mkimage "$out/dvt-operator.tar" --ref ghcr.io/dvt-operator/dvt-operator:local --entrypoint /dvt-operator \
  --user 65532 "elf:$root/target/release/dvt-operator:/dvt-operator"

# Prysm's validator image as prysm v6.1.4 tools/prysm_image.bzl and cmd/validator/BUILD.bazel
# make it: a Debian base with bash (also as /bin/sh) and coreutils and nothing else, the binary
# at /validator (and /app/cmd/validator/validator), root by default. Debian 12's bash and
# coreutils here stand in for the image's Debian 11 packages.
bin=$("$here/build.sh" prysm v6.1.4)
prysm_items=("elf:$bin/validator:/validator" "elf:$bin/validator:/app/cmd/validator/validator"
  "elf:/bin/bash:/bin/bash" "elf:/bin/bash:/bin/sh" dir:/tmp:1777)
while read -r tool; do
  prysm_items+=("elf:$tool:$tool")
done < <(dpkg -L coreutils | grep -E '^/(usr/)?bin/[^/]+$' | sort)
mkimage "$out/prysm.tar" --ref gcr.io/offchainlabs/prysm/validator:v6.1.4 --entrypoint /validator \
  "${prysm_items[@]}"

# Stand-ins for the other validator clients, at each client's executable path, with the catalogues
# the operator's flag-set test reads (src/controller/build/clients/flags) and busybox for the
# init steps' shell scripts.
(cd "$here/standin" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/standin" .)
flags=$root/src/controller/build/clients/flags
standin() { # TARBALL REF EXECUTABLE CATALOGUE...
  local tarball=$1 ref=$2 executable=$3; shift 3
  local items=("file:$work/standin:$executable:755" busybox:/bin)
  for catalogue in "$@"; do items+=("file:$flags/$catalogue.flags:/standin/$catalogue.flags:644"); done
  mkimage "$out/$tarball" --ref "$ref" --entrypoint "$executable" --user 1000 "${items[@]}"
}
standin lighthouse.tar sigp/lighthouse:v7.1.0 /usr/local/bin/lighthouse lighthouse-v5.3.0
standin teku.tar consensys/teku:25.9.3 /opt/teku/bin/teku teku-25.9.3
standin nimbus.tar statusim/nimbus-validator-client:multiarch-v25.9.2 /home/user/nimbus_validator_client nimbus-v24.9.0
standin nimbus-eth2.tar statusim/nimbus-eth2:multiarch-v25.9.2 /home/user/nimbus_beacon_node nimbus-v24.9.0
standin lodestar.tar chainsafe/lodestar:v1.35.0 /usr/local/bin/node lodestar-v1.30.0 lodestar-v1.44.0
log "$(find "$out" -name '*.tar' | wc -l) images in $out"
