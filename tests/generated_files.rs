//! Generated files are committed; these tests fail when the committed copy is stale.

use std::path::Path;

use dvt_operator::crdgen::{CRD_PATH, crd_yaml};

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD_PATH);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = crd_yaml().expect("CRD renders");
    assert!(
        committed == generated,
        "{CRD_PATH} is stale: regenerate it with `cargo run -- crd > {CRD_PATH}` and commit it"
    );
}
