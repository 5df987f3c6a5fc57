//! Moving a member's slashing-protection history (EIP-3076 interchange) from one validator
//! client to another: the old client exports it from its own data directory on the member's
//! volume, the new client imports it before its first start. Two init steps, each in its own
//! client's image, run while the member is stopped (a pod's init containers run before any of
//! its containers start).
//!
//! Every command is the client's own, read at the pinned version:
//! - Lighthouse v5.3.0 `account_manager/src/validator/slashing_protection.rs`: `lighthouse
//!   account validator slashing-protection export|import FILE` with the global `--network` and
//!   `--datadir` (the database is `<datadir>/validators/slashing_protection.sqlite`,
//!   `account_manager/src/validator/mod.rs`); the genesis validators root comes from the
//!   built-in network config (`common/eth2_network_config`), no beacon node is asked.
//! - Teku 25.9.3 `cli/slashingprotection/ExportCommand.java` (`--to`), `ImportCommand.java`
//!   (`--from`), both with `--data-path` (`ValidatorClientDataOptions`, the layout the
//!   validator client uses: `SlashingProtectionCommandUtils.getSlashingProtectionPath`).
//! - Prysm v6.1.4 `cmd/validator/slashing-protection/slashing-protection.go`: `validator
//!   slashing-protection-history export --datadir --slashing-protection-export-dir` writes
//!   `slashing_protection.json` into that directory (`export.go`, `jsonExportFileName`);
//!   `import --datadir --slashing-protection-json-file`.
//! - Nimbus v24.9.0 `beacon_chain/conf.nim` (`slashingdb` command, the file an argument) and
//!   `nimbus_beacon_node.nim` (`doSlashingExport`, `doSlashingImport`: the database in
//!   `<data-dir>/validators`, where the validator client keeps it). The beacon-node binary runs
//!   them, so both steps run in the beacon-node image, as the key import does.
//! - Lodestar 1.30.0 and 1.44.0 `lib/cmds/validator/slashingProtection/{export,import}.js`:
//!   `lodestar validator slashing-protection export|import --file` with the global `--network`
//!   and `--dataDir`; the genesis validators root of a known network is built in (`utils.js`,
//!   `getGenesisValidatorsRoot`), so Charon, which is not running yet, is never asked.
//!
//! Each exits non-zero on failure (Lighthouse returns an error, Teku `SUB_COMMAND_LOG.exit(1)`,
//! Prysm `logrus.Fatalf`, Nimbus raises, Lodestar's handler throws), and the steps also check
//! that what was written is an interchange file. The scripts use shell built-ins and coreutils
//! only (`sha256sum`, `cut`, `tee`, `mv`, `rm` of its own temporary file, `mkdir`, `cat`), which every pinned image carries (the Prysm
//! image has nothing more: tools/prysm_image.bzl).

use super::{InitStep, Invocation, StepImage, nimbus};
use crate::api::ValidatorClient;
use crate::controller::model::{Cluster, Migration};
use crate::controller::names::{
    INIT_CHECK_SLASHING_PROTECTION, INIT_EXPORT_SLASHING_PROTECTION,
    INIT_IMPORT_SLASHING_PROTECTION, TERMINATION_LOG, vc_data_mount,
};

/// The directory on the member's client volume that keeps interchange files: beside, not in,
/// each client's own data directory, and never cleaned by the operator. As `seen_by`'s image
/// sees it (Prysm's mounts the volume elsewhere).
pub fn interchange_dir(seen_by: ValidatorClient) -> String {
    format!("{}/slashing-protection", vc_data_mount(seen_by))
}

/// The interchange file of one move, named by both clients so that a later move back and
/// forth keeps every file; as `seen_by`'s image sees it.
pub fn interchange_file(
    from: ValidatorClient,
    to: ValidatorClient,
    seen_by: ValidatorClient,
) -> String {
    format!(
        "{}/{}-to-{}.json",
        interchange_dir(seen_by),
        from.as_str(),
        to.as_str()
    )
}

/// The first word of the line each step writes to its termination message on success.
pub const SUMMARY_EXPORTED: &str = "exported";
pub const SUMMARY_IMPORTED: &str = "imported";

/// What a successful migration step reports: `<word> <file> sha256=<hex> validators=<n>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepSummary {
    pub file: String,
    pub sha256: String,
    pub validators: u32,
}

/// Reads a step's termination message; `None` for anything else (a failure's log tail).
pub fn parse_summary(word: &str, message: &str) -> Option<StepSummary> {
    let line = message.lines().rev().find(|l| l.starts_with(word))?;
    let mut parts = line.split_whitespace();
    if parts.next()? != word {
        return None;
    }
    let file = parts.next()?.to_owned();
    let sha256 = parts.next()?.strip_prefix("sha256=")?.to_owned();
    let validators = parts.next()?.strip_prefix("validators=")?.parse().ok()?;
    let hex = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then_some(StepSummary {
        file,
        sha256,
        validators,
    })
}

/// The export command of `client` writing the interchange file `out` (a shell word; for Prysm,
/// into a directory whose `slashing_protection.json` is moved to `out`).
fn export_command(
    network: crate::api::Network,
    client: ValidatorClient,
    out: &str,
) -> (Vec<Invocation>, String) {
    let network = network.as_str();
    let data = vc_data_mount(client);
    match client {
        ValidatorClient::Lighthouse => {
            let export = Invocation::new(
                &[
                    "lighthouse",
                    "account",
                    "validator",
                    "slashing-protection",
                    "export",
                ],
                "account validator slashing-protection export",
                vec![
                    format!("--network={network}"),
                    format!("--datadir={data}/lighthouse"),
                    format!("\"{out}\""),
                ],
            );
            let line = export.shell();
            (vec![export], line)
        }
        ValidatorClient::Teku => {
            let export = Invocation::new(
                &["/opt/teku/bin/teku", "slashing-protection", "export"],
                "slashing-protection export",
                vec![
                    format!("--data-path={data}/teku"),
                    format!("--to=\"{out}\""),
                ],
            );
            let line = export.shell();
            (vec![export], line)
        }
        ValidatorClient::Prysm => {
            let export = Invocation::new(
                &["/validator", "slashing-protection-history", "export"],
                "slashing-protection-history export",
                vec![
                    format!("--{network}"),
                    "--accept-terms-of-use".to_owned(),
                    format!("--datadir={data}/prysm"),
                    format!("--slashing-protection-export-dir=\"{out}.d\""),
                ],
            );
            let line = format!(
                "mkdir -p \"{out}.d\"\n{}\nmv -f \"{out}.d/slashing_protection.json\" \"{out}\"",
                export.shell()
            );
            (vec![export], line)
        }
        ValidatorClient::Nimbus => {
            let export = Invocation::new(
                &["/home/user/nimbus_beacon_node", "slashingdb", "export"],
                "nimbus_beacon_node slashingdb export",
                vec![format!("--data-dir={data}/nimbus"), format!("\"{out}\"")],
            );
            let line = export.shell();
            (vec![export], line)
        }
        ValidatorClient::Lodestar => {
            let export = Invocation::new(
                &[
                    "node",
                    "/usr/app/packages/cli/bin/lodestar",
                    "validator",
                    "slashing-protection",
                    "export",
                ],
                "validator slashing-protection export",
                vec![
                    format!("--network={network}"),
                    format!("--dataDir={data}/lodestar"),
                    format!("--file=\"{out}\""),
                ],
            );
            let line = export.shell();
            (vec![export], line)
        }
    }
}

fn import_command(cluster: &Cluster, client: ValidatorClient, file: &str) -> Invocation {
    let network = cluster.network.as_str();
    let data = vc_data_mount(client);
    match client {
        ValidatorClient::Lighthouse => Invocation::new(
            &[
                "lighthouse",
                "account",
                "validator",
                "slashing-protection",
                "import",
            ],
            "account validator slashing-protection import",
            vec![
                format!("--network={network}"),
                format!("--datadir={data}/lighthouse"),
                format!("\"{file}\""),
            ],
        ),
        ValidatorClient::Teku => Invocation::new(
            &["/opt/teku/bin/teku", "slashing-protection", "import"],
            "slashing-protection import",
            vec![
                format!("--data-path={data}/teku"),
                format!("--from=\"{file}\""),
            ],
        ),
        ValidatorClient::Prysm => Invocation::new(
            &["/validator", "slashing-protection-history", "import"],
            "slashing-protection-history import",
            vec![
                format!("--{network}"),
                "--accept-terms-of-use".to_owned(),
                format!("--datadir={data}/prysm"),
                format!("--slashing-protection-json-file=\"{file}\""),
            ],
        ),
        ValidatorClient::Nimbus => Invocation::new(
            &["/home/user/nimbus_beacon_node", "slashingdb", "import"],
            "nimbus_beacon_node slashingdb import",
            vec![format!("--data-dir={data}/nimbus"), format!("\"{file}\"")],
        ),
        ValidatorClient::Lodestar => Invocation::new(
            &[
                "node",
                "/usr/app/packages/cli/bin/lodestar",
                "validator",
                "slashing-protection",
                "import",
            ],
            "validator slashing-protection import",
            vec![
                format!("--network={network}"),
                format!("--dataDir={data}/lodestar"),
                format!("--file=\"{file}\""),
            ],
        ),
    }
}

/// The image a client's slashing-protection command runs in: its validator-client image, or
/// for Nimbus the beacon-node image of the same release.
pub fn step_image(client: ValidatorClient, client_image: &str) -> StepImage {
    match client {
        ValidatorClient::Nimbus => StepImage::Other(nimbus::import_image(client_image)),
        _ => StepImage::Other(client_image.to_owned()),
    }
}

/// Shell lines that check `$1` is an interchange file and print `<word> <file> sha256=…
/// validators=…` to stdout and the termination message. Counting `"pubkey"` keys counts the
/// validators the file holds history for (interchange format v5: one `data` entry each).
fn summary_function() -> String {
    format!(
        "summarise() {{\n\
         \x20 content=$(cat \"$2\")\n\
         \x20 case $content in *'\"interchange_format_version\"'*) ;; *) echo \"$2: not an EIP-3076 interchange file\" >&2; exit 1;; esac\n\
         \x20 validators=0\n\
         \x20 rest=$content\n\
         \x20 while :; do case $rest in *'\"pubkey\"'*) rest=${{rest#*'\"pubkey\"'}}; validators=$((validators + 1));; *) break;; esac; done\n\
         \x20 sha=$(sha256sum \"$2\" | cut -d ' ' -f 1)\n\
         \x20 printf '%s %s sha256=%s validators=%s\\n' \"$1\" \"$2\" \"$sha\" \"$validators\" | tee {TERMINATION_LOG}\n\
         }}\n"
    )
}

/// The export script: `client`'s own export into `file` (via a `.partial.json` beside it, moved
/// into place once it is checked), then its summary on stdout and in the termination message.
/// With `skip_when_imported`, a file the new client already imported (its `.imported` marker
/// beside it) is only reported again: the old client's data has not changed since, and the new
/// client may have signed. Only the script's own half-written `.partial.json` of an earlier,
/// failed try is removed.
pub fn export_script(
    network: crate::api::Network,
    client: ValidatorClient,
    file: &str,
    skip_when_imported: bool,
) -> (Vec<Invocation>, String) {
    // The half-written file ends in .json too: Lodestar picks the format it writes by the file's
    // extension (lib/util/file.js `writeFile`, 1.30.0 to 1.44.0), and fails on any other.
    let (invocations, export) = export_command(network, client, "$partial");
    let skip = if skip_when_imported {
        format!(
            "if [ -e \"$file.imported\" ] && [ -s \"$file\" ]; then summarise {SUMMARY_EXPORTED} \"$file\"; exit 0; fi\n"
        )
    } else {
        String::new()
    };
    let script = format!(
        "set -eu\n\
         {summary}\
         file={file}\n\
         partial=\"${{file%.json}}.partial.json\"\n\
         mkdir -p \"$(dirname \"$file\")\"\n\
         {skip}\
         rm -f \"$partial\" \"$partial.d/slashing_protection.json\"\n\
         {export}\n\
         [ -s \"$partial\" ] || {{ echo \"{from} wrote no interchange file\" >&2; exit 1; }}\n\
         summarise {SUMMARY_EXPORTED} \"$partial\" > /dev/null\n\
         mv -f \"$partial\" \"$file\"\n\
         summarise {SUMMARY_EXPORTED} \"$file\"\n",
        summary = summary_function(),
        from = client.as_str(),
    );
    (invocations, script)
}

/// The export step of a client change: in the old client's image, with the old client stopped
/// (a pod's init containers run before its containers).
pub fn export_step(cluster: &Cluster, migration: &Migration) -> InitStep {
    let file = interchange_file(migration.from, migration.to, migration.from);
    let (invocations, script) = export_script(cluster.network, migration.from, &file, true);
    InitStep {
        name: INIT_EXPORT_SLASHING_PROTECTION,
        image: step_image(migration.from, &migration.from_image),
        script,
        invocations,
        env: Vec::new(),
        data_mount: vc_data_mount(migration.from),
    }
}

/// The import step: in the new client's image, after its keys are in place and before it
/// starts. A file already imported is not imported again.
pub fn import_step(cluster: &Cluster, migration: &Migration, to_image: &str) -> InitStep {
    let file = interchange_file(migration.from, migration.to, migration.to);
    let import = import_command(cluster, migration.to, "$file");
    let script = format!(
        "set -eu\n\
         {summary}\
         file={file}\n\
         [ -s \"$file\" ] || {{ echo \"$file: no interchange file (the export did not finish)\" >&2; exit 1; }}\n\
         if [ ! -e \"$file.imported\" ]; then\n\
         \x20 {import}\n\
         \x20 : > \"$file.imported\"\n\
         fi\n\
         summarise {SUMMARY_IMPORTED} \"$file\"\n",
        summary = summary_function(),
        import = import.shell(),
    );
    InitStep {
        name: INIT_IMPORT_SLASHING_PROTECTION,
        image: step_image(migration.to, to_image),
        script,
        invocations: vec![import],
        env: Vec::new(),
        data_mount: vc_data_mount(migration.to),
    }
}

/// The check step's variable naming the client a history was moved to by hand.
pub const ENV_MOVED_BY_HAND: &str = "SLASHING_PROTECTION_MOVED_BY_HAND";

/// The guard every member pod runs last, in its client's image: a volume that holds another
/// client's data directory (its slashing-protection history) while no history was ever
/// imported into this client (no `*-to-<client>.json.imported` marker) must not start this
/// client with an empty database. This is what a DV re-created over kept volumes with another
/// client, or a change released by annotation without the import, would otherwise do.
///
/// It runs in the client's own image with `/bin/sh` and `tee` only: Lighthouse's final stage is
/// ubuntu:22.04 (v5.3.0 Dockerfile), Teku's ubuntu:24.04 (25.9.3 docker/jdk21/Dockerfile),
/// Prysm's carries bash and coreutils (v6.1.4 tools/prysm_image.bzl), Nimbus's validator-client
/// image is debian:bullseye-slim (v24.9.0 docker/dist/binaries/Dockerfile.vc.amd64); Lodestar's
/// Dockerfile could not be read here (its key step already relies on sh and coreutils).
///
/// With `moved_by_hand` (the DV's `slashing-protection.dvt.io/<member>: <client>` annotation)
/// the person who moved the history has said so, and the step passes.
pub fn check_step(client: ValidatorClient, moved_by_hand: bool) -> InitStep {
    let others: Vec<&str> = ValidatorClient::ALL
        .into_iter()
        .filter(|c| *c != client)
        .map(ValidatorClient::as_str)
        .collect();
    let me = client.as_str();
    let script = format!(
        "set -eu\n\
         [ \"${{{ENV_MOVED_BY_HAND}:-}}\" = {me} ] && exit 0\n\
         for other in {others}; do\n\
         \x20 [ -d {data}/$other ] || continue\n\
         \x20 for marker in {dir}/*-to-{me}.json.imported; do\n\
         \x20   [ -e \"$marker\" ] && exit 0\n\
         \x20 done\n\
         \x20 echo \"this volume holds $other's data (its slashing-protection history) and none was imported into {me}: {me} would start with an empty slashing-protection database. Run the member on $other again and change the client through the operator, which moves the history; or import it by hand and then annotate the DV slashing-protection.dvt.io/<member>={me} (or create {dir}/manual-to-{me}.json.imported)\" | tee {TERMINATION_LOG} >&2\n\
         \x20 exit 1\n\
         done\n",
        others = others.join(" "),
        data = vc_data_mount(client),
        dir = interchange_dir(client),
    );
    InitStep {
        name: INIT_CHECK_SLASHING_PROTECTION,
        image: StepImage::Client,
        script,
        invocations: Vec::new(),
        env: if moved_by_hand {
            vec![(ENV_MOVED_BY_HAND.to_owned(), me.to_owned())]
        } else {
            Vec::new()
        },
        data_mount: vc_data_mount(client),
    }
}
