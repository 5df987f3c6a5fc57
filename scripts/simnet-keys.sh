#!/usr/bin/env bash
# Makes a test-network DV with real key material: the pinned Charon creates a real cluster lock,
# ENR keys and key shares (`charon create cluster --insecure-keys`, a test network's shortcut:
# the keystores' encryption is weak on purpose), and this writes them as the ConfigMap and
# Secrets a DistributedValidator references, followed by the DV itself in test-network mode
# (Charon's mock beacon node and validator mock; relay: examples/simnet/relay.yaml).
# Never use such keys on mainnet: the DV refuses a mainnet lock in test-network mode anyway.
#
# usage: scripts/simnet-keys.sh NAME N T > examples/simnet/NAME.yaml
# Members are named alpha, bravo, ...; their operator classes follow Stader's shape (4 members:
# 2 permissioned + 2 permissionless; 7: 3 + 4; otherwise half and half).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=${1:?usage: simnet-keys.sh NAME N T}; nodes=${2:?usage}; threshold=${3:?usage}
[[ $name =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || { echo "simnet-keys: NAME must be a DNS label" >&2; exit 2; }
charon=$("$here/cluster/build.sh" charon v1.10.3)/charon
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# Test addresses (the "dead" address): a test network pays no one.
"$charon" create cluster --name="$name" --nodes="$nodes" --threshold="$threshold" --num-validators=1 \
  --network=hoodi --insecure-keys \
  --fee-recipient-addresses=0x000000000000000000000000000000000000dEaD \
  --withdrawal-addresses=0x000000000000000000000000000000000000dEaD \
  --cluster-dir="$work/cluster" > "$work/create.log" 2>&1 \
  || { cat "$work/create.log" >&2; exit 1; }
python3 - "$work/cluster" "$name" "$nodes" "$threshold" <<'PY'
import glob, json, os, sys

cluster, name, nodes, threshold = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
permissioned = {4: 2, 7: 3}.get(nodes, nodes // 2)
# Clients whose pods start on the local cluster: Prysm's image there is the real validator
# client (its wallet and key import run for real); Lighthouse, Teku and Lodestar are stand-ins
# that accept the operator's command lines. Nimbus's import step checks what the real client
# wrote, which a stand-in does not write.
clients = ["lighthouse", "teku", "lodestar", "prysm"]


def block(text, indent):
    return "\n".join(" " * indent + line for line in text.splitlines())


def doc(text):
    print("---")
    print(text.rstrip())


print(f"# A test-network DV of {nodes} members at threshold {threshold}: made by")
print(f"#   scripts/simnet-keys.sh {name} {nodes} {threshold}")
print("# with Charon v1.10.3 (`charon create cluster --insecure-keys --network=hoodi`): a real lock,")
print("# real ENR keys and key shares, insecure by design. For test networks only; needs the relay")
print("# in relay.yaml beside this file.")
lock = open(f"{cluster}/node0/cluster-lock.json").read()
doc(f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}-lock
  labels: {{app.kubernetes.io/part-of: {name}}}
data:
  cluster-lock.json: |
{block(lock, 4)}""")
members = []
for i in range(nodes):
    member = names[i]
    node = f"{cluster}/node{i}"
    keystores = {}
    for path in sorted(glob.glob(f"{node}/validator_keys/keystore-*.json")):
        # keystore-insecure-N.json -> keystore-N.json (the name the clients' import steps read)
        index = os.path.basename(path).removesuffix(".json").split("-")[-1]
        keystores[f"keystore-{index}.json"] = open(path).read().strip()
        keystores[f"keystore-{index}.txt"] = open(path.removesuffix(".json") + ".txt").read().strip()
    data = "\n".join(f"  {key}: {json.dumps(value)}" for key, value in sorted(keystores.items()))
    doc(f"""apiVersion: v1
kind: Secret
metadata:
  name: {name}-{member}-keystore
  labels: {{app.kubernetes.io/part-of: {name}}}
type: Opaque
stringData:
{data}""")
    enr = open(f"{node}/charon-enr-private-key").read().strip()
    doc(f"""apiVersion: v1
kind: Secret
metadata:
  name: {name}-{member}-enr
  labels: {{app.kubernetes.io/part-of: {name}}}
type: Opaque
stringData:
  charon-enr-private-key: {enr}""")
    klass = "permissioned" if i < permissioned else "permissionless"
    members.append(f"""    - name: {member}
      index: {i}
      validatorClient: {clients[i % len(clients)]}
      operator: {{name: {klass}-{i}, class: {klass}}}
      keyShareSecret: {{name: {name}-{member}-keystore}}
      enrSecret: {{name: {name}-{member}-enr}}""")
members_text = "\n".join(members)
doc(f"""apiVersion: dvt.io/v1alpha1
kind: DistributedValidator
metadata:
  name: {name}
spec:
  network: hoodi
  clusterLock:
    configMap: {{name: {name}-lock}}
  testNetwork:
    slotSeconds: 2
  charon:
    relays: ["http://charon-relay:3640"]
  members:
{members_text}""")
PY
