//! The real cluster's own tools, tested where they are written: the image maker
//! (scripts/cluster/mkimage.py), the volume resizer (scripts/cluster/resizer.py) and the
//! validator-client stand-in (scripts/cluster/standin).

use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn passes(program: &str, args: &[&str], dir: &str) {
    let output = Command::new(program)
        .args(args)
        .current_dir(format!("{REPO}/{dir}"))
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_image_maker_writes_importable_deterministic_images() {
    passes("python3", &["test_mkimage.py"], "scripts/cluster");
}

#[test]
fn the_resizer_grows_only_claims_that_ask_for_more_and_says_so_in_status() {
    passes("python3", &["test_resizer.py"], "scripts/cluster");
}

#[test]
fn the_stand_in_refuses_what_the_real_client_refuses() {
    passes("go", &["vet", "./..."], "scripts/cluster/standin");
    passes("go", &["test", "./..."], "scripts/cluster/standin");
}
