#!/usr/bin/env python3
"""The local cluster's volume resizer: ours, not Kubernetes' external-resizer (the CSI sidecars
are not served by the Go module proxy). It follows the external-resizer's protocol
(kubernetes-csi/external-resizer pkg/controller/controller.go: markPVCResizeInProgress,
then the volume's expansion and the PV's new capacity, then markPVCResizeFinished) for the
claims of expandable StorageClasses whose provisioner is rancher's local-path: a local-path
volume is a directory, so "expanding" it needs no work on the node, only the API's record.

For every bound claim of such a class whose requested storage exceeds its capacity:
  1. the claim's status says the resize is in progress (condition Resizing, allocatedResources
     the new size, allocatedResourceStatuses ControllerResizeInProgress);
  2. the PersistentVolume's capacity becomes the new size;
  3. the claim's status says it is done (capacity the new size, no Resizing condition, no
     allocatedResourceStatuses).

usage: resizer.py KUBECONFIG        (polls every 2 s; logs one line per resize)
"""

import json
import re
import subprocess
import sys
import time

PROVISIONER = "rancher.io/local-path"
UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
         "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity_bytes(text):
    """Bytes of a Kubernetes quantity ("5Gi", "1500M", "1e3"); ValueError when it is none."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(?:e([0-9]+))?([kMGTPE]i?|)", text.strip())
    if not match or (match.group(2) and match.group(3)):
        raise ValueError(f"not a quantity: {text!r}")
    number, exponent, unit = match.groups()
    value = float(number) * (10 ** int(exponent) if exponent else 1) * UNITS[unit]
    return int(value)


def needs_resize(claim, expandable_classes):
    """The new size when CLAIM is bound, of an expandable class, and asks for more than it has."""
    spec, status = claim.get("spec", {}), claim.get("status", {})
    if spec.get("storageClassName") not in expandable_classes or status.get("phase") != "Bound":
        return None
    requested = spec.get("resources", {}).get("requests", {}).get("storage")
    capacity = status.get("capacity", {}).get("storage")
    if not requested or not capacity or not spec.get("volumeName"):
        return None
    return requested if quantity_bytes(requested) > quantity_bytes(capacity) else None


def in_progress(size, now):
    return {"status": {
        "conditions": [{"type": "Resizing", "status": "True", "lastTransitionTime": now}],
        "allocatedResources": {"storage": size},
        "allocatedResourceStatuses": {"storage": "ControllerResizeInProgress"}}}


def finished(size):
    return {"status": {"capacity": {"storage": size}, "conditions": None, "allocatedResourceStatuses": None}}


class Kubectl:
    def __init__(self, kubeconfig):
        self.kubeconfig = kubeconfig

    def __call__(self, *args):
        result = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def patch(self, kind, name, body, namespace=None, subresource=None):
        args = ["patch", kind, name, "--type=merge", "-p", json.dumps(body)]
        if namespace:
            args += ["-n", namespace]
        if subresource:
            args += ["--subresource", subresource]
        self(*args)


def resize_once(kubectl):
    classes = json.loads(kubectl("get", "storageclass", "-o", "json"))["items"]
    expandable = {c["metadata"]["name"] for c in classes
                  if c.get("provisioner") == PROVISIONER and c.get("allowVolumeExpansion")}
    if not expandable:
        return
    claims = json.loads(kubectl("get", "pvc", "--all-namespaces", "-o", "json"))["items"]
    for claim in claims:
        size = needs_resize(claim, expandable)
        if not size:
            continue
        namespace, name = claim["metadata"]["namespace"], claim["metadata"]["name"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kubectl.patch("pvc", name, in_progress(size, now), namespace, "status")
        kubectl.patch("pv", claim["spec"]["volumeName"], {"spec": {"capacity": {"storage": size}}})
        kubectl.patch("pvc", name, finished(size), namespace, "status")
        print(f"resizer: {namespace}/{name} expanded to {size}", flush=True)


def main(argv):
    kubectl = Kubectl(argv[1])
    while True:
        try:
            resize_once(kubectl)
        except (RuntimeError, ValueError, json.JSONDecodeError) as error:
            print(f"resizer: {error}", file=sys.stderr, flush=True)
        time.sleep(2)


if __name__ == "__main__":
    main(sys.argv)
