#!/usr/bin/env python3
"""Makes a container image without a daemon or a registry: one layer, written as a docker-archive
tarball that `ctr images import` takes (REAL-CLUSTER.md, "Images without a registry").

usage: mkimage.py OUT.tar --ref NAME:TAG [--ref ...] --entrypoint WORD [--entrypoint ...]
                  [--user UID] [--env KEY=VALUE ...] ITEM...
ITEM is one of
  file:SRC:DEST[:MODE]   a file (symlinks followed: the image gets the content)
  elf:SRC:DEST           a dynamically linked program and every shared library `ldd` names,
                         at the same paths (the loader too; Debian's is a symlink, and without
                         the real file the program fails with "no such file or directory")
  busybox:DIR            /bin/busybox and a link in DIR for each of its applets (sh, cat, ...)
  dir:DEST[:MODE]        an empty directory

The output is deterministic (sorted entries, fixed times and owners): the same inputs give the
same image ID, so importing an unchanged image again changes nothing.
"""

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile


class Layer:
    """The files of one layer, by absolute path in the image."""

    def __init__(self):
        self.entries = {}  # path -> ("file", bytes, mode) | ("dir", mode) | ("link", target)

    def add_parents(self, path):
        parent = os.path.dirname(path)
        while parent not in ("", "/"):
            self.entries.setdefault(parent, ("dir", 0o755))
            parent = os.path.dirname(parent)

    def add_file(self, src, dest, mode=None):
        with open(src, "rb") as f:
            data = f.read()
        if mode is None:
            mode = os.stat(src).st_mode & 0o777
        self.add_parents(dest)
        self.entries[dest] = ("file", data, mode)

    def add_dir(self, dest, mode=0o755):
        self.add_parents(dest)
        self.entries[dest] = ("dir", mode)

    def add_link(self, dest, target):
        self.add_parents(dest)
        self.entries[dest] = ("link", target)

    def tar(self):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
            for path in sorted(self.entries):
                entry = self.entries[path]
                info = tarfile.TarInfo(path.lstrip("/"))
                info.mtime = 0
                info.uid = info.gid = 0
                if entry[0] == "file":
                    info.size = len(entry[1])
                    info.mode = entry[2]
                    t.addfile(info, io.BytesIO(entry[1]))
                elif entry[0] == "dir":
                    info.type = tarfile.DIRTYPE
                    info.mode = entry[1]
                    t.addfile(info)
                else:
                    info.type = tarfile.SYMTYPE
                    info.linkname = entry[1]
                    info.mode = 0o777
                    t.addfile(info)
        return out.getvalue()


def shared_libraries(program):
    """Absolute paths of the libraries (and the loader) `ldd` says PROGRAM loads."""
    result = subprocess.run(["ldd", program], capture_output=True, text=True)
    if "not a dynamic executable" in result.stdout + result.stderr:
        return []
    if result.returncode != 0:
        raise SystemExit(f"mkimage: ldd {program}: {result.stderr.strip()}")
    return re.findall(r"(/\S+) \(0x", result.stdout)


def add_item(layer, item):
    kind, _, rest = item.partition(":")
    parts = rest.split(":")
    if kind == "file" and len(parts) in (2, 3):
        layer.add_file(parts[0], parts[1], int(parts[2], 8) if len(parts) == 3 else None)
    elif kind == "elf" and len(parts) == 2:
        layer.add_file(parts[0], parts[1])
        for library in shared_libraries(parts[0]):
            layer.add_file(library, library)
    elif kind == "busybox" and len(parts) == 1:
        layer.add_file("/bin/busybox", "/bin/busybox", 0o755)
        applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True)
        for applet in applets.stdout.split():
            dest = os.path.join(parts[0], applet)
            if dest != "/bin/busybox":
                layer.add_link(dest, "/bin/busybox")
    elif kind == "dir" and len(parts) in (1, 2):
        layer.add_dir(parts[0], int(parts[1], 8) if len(parts) == 2 else 0o755)
    else:
        raise SystemExit(f"mkimage: bad item {item!r} (see usage)")


def docker_archive(layer_tar, refs, entrypoint, user, env):
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    config = {"Entrypoint": entrypoint, "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"] + env}
    if user:
        config["User"] = user
    image_config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": config,
         "rootfs": {"type": "layers", "diff_ids": [diff_id]}},
        sort_keys=True).encode()
    config_name = hashlib.sha256(image_config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": refs, "Layers": ["layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, data in [(config_name, image_config), ("layer.tar", layer_tar), ("manifest.json", manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--ref", action="append", required=True)
    parser.add_argument("--entrypoint", action="append", default=[])
    parser.add_argument("--user", default="")
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("items", nargs="+")
    args = parser.parse_args(argv)
    layer = Layer()
    layer.add_dir("/tmp", 0o1777)
    for item in args.items:
        add_item(layer, item)
    archive = docker_archive(layer.tar(), args.ref, args.entrypoint, args.user, args.env)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(archive)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
