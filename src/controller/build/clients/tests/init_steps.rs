//! The init steps' shell scripts run for real (sh, with stand-in client binaries): each import
//! fails loudly, reruns cleanly and writes what the client reads.

use super::*;

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
        .replace(MOUNT_VC_DATA, &dirs.path("data").display().to_string())
        .replace(
            MOUNT_VC_DATA_PRYSM,
            &dirs.path("data").display().to_string(),
        );
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
