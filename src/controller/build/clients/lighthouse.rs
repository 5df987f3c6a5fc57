//! Lighthouse: `lighthouse validator` with keys imported by `lighthouse account validator
//! import` into its datadir (validator_definitions.yml and the slashing database live there).
//!
//! Flags read at sigp/lighthouse v5.3.0 (the newest tag readable here; the image is v7.1.0):
//! `validator_client/src/cli.rs`, the global flags in `lighthouse/src/main.rs`, the importer in
//! `account_manager/src/validator/import.rs`.

use super::{ClientRun, InitStep, Invocation, StepImage, charon_api, script_end, script_prelude};
use crate::controller::model::Cluster;
use crate::controller::names::{INIT_IMPORT_KEYS, MOUNT_VC_DATA, PORT_VC_METRICS};

pub(super) fn run(cluster: &Cluster) -> ClientRun {
    let network = cluster.network.as_str();
    let datadir = format!("{MOUNT_VC_DATA}/lighthouse");
    let mut flags = vec![
        // lighthouse/src/main.rs: --network, --datadir (global).
        format!("--network={network}"),
        format!("--datadir={datadir}"),
        // validator_client/src/cli.rs: --beacon-nodes, --distributed, --metrics*,
        // --use-long-timeouts (Charon's duty consensus needs more than the default timeouts).
        format!("--beacon-nodes={}", charon_api()),
        "--distributed".to_owned(),
        "--metrics".to_owned(),
        "--metrics-address=0.0.0.0".to_owned(),
        format!("--metrics-port={PORT_VC_METRICS}"),
        "--use-long-timeouts".to_owned(),
    ];
    if cluster.builder_api {
        // validator_client/src/cli.rs: --builder-proposals.
        flags.push("--builder-proposals".to_owned());
    }
    // import.rs: an already imported key (its 0x<pubkey> directory exists) is skipped with exit
    // 0; any other failure exits non-zero, and so does this step. Slashing protection lives in
    // the same datadir and is never reset.
    let import = Invocation::new(
        &["lighthouse", "account", "validator", "import"],
        "account validator import",
        vec![
            format!("--network={network}"),
            format!("--datadir={datadir}"),
            "--keystore=\"$keystore\"".to_owned(),
            "--password-file=\"$password\"".to_owned(),
        ],
    );
    let script = format!("{}  {}\n{}", script_prelude(), import.shell(), script_end());
    ClientRun {
        main: Invocation::new(&["lighthouse", "validator"], "validator", flags),
        init: vec![InitStep {
            name: INIT_IMPORT_KEYS,
            image: StepImage::Client,
            script,
            invocations: vec![import],
            env: Vec::new(),
            data_mount: MOUNT_VC_DATA,
        }],
    }
}
