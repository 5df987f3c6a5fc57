#!/usr/bin/env python3
"""Tests of mkimage.py: the archive `ctr images import` reads (manifest, config, layer), shared
libraries brought along with a program, busybox applets, and a deterministic output."""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
MKIMAGE = os.path.join(HERE, "mkimage.py")


def make(out, *args):
    subprocess.run([sys.executable, MKIMAGE, out, *args], check=True)


def read(path):
    with tarfile.open(path) as t:
        manifest = json.load(t.extractfile("manifest.json"))[0]
        config_bytes = t.extractfile(manifest["Config"]).read()
        layer_bytes = t.extractfile(manifest["Layers"][0]).read()
    layer = tarfile.open(fileobj=io.BytesIO(layer_bytes))
    return manifest, json.loads(config_bytes), layer_bytes, {m.name: m for m in layer.getmembers()}


class MkimageTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def test_an_image_names_its_refs_entrypoint_user_and_layer_digest(self):
        src = os.path.join(self.dir, "hello")
        with open(src, "w") as f:
            f.write("hi")
        out = os.path.join(self.dir, "image.tar")
        make(out, "--ref", "example/hello:1", "--ref", "example/hello:2", "--entrypoint", "/bin/hello",
             "--entrypoint", "run", "--user", "1000", f"file:{src}:/bin/hello:755", "dir:/data:1777")
        manifest, config, layer_bytes, members = read(out)
        self.assertEqual(manifest["RepoTags"], ["example/hello:1", "example/hello:2"])
        self.assertEqual(config["config"]["Entrypoint"], ["/bin/hello", "run"])
        self.assertEqual(config["config"]["User"], "1000")
        self.assertEqual(config["rootfs"]["diff_ids"], ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()])
        self.assertEqual(members["bin/hello"].mode, 0o755)
        self.assertTrue(members["bin"].isdir())
        self.assertEqual(members["data"].mode, 0o1777)
        self.assertEqual(members["tmp"].mode, 0o1777)

    def test_a_dynamic_program_brings_its_libraries_and_the_real_loader(self):
        out = os.path.join(self.dir, "sh.tar")
        make(out, "--ref", "example/sh:1", "--entrypoint", "/bin/bash", "elf:/bin/bash:/bin/bash")
        _, _, _, members = read(out)
        self.assertIn("lib64/ld-linux-x86-64.so.2", members)
        # The loader is a symlink on Debian: the image must hold the file itself.
        self.assertTrue(members["lib64/ld-linux-x86-64.so.2"].isfile())
        self.assertTrue(any(name.endswith("/libc.so.6") for name in members))

    def test_busybox_gives_a_shell(self):
        out = os.path.join(self.dir, "busybox.tar")
        make(out, "--ref", "example/busybox:1", "--entrypoint", "/bin/sh", "busybox:/bin")
        _, _, _, members = read(out)
        self.assertTrue(members["bin/sh"].issym())
        self.assertEqual(members["bin/sh"].linkname, "/bin/busybox")

    def test_the_same_inputs_give_the_same_archive(self):
        src = os.path.join(self.dir, "f")
        with open(src, "w") as f:
            f.write("x")
        first, second = os.path.join(self.dir, "1.tar"), os.path.join(self.dir, "2.tar")
        for out in (first, second):
            make(out, "--ref", "example/f:1", f"file:{src}:/f")
        with open(first, "rb") as a, open(second, "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_a_bad_item_is_refused(self):
        result = subprocess.run([sys.executable, MKIMAGE, os.path.join(self.dir, "x.tar"), "--ref", "x:1",
                                 "nonsense:/x"], capture_output=True, text=True)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("bad item", result.stderr)


if __name__ == "__main__":
    unittest.main()
