//! The real Lodestar CLI (from the npm registry, installed by scripts/install-tools.sh) runs the
//! operator's own export and import steps: a Lodestar member's data with a signed history is
//! exported, imported into a fresh Lodestar data directory, and the history is there.
//!
//! The CLI is 1.5.1, not the pinned 1.35.0: the registry serves 1.30.0 and 1.44.0 of the CLI
//! but none of their @lodestar/* dependencies past 1.5.1 (scripts/lodestar/package.json). The
//! commands and flags the steps use (`validator slashing-protection export|import`, `--network`,
//! `--dataDir`, `--file`) are the same in 1.5.1, 1.30.0 and 1.44.0 (the last two checked by the
//! flag-set test). The history is written by the CLI's own import: signing one needs a beacon
//! node.

use super::*;
use crate::controller::build::clients::migration::{
    export_step, import_step, interchange_file, parse_summary,
};
use crate::controller::model::Migration;
use crate::controller::names::TERMINATION_LOG;

const HISTORY: &str = r#"{"metadata":{"interchange_format_version":"5","genesis_validators_root":"0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"},"data":[{"pubkey":"0xb845089a1457f811bfc000588fbb4e713669be8ce060ea6be3c6ece09afc3794106c91ca73acda5e5457122d58723bed","signed_blocks":[{"slot":"81952","signing_root":"0x4ff6f743a43f3b4f95350831aeaf0a122a1a392922c45d804280284a69eb850b"}],"signed_attestations":[{"source_epoch":"2290","target_epoch":"3007","signing_root":"0x587d6a4f59a58fe24f406e0502413e77fe1babddee641fda30034ed37ecc884d"}]}]}"#;

const PROGRAM: &str = "node /usr/app/packages/cli/bin/lodestar";

fn lodestar_cli() -> Option<PathBuf> {
    let cli = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/lodestar/node_modules/@chainsafe/lodestar/lib/index.js");
    cli.exists().then_some(cli)
}

fn lodestar(cli: &Path, args: &[&str]) {
    let output = Command::new("node")
        .arg(cli)
        .args(args)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "lodestar {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One validator's history: its pubkey, `slot:root` of each block, (source, target, root) of
/// each attestation.
type History = (String, Vec<String>, Vec<(String, String, String)>);

/// The history entries a file holds.
fn history(text: &str) -> Vec<History> {
    let file: serde_json::Value = serde_json::from_str(text).expect("an interchange file");
    file["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|entry| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&entry["pubkey"]),
                entry["signed_blocks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| format!("{}:{}", text(&b["slot"]), text(&b["signing_root"])))
                    .collect(),
                entry["signed_attestations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        (
                            text(&a["source_epoch"]),
                            text(&a["target_epoch"]),
                            text(&a["signing_root"]),
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn the_real_lodestar_cli_moves_a_history_through_the_operators_steps() {
    let Some(cli) = lodestar_cli() else {
        assert!(
            std::env::var_os("DVT_REQUIRE_LODESTAR").is_none(),
            "the Lodestar CLI is not installed: run scripts/install-tools.sh"
        );
        eprintln!(
            "skipped: no Lodestar CLI in .tools/lodestar (scripts/install-tools.sh installs it)"
        );
        return;
    };
    let mut cluster = cluster_on(ValidatorClient::Lodestar, false);
    // Lodestar 1.5.1 predates Hoodi; mainnet's genesis validators root is built into every
    // version, and the history above is mainnet's.
    cluster.network = crate::api::Network::Mainnet;
    let dirs = PodDirs::new("lodestar-real");
    let data = dirs.path("data/lodestar");
    let source = dirs.path("history.json");
    std::fs::write(&source, HISTORY).unwrap();
    lodestar(
        &cli,
        &[
            "validator",
            "slashing-protection",
            "import",
            "--network=mainnet",
            &format!("--dataDir={}", data.display()),
            &format!("--file={}", source.display()),
        ],
    );
    let program = format!("node {}", cli.display());
    let run = |script: &str| {
        let script = script.replace(
            TERMINATION_LOG,
            &dirs.path("termination-log").display().to_string(),
        );
        let fake = PathBuf::from(&program);
        dirs.run(&script, &[(PROGRAM, fake.as_path())], &[])
    };
    let migration = Migration {
        from: ValidatorClient::Lodestar,
        to: ValidatorClient::Lodestar,
        from_image: default_image(ValidatorClient::Lodestar).to_owned(),
    };
    let (ok, stderr) = run(&export_step(&cluster, &migration).script);
    assert!(ok, "export: {stderr}");
    let message = std::fs::read_to_string(dirs.path("termination-log")).unwrap();
    let summary = parse_summary("exported", &message).unwrap_or_else(|| panic!("{message}"));
    assert_eq!(summary.validators, 1);
    let file = PathBuf::from(
        interchange_file(migration.from, migration.to, migration.to)
            .replace(MOUNT_VC_DATA, &dirs.path("data").display().to_string()),
    );
    assert_eq!(
        history(&std::fs::read_to_string(&file).unwrap()),
        history(HISTORY)
    );

    // A fresh Lodestar data directory (the old one kept aside, as the operator keeps it).
    std::fs::rename(&data, dirs.path("data/lodestar-before")).unwrap();
    let member = &cluster.members[0];
    let (ok, stderr) = run(&import_step(&cluster, &migration, &member.client_image).script);
    assert!(ok, "import: {stderr}");
    assert!(
        data.join("validator-db").exists(),
        "the import wrote Lodestar's database"
    );
    let check = dirs.path("check.json");
    lodestar(
        &cli,
        &[
            "validator",
            "slashing-protection",
            "export",
            "--network=mainnet",
            &format!("--dataDir={}", data.display()),
            &format!("--file={}", check.display()),
        ],
    );
    assert_eq!(
        history(&std::fs::read_to_string(&check).unwrap()),
        history(HISTORY),
        "the fresh data directory holds the history"
    );
}
