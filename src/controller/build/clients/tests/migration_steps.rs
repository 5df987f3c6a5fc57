//! The client-change steps' scripts run for real (sh, with stand-in client binaries): the
//! export keeps what the old client wrote and reports its digest, a failure leaves nothing half
//! written, and neither step repeats work once the new client imported the history.

use sha2::Digest;

use super::*;
use crate::controller::build::clients::migration::{
    export_step, import_step, interchange_file, parse_summary,
};
use crate::controller::model::Migration;
use crate::controller::names::TERMINATION_LOG;

/// An EIP-3076 interchange file with the history of two validators.
const INTERCHANGE: &str = r#"{"metadata":{"interchange_format_version":"5","genesis_validators_root":"0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"},"data":[{"pubkey":"0xb845089a1457f811bfc000588fbb4e713669be8ce060ea6be3c6ece09afc3794106c91ca73acda5e5457122d58723bed","signed_blocks":[{"slot":"81952","signing_root":"0x4ff6f743a43f3b4f95350831aeaf0a122a1a392922c45d804280284a69eb850b"}],"signed_attestations":[{"source_epoch":"2290","target_epoch":"3007","signing_root":"0x587d6a4f59a58fe24f406e0502413e77fe1babddee641fda30034ed37ecc884d"}]},{"pubkey":"0xa1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9","signed_blocks":[],"signed_attestations":[{"source_epoch":"10","target_epoch":"11"}]}]}"#;

/// Where each client's programs live in its image, and the stand-in's name.
const PROGRAMS: [(&str, &str); 4] = [
    ("/opt/teku/bin/teku", "teku"),
    ("/validator ", "validator "),
    ("/home/user/nimbus_beacon_node", "nimbus_beacon_node"),
    ("node /usr/app/packages/cli/bin/lodestar", "lodestar"),
];

fn migration(from: ValidatorClient, to: ValidatorClient) -> Migration {
    Migration {
        from,
        to,
        from_image: default_image(from).to_owned(),
    }
}

/// A stand-in export: writes `body`'s output where the client would put the interchange file
/// (the `.partial.json` argument, `--to=`/`--file=`, or Prysm's export directory).
fn fake_export(dirs: &PodDirs, body: &str) {
    let script = format!(
        "out=\n\
         for a in \"$@\"; do case $a in --to=*|--file=*) out=${{a#*=}};; --slashing-protection-export-dir=*) out=${{a#*=}}/slashing_protection.json;; *.partial.json) out=$a;; esac; done\n\
         [ -n \"$out\" ] || {{ echo 'no output file' >&2; exit 9; }}\n\
         {body}"
    );
    fake_every_client(dirs, &script);
}

/// The same stand-in for every client's program.
fn fake_every_client(dirs: &PodDirs, body: &str) {
    for name in [
        "lighthouse",
        "teku",
        "validator",
        "nimbus_beacon_node",
        "lodestar",
    ] {
        dirs.fake(name, body);
    }
}

fn run_step(dirs: &PodDirs, script: &str) -> (bool, String) {
    let script = script.replace(
        TERMINATION_LOG,
        &dirs.path("termination-log").display().to_string(),
    );
    let programs: Vec<(&str, PathBuf)> = PROGRAMS
        .iter()
        .map(|(program, fake)| (*program, dirs.path("bin").join(fake)))
        .collect();
    let programs: Vec<(&str, &Path)> = programs.iter().map(|(p, f)| (*p, f.as_path())).collect();
    dirs.run(&script, &programs, &[])
}

fn mapped(dirs: &PodDirs, path: &str) -> PathBuf {
    let data = dirs.path("data").display().to_string();
    PathBuf::from(
        path.replace(MOUNT_VC_DATA, &data)
            .replace(MOUNT_VC_DATA_PRYSM, &data),
    )
}

fn sha256_hex(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn every_export_keeps_the_file_and_reports_its_digest() {
    for from in ValidatorClient::ALL {
        let to = if from == ValidatorClient::Teku {
            ValidatorClient::Lighthouse
        } else {
            ValidatorClient::Teku
        };
        let cluster = cluster_on(to, false);
        let step = export_step(&cluster, &migration(from, to));
        let dirs = PodDirs::new(&format!("export-{from}"));
        fake_export(&dirs, &format!("printf '%s' '{INTERCHANGE}' > \"$out\""));
        let (ok, stderr) = run_step(&dirs, &step.script);
        assert!(ok, "{from}: {stderr}");
        let file = interchange_file(from, to, to);
        assert_eq!(
            std::fs::read_to_string(mapped(&dirs, &file)).unwrap(),
            INTERCHANGE,
            "{from}"
        );
        let message = std::fs::read_to_string(dirs.path("termination-log")).unwrap();
        let summary = parse_summary("exported", &message).unwrap_or_else(|| panic!("{message}"));
        assert_eq!(summary.sha256, sha256_hex(INTERCHANGE), "{from}");
        assert_eq!(summary.validators, 2, "{from}");
        assert_eq!(mapped(&dirs, &summary.file), mapped(&dirs, &file));
    }
}

#[test]
fn a_failed_export_fails_the_step_and_writes_no_file() {
    let cluster = cluster_on(ValidatorClient::Teku, false);
    let step = export_step(
        &cluster,
        &migration(ValidatorClient::Lighthouse, ValidatorClient::Teku),
    );
    let dirs = PodDirs::new("export-fails");
    // The old client's own database, which nothing may touch.
    let database = dirs.path("data/lighthouse/validators/slashing_protection.sqlite");
    std::fs::create_dir_all(database.parent().unwrap()).unwrap();
    std::fs::write(&database, "sqlite").unwrap();
    fake_export(&dirs, "echo 'Unable to open database' >&2; exit 1");
    let (ok, stderr) = run_step(&dirs, &step.script);
    assert!(!ok);
    assert!(stderr.contains("Unable to open database"), "{stderr}");
    let file = interchange_file(
        ValidatorClient::Lighthouse,
        ValidatorClient::Teku,
        ValidatorClient::Teku,
    );
    assert!(!mapped(&dirs, &file).exists());
    assert_eq!(std::fs::read_to_string(&database).unwrap(), "sqlite");
    // Something that is not an interchange file is refused as well, and not kept as one.
    fake_export(&dirs, "echo '<html>' > \"$out\"");
    let (ok, stderr) = run_step(&dirs, &step.script);
    assert!(!ok);
    assert!(
        stderr.contains("not an EIP-3076 interchange file"),
        "{stderr}"
    );
    assert!(!mapped(&dirs, &file).exists());
    // An export that exits 0 but writes nothing.
    fake_export(&dirs, "exit 0");
    let (ok, stderr) = run_step(&dirs, &step.script);
    assert!(!ok);
    assert!(stderr.contains("wrote no interchange file"), "{stderr}");
}

#[test]
fn every_import_runs_once_and_only_with_a_file() {
    for to in ValidatorClient::ALL {
        let from = if to == ValidatorClient::Lighthouse {
            ValidatorClient::Teku
        } else {
            ValidatorClient::Lighthouse
        };
        let cluster = cluster_on(to, false);
        let member = &cluster.members[0];
        let step = import_step(&cluster, &migration(from, to), &member.client_image);
        let dirs = PodDirs::new(&format!("import-{to}"));
        fake_every_client(&dirs, "exit 0");
        // Without the export's file there is nothing to import: the new client must not start.
        let (ok, stderr) = run_step(&dirs, &step.script);
        assert!(!ok, "{to}");
        assert!(stderr.contains("no interchange file"), "{to}: {stderr}");
        let file = mapped(&dirs, &interchange_file(from, to, to));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, INTERCHANGE).unwrap();
        // A failing import leaves no marker, so the next start tries again.
        fake_every_client(&dirs, "echo 'genesis_validators_root mismatch' >&2; exit 1");
        let (ok, stderr) = run_step(&dirs, &step.script);
        assert!(!ok, "{to}");
        assert!(stderr.contains("mismatch"), "{to}: {stderr}");
        let marker = PathBuf::from(format!("{}.imported", file.display()));
        assert!(!marker.exists(), "{to}");
        fake_every_client(&dirs, "exit 0");
        let (ok, stderr) = run_step(&dirs, &step.script);
        assert!(ok, "{to}: {stderr}");
        assert!(marker.exists(), "{to}");
        let calls = dirs.calls();
        assert!(calls.contains(&file.display().to_string()), "{to}: {calls}");
        let imports = calls.lines().filter(|l| l.contains("import")).count();
        assert!(run_step(&dirs, &step.script).0);
        let again = dirs
            .calls()
            .lines()
            .filter(|l| l.contains("import"))
            .count();
        assert_eq!(imports, again, "{to}: imported twice");
        let message = std::fs::read_to_string(dirs.path("termination-log")).unwrap();
        assert!(
            parse_summary("imported", &message).is_some(),
            "{to}: {message}"
        );
    }
}

#[test]
fn once_imported_the_export_only_reports_the_file() {
    let cluster = cluster_on(ValidatorClient::Teku, false);
    let step = export_step(
        &cluster,
        &migration(ValidatorClient::Lighthouse, ValidatorClient::Teku),
    );
    let dirs = PodDirs::new("export-after-import");
    let file = mapped(
        &dirs,
        &interchange_file(
            ValidatorClient::Lighthouse,
            ValidatorClient::Teku,
            ValidatorClient::Teku,
        ),
    );
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, INTERCHANGE).unwrap();
    std::fs::write(format!("{}.imported", file.display()), "").unwrap();
    fake_export(&dirs, "exit 1");
    let (ok, stderr) = run_step(&dirs, &step.script);
    assert!(ok, "{stderr}");
    assert_eq!(dirs.calls(), "", "the old client is not run again");
    let message = std::fs::read_to_string(dirs.path("termination-log")).unwrap();
    assert_eq!(
        parse_summary("exported", &message).unwrap().sha256,
        sha256_hex(INTERCHANGE)
    );
}

#[test]
fn a_summary_is_read_only_from_the_steps_own_line() {
    let sha = "a".repeat(64);
    assert_eq!(
        parse_summary(
            "exported",
            &format!(
                "exported /validator/data/slashing-protection/x.json sha256={sha} validators=3\n"
            )
        ),
        Some(crate::controller::build::clients::migration::StepSummary {
            file: "/validator/data/slashing-protection/x.json".into(),
            sha256: sha.clone(),
            validators: 3
        })
    );
    assert_eq!(parse_summary("exported", "Error: no database"), None);
    assert_eq!(
        parse_summary("exported", "exported f sha256=xyz validators=3"),
        None
    );
}

#[test]
fn no_step_needs_a_tool_the_prysm_image_lacks() {
    // The Prysm image carries bash and coreutils only (tools/prysm_image.bzl).
    let cluster = cluster_on(ValidatorClient::Prysm, false);
    let member = &cluster.members[0];
    let mut scripts: Vec<String> = client_run(&cluster, member)
        .init
        .into_iter()
        .map(|s| s.script)
        .collect();
    scripts.push(
        export_step(
            &cluster,
            &migration(ValidatorClient::Prysm, ValidatorClient::Teku),
        )
        .script,
    );
    scripts.push(
        import_step(
            &cluster,
            &migration(ValidatorClient::Teku, ValidatorClient::Prysm),
            &member.client_image,
        )
        .script,
    );
    for script in scripts {
        for tool in ["sed ", "grep ", "awk ", "jq ", "python"] {
            assert!(!script.contains(tool), "{tool} in {script}");
        }
    }
}

#[test]
fn no_client_starts_over_another_clients_history_it_never_imported() {
    use crate::controller::build::clients::migration::check_step;
    let step = check_step(ValidatorClient::Teku, false);
    let dirs = PodDirs::new("check");
    let run = |dirs: &PodDirs| run_step(dirs, &step.script);
    // A fresh volume, and one with only Teku's own data.
    assert!(run(&dirs).0);
    std::fs::create_dir_all(dirs.path("data/teku")).unwrap();
    assert!(run(&dirs).0);
    // Lighthouse's data beside it, never imported into Teku (a DV re-created over kept
    // volumes with another client): refused, and the termination message says why.
    std::fs::create_dir_all(dirs.path("data/lighthouse/validators")).unwrap();
    let (ok, stderr) = run(&dirs);
    assert!(!ok);
    assert!(
        stderr.contains("this volume holds lighthouse's data"),
        "{stderr}"
    );
    let message = std::fs::read_to_string(dirs.path("termination-log")).unwrap();
    assert!(
        message.contains("manual-to-teku.json.imported"),
        "{message}"
    );
    // Imported by a client change (lighthouse to teku), or by a chain (lighthouse to nimbus to
    // teku: nimbus's history holds lighthouse's), or by hand: accepted.
    let sp = dirs.path("data/slashing-protection");
    std::fs::create_dir_all(&sp).unwrap();
    std::fs::write(sp.join("nimbus-to-teku.json.imported"), "").unwrap();
    assert!(run(&dirs).0);
    std::fs::remove_file(sp.join("nimbus-to-teku.json.imported")).unwrap();
    std::fs::write(sp.join("teku-to-nimbus.json.imported"), "").unwrap();
    assert!(
        !run(&dirs).0,
        "a move away from teku is not an import into it"
    );
    // The DV's annotation says the history was moved to teku by hand: the step takes its word.
    let by_hand = check_step(ValidatorClient::Teku, true);
    let env = by_hand.env.clone();
    let script = by_hand.script.replace(
        TERMINATION_LOG,
        &dirs.path("termination-log").display().to_string(),
    );
    assert!(dirs.run(&script, &[], &env).0);
    assert!(
        !dirs.run(&script, &[], &[]).0,
        "only with the annotation's variable"
    );
    std::fs::write(sp.join("manual-to-teku.json.imported"), "").unwrap();
    assert!(run(&dirs).0);
}
