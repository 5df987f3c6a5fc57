//! Tests of each client's command line against the flags its pinned release defines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

mod init_steps;
mod lodestar_round_trip;
mod migration_steps;

use super::*;
use crate::controller::names::{MOUNT_VC_DATA, MOUNT_VC_DATA_PRYSM};
use crate::controller::testing::example;
use crate::controller::validate::validate;

const CATALOGUES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/controller/build/clients/flags"
);

/// A flag catalogue: section -> flag names (without dashes).
fn catalogue(name: &str) -> BTreeMap<String, BTreeSet<String>> {
    let path = format!("{CATALOGUES}/{name}.flags");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut sections: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = None;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(section.to_owned());
            sections.entry(section.to_owned()).or_default();
        } else {
            let (flag, source) = line.split_once(' ').expect("flag and source");
            assert!(source.contains(':'), "{path}: {line}: no source line");
            let section = current.clone().expect("a flag after a section header");
            sections.entry(section).or_default().insert(flag.to_owned());
        }
    }
    sections
}

/// The flags of an invocation that the named catalogues do not define, as `--flag (catalogue
/// [section])`. Positional words and shell redirections are not flags.
fn undefined_flags(invocation: &Invocation, catalogues: &[&str]) -> Vec<String> {
    let mut undefined = Vec::new();
    for word in &invocation.flags {
        let Some(flag) = word.strip_prefix("--") else {
            continue;
        };
        let name = flag.split_once('=').map_or(flag, |(name, _)| name);
        for name_of_catalogue in catalogues {
            let sections = catalogue(name_of_catalogue);
            let known = sections.get(invocation.section).unwrap_or_else(|| {
                panic!(
                    "{name_of_catalogue} has no section [{}]",
                    invocation.section
                )
            });
            if !known.contains(name) {
                undefined.push(format!(
                    "--{name} ({name_of_catalogue} [{}])",
                    invocation.section
                ));
            }
        }
    }
    undefined
}

fn pin(client: ValidatorClient) -> &'static Pin {
    PINNED.iter().find(|p| p.client == client).expect("pinned")
}

/// The stader-4 example with every member on `client` (client diversity made advisory) and the
/// builder API as asked.
fn cluster_on(client: ValidatorClient, builder: bool) -> Cluster {
    let (mut dv, facts) = example("stader-4.yaml");
    for member in &mut dv.spec.members {
        member.validator_client = Some(client);
    }
    dv.spec.client_diversity.policy = crate::api::Policy::Preferred;
    dv.spec.charon.builder_api = builder;
    validate(&dv, &facts).expect("valid")
}

fn every_invocation(run: &ClientRun) -> Vec<&Invocation> {
    std::iter::once(&run.main)
        .chain(run.init.iter().flat_map(|step| &step.invocations))
        .collect()
}

#[test]
fn every_flag_is_defined_by_the_pinned_client() {
    let mut undefined = Vec::new();
    for client in ValidatorClient::ALL {
        for builder in [false, true] {
            let cluster = cluster_on(client, builder);
            for member in &cluster.members {
                let run = client_run(&cluster, member);
                for invocation in every_invocation(&run) {
                    undefined.extend(
                        undefined_flags(invocation, pin(client).catalogues)
                            .into_iter()
                            .map(|flag| format!("{client}: {flag}")),
                    );
                }
            }
            let charon = charon::run(&cluster, &cluster.members[0]);
            undefined.extend(undefined_flags(&charon, &["charon-v1.10.3"]));
        }
        // A client change: the old client's export, the new client's import.
        for to in ValidatorClient::ALL.into_iter().filter(|to| *to != client) {
            let cluster = cluster_on(to, false);
            let member = &cluster.members[0];
            let migration = crate::controller::model::Migration {
                from: client,
                to,
                from_image: default_image(client).to_owned(),
            };
            for (step, checked_by) in [
                (migration::export_step(&cluster, &migration), client),
                (
                    migration::import_step(&cluster, &migration, &member.client_image),
                    to,
                ),
            ] {
                assert!(!step.invocations.is_empty(), "{}", step.name);
                for invocation in &step.invocations {
                    undefined.extend(
                        undefined_flags(invocation, pin(checked_by).catalogues)
                            .into_iter()
                            .map(|flag| format!("{checked_by} ({}): {flag}", step.name)),
                    );
                }
            }
        }
    }
    assert_eq!(undefined, Vec::<String>::new());
}

#[test]
fn a_misspelt_flag_fails_the_flag_set_check() {
    let cluster = cluster_on(ValidatorClient::Lighthouse, false);
    let mut run = client_run(&cluster, &cluster.members[0]);
    run.main
        .flags
        .push("--beacon-node=http://127.0.0.1:3600".to_owned());
    assert_eq!(
        undefined_flags(&run.main, pin(ValidatorClient::Lighthouse).catalogues),
        ["--beacon-node (lighthouse-v5.3.0 [validator])"]
    );
    // Both Lodestar catalogues must know a flag: one known to neither is named twice.
    let cluster = cluster_on(ValidatorClient::Lodestar, false);
    let mut run = client_run(&cluster, &cluster.members[0]);
    run.main.flags.push("--beaconnodes=x".to_owned());
    assert_eq!(
        undefined_flags(&run.main, pin(ValidatorClient::Lodestar).catalogues).len(),
        2
    );
}

#[test]
fn every_pinned_image_is_the_default_and_has_its_catalogues() {
    for pin in &PINNED {
        assert_eq!(
            crate::controller::validate::default_client_image(pin.client),
            pin.image
        );
        for name in pin.catalogues {
            let text = std::fs::read_to_string(format!("{CATALOGUES}/{name}.flags")).unwrap();
            let version = name.rsplit('-').next().unwrap().trim_start_matches('v');
            assert!(
                text.lines().next().unwrap().contains(version),
                "{name}: header names another version"
            );
        }
    }
}

// Defect 1: Teku exits at startup without a fee recipient.
#[test]
fn teku_gets_the_lock_fee_recipients_as_a_proposer_config() {
    let cluster = cluster_on(ValidatorClient::Teku, false);
    let member = &cluster.members[1];
    let run = client_run(&cluster, member);
    let config_flag = run
        .main
        .flags
        .iter()
        .find(|f| f.starts_with("--validators-proposer-config="))
        .expect("the example's lock names three fee recipients: a proposer config");
    let path = config_flag.split_once('=').unwrap().1;
    let step = run
        .init
        .iter()
        .find(|s| s.name == crate::controller::names::INIT_PROPOSER_CONFIG)
        .expect("a step writes the proposer config");
    assert!(step.script.contains(&format!("> {path}")));
    let (_, json) = step
        .env
        .iter()
        .find(|(name, _)| name == teku::ENV_PROPOSER_CONFIG)
        .unwrap();
    let config: serde_json::Value = serde_json::from_str(json).unwrap();
    let summary = &cluster.lock_summary;
    for (validator, recipient) in summary.public_keys.iter().zip(&summary.fee_recipients) {
        // The member's validator key is its public share of each validator.
        let share = &validator.public_shares[member.index as usize];
        assert_eq!(
            config["proposer_config"][share]["fee_recipient"],
            recipient.clone().unwrap()
        );
    }
    assert_eq!(
        config["default_config"]["fee_recipient"],
        summary.fee_recipients[0].clone().unwrap()
    );
}

#[test]
fn teku_gets_one_fee_recipient_flag_when_the_lock_names_one() {
    let mut cluster = cluster_on(ValidatorClient::Teku, false);
    let one = "0xe6a9d54824a121e5bdb8e86021f9778b00fecef6".to_owned();
    for recipient in &mut cluster.lock_summary.fee_recipients {
        *recipient = Some(one.clone());
    }
    let run = client_run(&cluster, &cluster.members[0]);
    assert!(run.main.flags.contains(&format!(
        "--validators-proposer-default-fee-recipient={one}"
    )));
    assert!(run.init.is_empty());
}

#[test]
fn a_lock_without_fee_recipients_cannot_run_a_teku_member() {
    let (mut dv, mut facts) = example("stader-4.yaml");
    let mut lock = crate::controller::testing::example_lock("stader-4.yaml");
    for validator in lock["cluster_definition"]["validators"]
        .as_array_mut()
        .unwrap()
    {
        validator["fee_recipient_address"] = serde_json::Value::String(String::new());
    }
    facts.lock = crate::controller::testing::read_lock(&lock);
    dv.spec.members[0].validator_client = Some(ValidatorClient::Teku);
    let invalid = validate(&dv, &facts).expect_err("refused");
    assert!(
        invalid.message().contains("names no fee recipient"),
        "{invalid:?}"
    );
    dv.spec.members[0].validator_client = Some(ValidatorClient::Lighthouse);
    dv.spec.members.iter_mut().for_each(|m| {
        if m.validator_client == Some(ValidatorClient::Teku) {
            m.validator_client = Some(ValidatorClient::Nimbus)
        }
    });
    validate(&dv, &facts).expect("other clients do not need the lock's fee recipient");
}

// Defect 2: the Nimbus validator-client image has no nimbus_beacon_node.
#[test]
fn nimbus_imports_keys_with_the_beacon_node_image_of_its_release() {
    let cluster = cluster_on(ValidatorClient::Nimbus, false);
    let run = client_run(&cluster, &cluster.members[0]);
    let step = &run.init[0];
    assert_eq!(
        step.image,
        StepImage::Other("statusim/nimbus-eth2:multiarch-v25.9.2".to_owned())
    );
    assert!(
        step.script
            .contains("/home/user/nimbus_beacon_node deposits import")
    );
    assert_eq!(
        nimbus::import_image(
            "registry.example/statusim/nimbus-validator-client:multiarch-v25.10.0"
        ),
        "registry.example/statusim/nimbus-eth2:multiarch-v25.10.0"
    );
    assert_eq!(
        nimbus::import_image("example/custom-vc:1"),
        "statusim/nimbus-eth2:multiarch-v25.9.2"
    );
}

// Defect 3: without --enable-beacon-rest-api Prysm speaks gRPC, which Charon does not serve.
#[test]
fn prysm_talks_to_charon_over_rest() {
    let cluster = cluster_on(ValidatorClient::Prysm, false);
    let run = client_run(&cluster, &cluster.members[0]);
    assert!(
        run.main
            .flags
            .contains(&"--enable-beacon-rest-api".to_owned())
    );
    assert!(
        run.main
            .flags
            .contains(&"--beacon-rest-api-provider=http://127.0.0.1:3600".to_owned())
    );
}

// Defect 4: Prysm publishes to offchainlabs since v6.0.4.
#[test]
fn prysm_image_is_where_the_release_publishes_it() {
    assert_eq!(
        default_image(ValidatorClient::Prysm),
        "gcr.io/offchainlabs/prysm/validator:v6.1.4"
    );
}

// Defect 5: Lodestar with a builder needs selection builderalways.
#[test]
fn lodestar_with_a_builder_always_takes_the_builder_block() {
    let cluster = cluster_on(ValidatorClient::Lodestar, true);
    let run = client_run(&cluster, &cluster.members[0]);
    assert!(
        run.main
            .flags
            .contains(&"--builder.selection=builderalways".to_owned())
    );
    let cluster = cluster_on(ValidatorClient::Lodestar, false);
    let run = client_run(&cluster, &cluster.members[0]);
    assert!(!run.main.flags.iter().any(|f| f.starts_with("--builder")));
}

/// A scratch directory laid out as a member pod sees its volumes: the key-share Secret (one
/// keystore and its password, read-only) and an empty data volume; and `bin/` for stand-ins of
/// the client programs.
struct PodDirs {
    root: PathBuf,
}

impl PodDirs {
    fn new(name: &str) -> PodDirs {
        // Each test names its own directory; the process id keeps parallel runs apart.
        let root = std::env::temp_dir().join(format!("dvt-init-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["keys", "data", "bin"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let pubkey = "A".repeat(8) + &"b".repeat(88);
        std::fs::write(
            root.join("keys/keystore-0.json"),
            format!("{{\n  \"crypto\": {{}},\n  \"pubkey\": \"{pubkey}\",\n  \"version\": 4\n}}\n"),
        )
        .unwrap();
        std::fs::write(root.join("keys/keystore-0.txt"), "password").unwrap();
        PodDirs { root }
    }

    fn pubkey() -> String {
        "0x".to_owned() + &"a".repeat(8) + &"b".repeat(88)
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Writes an executable stand-in for a client program that appends its arguments to
    /// `calls` and then runs `body`.
    fn fake(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path("bin").join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"$0 $*\" >> {}\n{body}\n",
                self.path("calls").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.path("calls")).unwrap_or_default()
    }

    /// Runs an init script with the pod's paths mapped into this directory and program paths
    /// replaced as given; returns whether it succeeded, and its stderr.
    fn run(
        &self,
        script: &str,
        programs: &[(&str, &Path)],
        env: &[(String, String)],
    ) -> (bool, String) {
        let mut text = script
            .replace(MOUNT_KEY_SHARE, &self.path("keys").display().to_string())
            .replace(MOUNT_VC_DATA, &self.path("data").display().to_string())
            .replace(
                MOUNT_VC_DATA_PRYSM,
                &self.path("data").display().to_string(),
            );
        for (program, fake) in programs {
            text = text.replace(program, &fake.display().to_string());
        }
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(&text);
        command.env(
            "PATH",
            format!("{}:/usr/bin:/bin", self.path("bin").display()),
        );
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().expect("sh runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for PodDirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn an_exposed_members_charon_flags_are_defined_by_charon_v171() {
    let mut cluster = cluster_on(ValidatorClient::Lighthouse, false);
    cluster.members[0].external_address = Some("203.0.113.7".into());
    cluster.members[1].external_address = Some("bravo.dv.example.org".into());
    cluster.members[1].p2p_port = 30611;
    let mut undefined = Vec::new();
    for member in &cluster.members[..2] {
        let charon = charon::run(&cluster, member);
        undefined.extend(undefined_flags(&charon, &["charon-v1.10.3"]));
    }
    assert_eq!(undefined, Vec::<String>::new());
    let bravo = charon::run(&cluster, &cluster.members[1]).flags;
    assert!(bravo.contains(&"--p2p-external-hostname=bravo.dv.example.org".to_owned()));
    assert!(bravo.contains(&"--p2p-tcp-address=0.0.0.0:30611".to_owned()));
    let alpha = charon::run(&cluster, &cluster.members[0]).flags;
    assert!(alpha.contains(&"--p2p-external-ip=203.0.113.7".to_owned()));
}

/// Test-network mode: Charon's mock beacon node and validator mock (signing with the member's
/// own key shares) instead of beacon node endpoints, every flag defined by Charon v1.10.3.
#[test]
fn a_test_network_members_charon_runs_its_mocks_with_its_own_shares() {
    let (dv, facts) = example("simnet/simnet-4.yaml");
    let cluster = validate(&dv, &facts).expect("valid");
    let charon = charon::run(&cluster, &cluster.members[0]);
    assert_eq!(
        undefined_flags(&charon, &["charon-v1.10.3"]),
        Vec::<String>::new()
    );
    for flag in [
        "--simnet-beacon-mock",
        "--simnet-validator-mock",
        "--simnet-validator-keys-dir=/charon/validator_keys",
        "--simnet-slot-duration=2s",
    ] {
        assert!(
            charon.flags.contains(&flag.to_owned()),
            "{flag}: {:?}",
            charon.flags
        );
    }
    assert!(
        !charon
            .flags
            .iter()
            .any(|f| f.contains("beacon-node-endpoints")),
        "{:?}",
        charon.flags
    );
}
