//! The `dvt-operator` command as a user runs it: exit codes and what it prints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dvt-operator"))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn example(name: &str) -> String {
    std::fs::read_to_string(repo(&format!("examples/{name}"))).expect("example exists")
}

fn validate_stdin(text: &str) -> Output {
    let mut child = binary()
        .args(["validate", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("stdin accepts the manifest");
    child.wait_with_output().expect("binary finishes")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `validate` on the 4-member example with `from` replaced by `to` and expects a failure
/// whose output has a line containing every one of `expected`.
fn assert_rejected(from: &str, to: &str, expected: &[&str]) {
    let text = example("stader-4.yaml");
    assert!(text.contains(from), "example does not contain {from:?}");
    let output = validate_stdin(&text.replacen(from, to, 1));
    let printed = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(
        printed
            .lines()
            .any(|line| expected.iter().all(|e| line.contains(e))),
        "no line with {expected:?} in:\n{printed}"
    );
}

#[test]
fn both_examples_are_valid() {
    let output = binary()
        .args(["validate", "-f"])
        .arg(repo("examples/stader-4.yaml"))
        .args(["-f"])
        .arg(repo("examples/stader-7.yaml"))
        .output()
        .expect("binary runs");
    let printed = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{printed}");
    assert!(
        printed.contains("DistributedValidator default/stader-4 (document 10): valid\n"),
        "{printed}"
    );
    assert!(
        printed.contains("DistributedValidator default/stader-7 (document 16): valid\n"),
        "{printed}"
    );
    assert!(
        printed.contains("2 DistributedValidator(s) checked: all valid"),
        "{printed}"
    );
}

#[test]
fn duplicate_member_name_is_rejected() {
    assert_rejected(
        "- name: bravo",
        "- name: alpha",
        &["error: spec.members[1].name: duplicate member name \"alpha\" (also spec.members[0])"],
    );
}

#[test]
fn duplicate_share_index_is_rejected() {
    assert_rejected(
        "index: 2",
        "index: 1",
        &["error: spec.members[2].index: duplicate share index 1 (also spec.members[1])"],
    );
}

#[test]
fn threshold_two_of_four_is_rejected() {
    assert_rejected(
        "  network: hoodi",
        "  network: hoodi\n  threshold: 2",
        &["error: spec.threshold: threshold 2 of 4 is not more than half of the members"],
    );
}

#[test]
fn threshold_five_of_four_is_rejected() {
    assert_rejected(
        "  network: hoodi",
        "  network: hoodi\n  threshold: 5",
        &["error: spec.threshold: threshold 5 of 4 is more than the members"],
    );
}

#[test]
fn three_of_four_in_one_operator_class_is_rejected() {
    assert_rejected(
        "{name: permissionless-operator-1, class: permissionless}",
        "{name: permissionless-operator-1, class: permissioned}",
        &["error: spec.members.operator.class: 3 of 4 members are permissioned"],
    );
}

#[test]
fn member_name_too_long_for_a_pod_hostname_is_rejected() {
    let long = "a-member-name-that-is-far-too-long-for-a-pod-hostname";
    assert_rejected(
        "- name: delta",
        &format!("- name: {long}"),
        &["error: spec.members[3].name: ", "63-character limit"],
    );
}

#[test]
fn unknown_validator_client_is_rejected() {
    assert_rejected(
        "validatorClient: prysm",
        "validatorClient: besu",
        &["error: spec.members[2].validatorClient: unknown variant `besu`"],
    );
}

#[test]
fn warnings_do_not_fail() {
    let text = example("stader-4.yaml").replacen(
        "{name: permissionless-operator-2, class: permissionless}",
        "{name: permissionless-operator-1, class: permissionless}",
        1,
    );
    let output = validate_stdin(&text);
    let printed = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{printed}");
    assert!(printed.contains("valid with 1 warning"), "{printed}");
    assert!(printed.contains("warning: spec.members.operator.name: operator \"permissionless-operator-1\" runs 2 of 4 members"), "{printed}");
}

#[test]
fn a_file_without_distributed_validators_fails() {
    let output = validate_stdin("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("<stdin>: error: no DistributedValidator found"));
}

#[test]
fn a_missing_file_fails() {
    let output = binary()
        .args(["validate", "-f", "/nonexistent/dv.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("/nonexistent/dv.yaml: error: cannot read"));
}

#[test]
fn crd_command_prints_the_committed_crd() {
    let output = binary().arg("crd").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let committed = std::fs::read_to_string(repo("crds/distributedvalidator.yaml")).unwrap();
    assert_eq!(stdout(&output), committed);
}

#[test]
fn run_without_a_cluster_says_so() {
    let output = binary()
        .args([
            "run",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "--log-format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&output.stderr);
    assert!(
        printed.contains("cannot read kubeconfig /nonexistent/kubeconfig"),
        "{printed}"
    );
}

#[test]
fn run_rejects_bad_flags() {
    let output = binary()
        .args(["run", "--log-format", "xml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn every_command_explains_itself() {
    for (args, needle) in [
        (
            vec!["--help"],
            "Runs Distributed Validator (DVT) clusters on Kubernetes",
        ),
        (vec!["crd", "--help"], "kubectl apply -f -"),
        (
            vec!["validate", "--help"],
            "spec.members[2].index: duplicate share index 1",
        ),
        (vec!["run", "--help"], "Namespace to watch"),
    ] {
        let output = binary().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(
            stdout(&output).contains(needle),
            "{args:?}: {}",
            stdout(&output)
        );
    }
}

#[test]
fn plan_prints_the_assignment_and_the_survival_table() {
    let dir = std::env::temp_dir().join(format!("dvt-cli-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nodes = dir.join("nodes.yaml");
    let items: Vec<String> = ["zone-a", "zone-b", "zone-c", "zone-d"]
        .iter()
        .enumerate()
        .map(|(i, z)| format!("- apiVersion: v1\n  kind: Node\n  metadata:\n    name: node-{i}\n    labels:\n      topology.kubernetes.io/zone: {z}\n"))
        .collect();
    std::fs::write(
        &nodes,
        format!("apiVersion: v1\nkind: List\nitems:\n{}", items.concat()),
    )
    .unwrap();
    let output = binary()
        .args([
            "plan",
            "-f",
            repo("examples/stader-4.yaml").to_str().unwrap(),
            "--nodes",
            nodes.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = stdout(&output);
    assert!(
        printed.contains("stader-4: 4 members, threshold 3, 1 may be down"),
        "{printed}"
    );
    assert!(
        printed.contains("zone-a 1, zone-b 1, zone-c 1, zone-d 1"),
        "{printed}"
    );
    assert!(
        printed.lines().any(|l| l.starts_with("alpha")
            && l.contains("zone-a")
            && l.contains("lighthouse (pinned)")),
        "{printed}"
    );
}

#[test]
fn lock_verify_passes_the_real_lock_and_fails_the_format_only_one() {
    let good = binary()
        .args([
            "lock",
            "verify",
            repo("tests/fixtures/charon/cluster-lock-v1.7.0-3of4.json")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(good.status.code(), Some(0), "{}", stdout(&good));
    let printed = stdout(&good);
    assert!(printed.contains("4 operators, threshold 3"), "{printed}");
    assert!(
        printed.lines().filter(|l| l.ends_with(": ok")).count() >= 1,
        "{printed}"
    );
    let bad = binary()
        .args([
            "lock",
            "verify",
            repo("tests/fixtures/charon/cluster-lock-v1.10.0-format-only.json")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).contains("validator 0:"), "{}", stdout(&bad));
}

#[test]
fn keys_split_then_check_and_lock_verify_round_trip_with_standard_kdfs() {
    let dir = std::env::temp_dir().join(format!("dvt-cli-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let password = dir.join("password.txt");
    std::fs::write(&password, "a test password\n").unwrap();
    for kdf in ["scrypt", "pbkdf2"] {
        let out = dir.join(kdf);
        let split = binary()
            .args(["keys", "split", "--shares", "4", "--kdf", kdf, "--out"])
            .arg(&out)
            .arg("--password-file")
            .arg(&password)
            .output()
            .unwrap();
        assert!(
            split.status.success(),
            "{}",
            String::from_utf8_lossy(&split.stderr)
        );
        assert!(
            stdout(&split).contains("into 4 shares, threshold 3"),
            "{}",
            stdout(&split)
        );
        let keystore =
            std::fs::read_to_string(out.join("node2/validator_keys/keystore-0.json")).unwrap();
        assert!(
            keystore.contains(&format!("\"function\": \"{kdf}\"")),
            "{keystore}"
        );
        let check = binary()
            .args(["keys", "check"])
            .arg(&out)
            .arg("--password-file")
            .arg(&password)
            .output()
            .unwrap();
        assert!(check.status.success(), "{}", stdout(&check));
        assert_eq!(
            stdout(&check),
            "validator 0: ok (4 of 4 threshold subsets sign for the group key)\n"
        );
        let verify = binary()
            .args(["lock", "verify"])
            .arg(out.join("cluster-lock.json"))
            .output()
            .unwrap();
        assert!(verify.status.success(), "{}", stdout(&verify));
    }
    // A wrong password fails the check, and the output names the keystore, not the password.
    std::fs::write(&password, "another password\n").unwrap();
    let check = binary()
        .args(["keys", "check"])
        .arg(dir.join("pbkdf2"))
        .arg("--password-file")
        .arg(&password)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let text = stdout(&check);
    assert!(
        text.contains("validator 0: FAILED (0 of 4")
            && text.contains("keystore-0.json: wrong password"),
        "{text}"
    );
    assert!(!text.contains("another password"));
    // A split refuses to write over existing key material.
    let again = binary()
        .args([
            "keys",
            "split",
            "--shares",
            "4",
            "--insecure-fast-kdf",
            "--out",
        ])
        .arg(dir.join("scrypt"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_refuses_a_concurrency_of_zero_by_name() {
    let output = binary()
        .args(["run", "--concurrency", "0", "--kubeconfig", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--concurrency"), "{stderr}");
    // The default flags parse: the run gets as far as the missing kubeconfig.
    let output = binary()
        .args(["run", "--concurrency", "4", "--debounce-ms", "0"])
        .args(["--kubeconfig", "/nonexistent/kubeconfig"])
        .args(["--metrics-address", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("cannot read kubeconfig"),
        "{stderr}"
    );
}

#[test]
fn the_examples_split_between_two_organisations_are_valid_and_plan_their_remote_members() {
    let mut command = binary();
    command.arg("validate");
    for file in [
        "stader-4-org-a.yaml",
        "stader-4-org-b.yaml",
        "stader-7-org-a.yaml",
        "stader-7-org-b.yaml",
    ] {
        command.arg("-f").arg(repo(&format!("examples/{file}")));
    }
    let output = command.output().expect("binary runs");
    let printed = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{printed}");
    assert!(
        printed.contains("4 DistributedValidator(s) checked: all valid"),
        "{printed}"
    );
    // A remote member that names a Secret is refused with its field path.
    let text = example("stader-4-org-a.yaml").replace(
        "    remote: true   # run by organisation B on its own infrastructure\n    index: 2\n",
        "    remote: true\n    index: 2\n    keyShareSecret: {name: stader-4-charlie-keystore}\n",
    );
    let refused = validate_stdin(&text);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stdout(&refused).contains("spec.members[2].keyShareSecret: a remote member's keys are with the organisation that runs it"),
        "{}",
        stdout(&refused)
    );
    let dir = std::env::temp_dir().join(format!("dvt-cli-plan-remote-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nodes = dir.join("nodes.yaml");
    std::fs::write(
        &nodes,
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata:\n    name: n1\n    labels: {topology.kubernetes.io/zone: zone-a}\n- apiVersion: v1\n  kind: Node\n  metadata:\n    name: n2\n    labels: {topology.kubernetes.io/zone: zone-b}\n",
    )
    .unwrap();
    let output = binary()
        .args(["plan", "-f"])
        .arg(repo("examples/stader-4-org-a.yaml"))
        .arg("--nodes")
        .arg(&nodes)
        .output()
        .unwrap();
    let printed = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{printed}");
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("charlie") && l.contains("(remote)")),
        "{printed}"
    );
    // Two members here in two zones, each remote member a domain of its own: one zone may fail.
    assert!(
        printed.lines().any(|l| l.starts_with("zones")
            && l.contains("zone-a 1")
            && l.contains("(remote: charlie) 1")
            && l.ends_with("yes   yes")),
        "{printed}"
    );
}
