#!/usr/bin/env python3
"""Reads the command-line flags of Charon and each validator client from the client's own source
and writes them as data for the flag-set test (src/controller/build/clients/flags/*.flags).

Each output file names the repository and tag it was read from; each flag line names the source
file and line that define it, so a reviewer can open the definition. Re-run this whenever a
pinned image is bumped, at the new tag, and review the diff.

usage: scripts/read-client-flags.py CLIENT SOURCE TAG OUT
  CLIENT  charon | teku | prysm | nimbus | lighthouse | lodestar
  SOURCE  a git directory of the client's repository (bare is fine), or for lodestar the
          unpacked npm package of @chainsafe/lodestar (its compiled CLI option definitions)
  TAG     the tag to read (for lodestar: the package version, for the header only)
"""

import os
import re
import subprocess
import sys


def git_show(repo, tag, path):
    return subprocess.run(
        ["git", "-C", repo, "show", f"{tag}:{path}"],
        check=True, capture_output=True, text=True,
    ).stdout


def lines_matching(text, pattern):
    """(line number, first group) for each match of a line-anchored pattern."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in re.finditer(pattern, line):
            found.append((number, match.group(1)))
    return found


def charon(repo, tag):
    flags = {}
    # `charon run` binds its flags in cmd/run.go and the monitoring flags in cmd/debug_tools.go.
    for path in ["cmd/run.go", "cmd/debug_tools.go"]:
        text = git_show(repo, tag, path)
        for number, name in lines_matching(text, r'(?:Flags\(\)|flags)\.\w+\([^,]+, "([a-z0-9-]+)"'):
            flags.setdefault(name, f"{path}:{number}")
    return {"run": flags}


TEKU_OPTIONS = "teku/src/main/java/tech/pegasys/teku/cli/options/"


def teku(repo, tag):
    # The mixins of `teku validator-client` (ValidatorClientCommand.java) and theirs
    # (ValidatorOptions mixes in the keys and proposer options; the data options extend
    # DataOptions).
    paths = [
        "teku/src/main/java/tech/pegasys/teku/cli/subcommand/ValidatorClientCommand.java",
    ] + [
        TEKU_OPTIONS + name + ".java"
        for name in [
            "ValidatorOptions", "ValidatorKeysOptions", "ValidatorProposerOptions",
            "ValidatorClientOptions", "ValidatorRestApiOptions", "ValidatorClientDataOptions",
            "DataOptions", "InteropOptions", "LoggingOptions", "MetricsOptions",
        ]
    ]
    def picocli(paths):
        flags = {}
        for path in paths:
            text = git_show(repo, tag, path)
            lines = text.splitlines()
            for index, line in enumerate(lines):
                if "names = {" not in line and "names = \"" not in line:
                    continue
                # Picocli option names may continue on the next line.
                joined = line + (lines[index + 1] if index + 1 < len(lines) else "")
                names = re.search(r"names\s*=\s*\{([^}]*)\}|names\s*=\s*(\"[^\"]+\")", joined)
                if not names:
                    continue
                for name in re.findall(r'"(-{1,2}[A-Za-z0-9-]+)"', names.group(1) or names.group(2)):
                    if name.startswith("--"):
                        flags.setdefault(name[2:], f"{path}:{index + 1}")
        return flags

    # `teku slashing-protection export|import` (SlashingProtectionCommand.java): each command's
    # own options and its ValidatorClientDataOptions mixin (which extends DataOptions).
    data = [TEKU_OPTIONS + "ValidatorClientDataOptions.java", TEKU_OPTIONS + "DataOptions.java"]
    commands = "teku/src/main/java/tech/pegasys/teku/cli/slashingprotection/"
    return {
        "validator-client": picocli(paths),
        "slashing-protection export": picocli([commands + "ExportCommand.java"] + data),
        "slashing-protection import": picocli([commands + "ImportCommand.java"] + data),
    }


def go_flag_names(repo, tag, path):
    """Go variable name -> (flag name, line) for each urfave/cli flag defined in a file."""
    text = git_show(repo, tag, path)
    found = {}
    current = None
    for number, line in enumerate(text.splitlines(), start=1):
        start = re.match(r"\s*(\w+)\s*=\s*&cli\.\w+Flag\{", line)
        if start:
            current = start.group(1)
            continue
        name = re.match(r'\s*Name:\s*"([a-z0-9-]+)"', line)
        if current and name:
            found[current] = (name.group(1), f"{path}:{number}")
            current = None
    return found


def go_list(text, start):
    """The entries of a Go slice literal that begins at `start`, up to its closing brace."""
    entries = []
    for line in text[text.index(start) + len(start):].splitlines():
        if line.strip().startswith("}"):
            break
        entries += re.findall(r"^\s*([\w.]+),", line)
    return entries


def prysm(repo, tag):
    # Every flag defined in the packages the validator binary takes flags from.
    packages = {
        "flags": "cmd/validator/flags",
        "cmd": "cmd",
        "debug": "runtime/debug",
        "features": "config/features",
    }
    defined = {}
    for package, directory in packages.items():
        listing = subprocess.run(
            ["git", "-C", repo, "ls-tree", "--name-only", f"{tag}:{directory}"],
            check=True, capture_output=True, text=True,
        ).stdout.split()
        for name in listing:
            if name.endswith(".go") and not name.endswith("_test.go"):
                for var, value in go_flag_names(repo, tag, f"{directory}/{name}").items():
                    defined.setdefault(f"{package}.{var}", value)
    sections = {}
    main = git_show(repo, tag, "cmd/validator/main.go")
    features = git_show(repo, tag, "config/features/flags.go")
    validator = go_list(main, "var appFlags = []cli.Flag{")
    # main.go appends features.ValidatorFlags: the named ones below, plus deprecated flags
    # (still accepted, ignored), which are left out so that we never emit one.
    validator += [
        name if "." in name else f"features.{name}"
        for name in go_list(features, "var ValidatorFlags = append(deprecatedFlags, []cli.Flag{")
    ]
    sections["validator"] = validator
    wallet = git_show(repo, tag, "cmd/validator/wallet/wallet.go")
    accounts = git_show(repo, tag, "cmd/validator/accounts/accounts.go")
    for section, text, command in [
        ("wallet create", wallet, 'Name: "create"'),
        ("accounts import", accounts, 'Name:        "import"'),
        ("accounts list", accounts, 'Name:        "list"'),
    ]:
        at = text.index(command)
        sections[section] = go_list(text[at:], "Flags: cmd.WrapFlags([]cli.Flag{")
    # `validator slashing-protection-history export|import`.
    history = git_show(repo, tag, "cmd/validator/slashing-protection/slashing-protection.go")
    for section, command in [
        ("slashing-protection-history export", 'Name:        "export"'),
        ("slashing-protection-history import", 'Name:        "import"'),
    ]:
        at = history.index(command)
        sections[section] = go_list(history[at:], "Flags: cmd.WrapFlags([]cli.Flag{")
    out = {}
    for section, names in sections.items():
        flags = {}
        for var in names:
            if var in defined:
                name, where = defined[var]
                flags.setdefault(name, where)
            else:
                raise SystemExit(f"prysm: {section}: no definition found for {var}")
        out[section] = flags
    return out


def nimbus(repo, tag):
    text = git_show(repo, tag, "beacon_chain/conf.nim")
    lines = text.splitlines()
    vc_start = next(i for i, l in enumerate(lines) if l.startswith("  ValidatorClientConf* = object"))
    bn_start = next(i for i, l in enumerate(lines) if l.startswith("  BeaconNodeConf* = object"))
    vc_end = next(
        (i for i, l in enumerate(lines) if i > vc_start and re.match(r"  \w+\* = (object|enum)", l)),
        len(lines),
    )
    bn_end = next(i for i, l in enumerate(lines) if i > bn_start and re.match(r"  \w+\* = (object|enum)", l))

    def names(start, end):
        flags = {}
        for index in range(start, end):
            for name in re.findall(r'name: "([a-z0-9-]+)"', lines[index]):
                flags.setdefault(name, f"beacon_chain/conf.nim:{index + 1}")
        return flags

    # `nimbus_beacon_node deposits import` takes the beacon node's global flags and its own
    # (both live in BeaconNodeConf).
    # `nimbus_beacon_node slashingdb export|import` likewise (the interchange file is an argument).
    beacon = names(bn_start, bn_end)
    return {
        "nimbus_validator_client": names(vc_start, vc_end),
        "nimbus_beacon_node deposits import": beacon,
        "nimbus_beacon_node slashingdb export": beacon,
        "nimbus_beacon_node slashingdb import": beacon,
    }


def lighthouse(repo, tag):
    def longs(path):
        text = git_show(repo, tag, path)
        flags = {}
        consts = dict(re.findall(r'pub const (\w+): &str = "([a-z0-9-]+)";', text))
        for number, line in enumerate(text.splitlines(), start=1):
            for literal in re.findall(r'\.long\("([a-z0-9-]+)"\)', line):
                flags.setdefault(literal, f"{path}:{number}")
            for const in re.findall(r"\.long\((\w+)\)", line):
                if const in consts:
                    flags.setdefault(consts[const], f"{path}:{number}")
        return flags, consts

    global_flags, _ = longs("lighthouse/src/main.rs")
    vc, _ = longs("validator_client/src/cli.rs")
    importer, _ = longs("account_manager/src/validator/import.rs")
    # import.rs takes its password flag from the wallet module.
    wallet_text = git_show(repo, tag, "account_manager/src/wallet/create.rs")
    for number, line in enumerate(wallet_text.splitlines(), start=1):
        if 'pub const PASSWORD_FLAG: &str = "password-file"' in line:
            importer.setdefault("password-file", f"account_manager/src/wallet/create.rs:{number}")
    # `account validator slashing-protection export|import`: the account validator flags
    # (mod.rs: --validator-dir) and the command's own (slashing_protection.rs: --pubkeys for
    # export); the interchange file is a positional argument.
    account_validator, _ = longs("account_manager/src/validator/mod.rs")
    history, _ = longs("account_manager/src/validator/slashing_protection.rs")
    return {
        "validator": {**global_flags, **vc},
        "account validator import": {**global_flags, **importer},
        "account validator slashing-protection export": {**global_flags, **account_validator, **history},
        "account validator slashing-protection import": {**global_flags, **account_validator},
    }


def lodestar(package, _tag):
    def keys(path):
        text = open(os.path.join(package, path)).read()
        found = {}
        for number, line in enumerate(text.splitlines(), start=1):
            key = re.match(r'    "?([a-zA-Z][a-zA-Z0-9.]*)"?: \{', line)
            if key:
                found.setdefault(key.group(1), f"{path}:{number}")
        return found

    flags = {}
    for path in [
        "lib/cmds/validator/options.js",
        "lib/options/globalOptions.js",
        "lib/options/logOptions.js",
        "lib/options/paramsOptions.js",
    ]:
        if os.path.exists(os.path.join(package, path)):
            flags.update({k: v for k, v in keys(path).items() if k not in flags})
    # `validator slashing-protection export|import`: the global options, the slashing-protection
    # options (beaconNodes, force) and each command's own (`file`), nested one level deeper.
    def nested(path):
        text = open(os.path.join(package, path)).read()
        found = {}
        for number, line in enumerate(text.splitlines(), start=1):
            key = re.match(r'(?:    |        )"?([a-zA-Z][a-zA-Z0-9.]*)"?: (?:\{|validatorOptions\.)', line)
            if key and key.group(1) not in ("options", "examples"):
                found.setdefault(key.group(1), f"{path}:{number}")
        return found

    common = {}
    for path in ["lib/options/globalOptions.js", "lib/options/logOptions.js", "lib/options/paramsOptions.js"]:
        if os.path.exists(os.path.join(package, path)):
            common.update({k: v for k, v in keys(path).items() if k not in common})
    common.update(nested("lib/cmds/validator/slashingProtection/options.js"))
    out = {"validator": flags}
    for command in ["export", "import"]:
        own = nested(f"lib/cmds/validator/slashingProtection/{command}.js")
        out[f"validator slashing-protection {command}"] = {**common, **own}
    return out


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    client, source, tag, out = sys.argv[1:]
    readers = {
        "charon": charon, "teku": teku, "prysm": prysm, "nimbus": nimbus,
        "lighthouse": lighthouse, "lodestar": lodestar,
    }
    sections = readers[client](source, tag)
    with open(out, "w") as file:
        file.write(f"# {client} {tag}: flags read from the client's source by scripts/read-client-flags.py\n")
        file.write("# one section per command; each flag with the file and line that define it\n")
        for section, flags in sections.items():
            file.write(f"[{section}]\n")
            for name in sorted(flags):
                file.write(f"{name} {flags[name]}\n")


if __name__ == "__main__":
    main()
