use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::controller::names::MOUNT_VC_DATA;
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
            undefined.extend(undefined_flags(&charon, &["charon-v1.7.1"]));
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
    let mut lock: serde_json::Value = serde_json::from_str(facts.lock.as_ref().unwrap()).unwrap();
    for validator in lock["cluster_definition"]["validators"]
        .as_array_mut()
        .unwrap()
    {
        validator["fee_recipient_address"] = serde_json::Value::String(String::new());
    }
    facts.lock = Ok(lock.to_string());
    facts.lock_verification = None;
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
        "gcr.io/offchainlabs/prysm/validator:v6.1.2"
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
            .replace(MOUNT_VC_DATA, &self.path("data").display().to_string());
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

fn import_step(client: ValidatorClient) -> InitStep {
    let cluster = cluster_on(client, false);
    client_run(&cluster, &cluster.members[0])
        .init
        .into_iter()
        .find(|s| s.name == crate::controller::names::INIT_IMPORT_KEYS)
        .expect("an import step")
}

// Defect 6: a failed import must fail the step, not surface later as a VC without keys.
#[test]
fn no_init_step_hides_a_failure() {
    for client in ValidatorClient::ALL {
        let cluster = cluster_on(client, false);
        for step in client_run(&cluster, &cluster.members[0]).init {
            assert!(
                step.script.starts_with("set -eu\n"),
                "{client}: {}",
                step.name
            );
            assert!(!step.script.contains("|| true"), "{client}: {}", step.name);
        }
    }
}

#[test]
fn lighthouse_import_fails_loudly_and_reruns_cleanly() {
    let step = import_step(ValidatorClient::Lighthouse);
    let dirs = PodDirs::new("lighthouse");
    let failing = dirs.fake(
        "lighthouse",
        "echo 'Unable to decrypt keystore' >&2; exit 1",
    );
    let (ok, stderr) = dirs.run(&step.script, &[], &[]);
    assert!(!ok, "a failed import must fail the step");
    assert!(stderr.contains("Unable to decrypt keystore"));
    assert!(failing.exists());
    // Lighthouse skips a key it already holds with exit 0 (account_manager import.rs), so
    // reruns pass; each keystore is imported with its own password file.
    dirs.fake("lighthouse", "exit 0");
    assert!(dirs.run(&step.script, &[], &[]).0);
    assert!(dirs.run(&step.script, &[], &[]).0);
    let calls = dirs.calls();
    assert!(calls.contains("--keystore="), "{calls}");
    assert!(calls.contains("keystore-0.txt"), "{calls}");
}

#[test]
fn an_empty_key_share_fails_every_import() {
    for client in [
        ValidatorClient::Lighthouse,
        ValidatorClient::Nimbus,
        ValidatorClient::Lodestar,
        ValidatorClient::Prysm,
    ] {
        let step = import_step(client);
        let dirs = PodDirs::new(&format!("empty-{client}"));
        std::fs::remove_file(dirs.path("keys/keystore-0.json")).unwrap();
        for program in ["lighthouse", "nimbus_beacon_node", "validator"] {
            dirs.fake(program, "exit 0");
        }
        let programs = [
            (
                "/home/user/nimbus_beacon_node",
                dirs.path("bin/nimbus_beacon_node"),
            ),
            ("/validator ", dirs.path("bin/validator ")),
        ];
        let programs: Vec<(&str, &Path)> =
            programs.iter().map(|(p, f)| (*p, f.as_path())).collect();
        let (ok, stderr) = dirs.run(&step.script, &programs, &[]);
        assert!(!ok, "{client}: a member without keys must not start");
        assert!(stderr.contains("no keystore-*.json"), "{client}: {stderr}");
    }
}

#[test]
fn nimbus_import_that_writes_nothing_fails_the_step() {
    let step = import_step(ValidatorClient::Nimbus);
    let dirs = PodDirs::new("nimbus");
    // nimbus_beacon_node logs a failed import and exits 0 (importKeystoresFromDir).
    let silent = dirs.fake("nimbus_beacon_node", "cat > /dev/null; exit 0");
    let programs = [("/home/user/nimbus_beacon_node", silent.as_path())];
    let (ok, stderr) = dirs.run(&step.script, &programs, &[]);
    assert!(!ok);
    assert!(stderr.contains("nimbus did not import"), "{stderr}");
    // One that imports as nimbus does (validators/0x<pubkey>, password read on stdin).
    let validators = dirs.path("data/nimbus/validators");
    let working = dirs.fake(
        "nimbus_beacon_node",
        &format!(
            "read password; [ \"$password\" = password ] || exit 3; mkdir -p {}/{}",
            validators.display(),
            PodDirs::pubkey()
        ),
    );
    let programs = [("/home/user/nimbus_beacon_node", working.as_path())];
    assert!(dirs.run(&step.script, &programs, &[]).0);
    let imports = dirs
        .calls()
        .lines()
        .filter(|l| l.contains("deposits import"))
        .count();
    assert!(dirs.run(&step.script, &programs, &[]).0);
    let after = dirs
        .calls()
        .lines()
        .filter(|l| l.contains("deposits import"))
        .count();
    assert_eq!(imports, after, "an imported key is not imported again");
}

#[test]
fn prysm_import_is_checked_against_the_wallet() {
    let step = import_step(ValidatorClient::Prysm);
    let dirs = PodDirs::new("prysm");
    let wallet = dirs.path("data/prysm/wallet");
    let listed = dirs.path("listed");
    // A stand-in for the validator binary: `wallet create` makes prysm's wallet/direct,
    // `accounts import` records the key only when `record` exists, `accounts list` prints
    // what was recorded.
    let fake = dirs.fake(
        "validator",
        &format!(
            "case \"$1 $2\" in\n\
             'wallet create') mkdir -p {wallet}/direct ;;\n\
             'accounts import') [ -e {record} ] && echo '{pubkey}' >> {listed} ;;\n\
             'accounts list') cat {listed} 2>/dev/null ;;\n\
             esac\n\
             exit 0",
            wallet = wallet.display(),
            record = dirs.path("record").display(),
            pubkey = PodDirs::pubkey(),
            listed = listed.display(),
        ),
    );
    let programs = [("/validator ", dirs.path("bin/validator ").to_owned())];
    let programs: Vec<(&str, &Path)> = programs.iter().map(|(p, f)| (*p, f.as_path())).collect();
    let (ok, stderr) = dirs.run(&step.script, &programs, &[]);
    assert!(
        !ok,
        "prysm exits 0 after a failed import; the step must not"
    );
    assert!(stderr.contains("prysm did not import"), "{stderr}");
    std::fs::write(dirs.path("record"), "").unwrap();
    assert!(dirs.run(&step.script, &programs, &[]).0);
    assert!(dirs.run(&step.script, &programs, &[]).0);
    let calls = dirs.calls();
    assert_eq!(calls.matches("wallet create").count(), 1, "{calls}");
    assert_eq!(calls.matches("accounts import").count(), 2, "{calls}");
    let password = std::fs::read_to_string(dirs.path("data/prysm/wallet-password.txt")).unwrap();
    assert_eq!(password.len(), 64, "a generated wallet password");
    assert!(fake.exists());
}

// Defect 7: Lodestar's re-import copied over a 0400 keystore (EACCES without fsGroup).
#[test]
fn lodestar_import_reruns_as_a_non_root_user_with_read_only_keys() {
    let step = import_step(ValidatorClient::Lodestar);
    let dirs = PodDirs::new("lodestar");
    use std::os::unix::fs::PermissionsExt;
    for file in ["keys/keystore-0.json", "keys/keystore-0.txt"] {
        std::fs::set_permissions(dirs.path(file), std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    // As root, permissions do not bind: run the script as nobody, owning the volumes as a
    // pod's user would (fsGroup not applied).
    let root = unsafe_euid_is_root();
    if root {
        let status = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&dirs.root)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let script = step
        .script
        .replace(MOUNT_KEY_SHARE, &dirs.path("keys").display().to_string())
        .replace(MOUNT_VC_DATA, &dirs.path("data").display().to_string());
    let run = || {
        let mut command = if root {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/bin/sh",
                "-c",
            ]);
            c
        } else {
            let mut c = Command::new("/bin/sh");
            c.arg("-c");
            c
        };
        let output = command.arg(&script).output().expect("the script runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for attempt in 0..3 {
        let (ok, stderr) = run();
        assert!(ok, "run {attempt}: {stderr}");
    }
    let pubkey = PodDirs::pubkey();
    let keystore = dirs.path(&format!(
        "data/lodestar/keystores/{pubkey}/voting-keystore.json"
    ));
    let secret = dirs.path(&format!("data/lodestar/secrets/{pubkey}"));
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "password");
    assert!(
        std::fs::read_to_string(&keystore)
            .unwrap()
            .contains("\"pubkey\"")
    );
    for file in [&keystore, &secret] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    // The old step (cp over the existing 0400 copy) fails exactly here, which this guards.
    if root {
        let old = format!(
            "cp {} {}",
            dirs.path("keys/keystore-0.json").display(),
            keystore.display()
        );
        std::fs::set_permissions(&keystore, std::fs::Permissions::from_mode(0o400)).unwrap();
        let output = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/bin/sh",
                "-c",
                &old,
            ])
            .output()
            .unwrap();
        assert!(!output.status.success(), "cp over a 0400 file is refused");
        let (ok, stderr) = run();
        assert!(ok, "{stderr}");
    }
}

fn unsafe_euid_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

// Defect 8: no dead configuration, and no private key copied onto a volume that outlives its
// Secret.
#[test]
fn charon_reads_its_enr_key_from_the_secret_and_nothing_copies_it() {
    use crate::controller::build::build;
    use crate::controller::names::*;
    for client in ValidatorClient::ALL {
        let cluster = cluster_on(client, true);
        let desired = build(&cluster);
        for set in &desired.statefulsets {
            let pod = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let charon = pod
                .containers
                .iter()
                .find(|c| c.name == CONTAINER_CHARON)
                .unwrap();
            let args = charon.args.as_ref().unwrap();
            assert!(args.contains(&format!(
                "--private-key-file={MOUNT_ENR_KEY}/{ENR_KEY_FILE}"
            )));
            let enr_mount = charon
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == VOLUME_ENR_KEY)
                .expect("charon mounts its ENR key Secret");
            assert_eq!(enr_mount.read_only, Some(true));
            assert!(
                !charon
                    .env
                    .iter()
                    .flatten()
                    .any(|e| e.name == "CHARON_DATA_DIR"),
                "charon run has no data-dir flag"
            );
            let cleanup = pod
                .init_containers
                .iter()
                .flatten()
                .find(|c| c.name == INIT_REMOVE_OLD_ENR_KEY_COPY)
                .expect("the copy older versions left is removed");
            assert_eq!(
                cleanup.command.as_ref().unwrap()[2],
                format!("set -eu\nrm -f {MOUNT_CHARON_DATA}/{ENR_KEY_FILE}\n")
            );
            for init in pod.init_containers.iter().flatten() {
                assert!(
                    !init
                        .volume_mounts
                        .iter()
                        .flatten()
                        .any(|m| m.name == VOLUME_ENR_KEY),
                    "{client}: {} sees the ENR key",
                    init.name
                );
            }
            // Only Charon sees the ENR key.
            for container in pod.containers.iter().filter(|c| c.name != CONTAINER_CHARON) {
                assert!(
                    !container
                        .volume_mounts
                        .iter()
                        .flatten()
                        .any(|m| m.name == VOLUME_ENR_KEY)
                );
            }
        }
    }
}
