//! Teku: `teku validator-client` reading Charon's keystores directly (`--validator-keys`), with
//! the lock's fee recipients.
//!
//! Flags read at Consensys/teku 25.9.3, in the mixins of
//! `teku/src/main/java/tech/pegasys/teku/cli/subcommand/ValidatorClientCommand.java`
//! (`cli/options/ValidatorClientOptions.java`, `ValidatorOptions.java`,
//! `ValidatorKeysOptions.java`, `ValidatorProposerOptions.java`, `DataOptions.java`,
//! `MetricsOptions.java`).

use super::{ClientRun, InitStep, Invocation, StepImage, charon_api};
use crate::controller::model::{Cluster, Member};
use crate::controller::names::{
    INIT_PROPOSER_CONFIG, MOUNT_KEY_SHARE, MOUNT_TMP, MOUNT_VC_DATA, PORT_VC_METRICS,
};

/// Environment variable that carries the proposer config into its init step.
pub const ENV_PROPOSER_CONFIG: &str = "TEKU_PROPOSER_CONFIG";

/// Where the proposer config is written (the pod's scratch volume, rebuilt on every start).
fn proposer_config_path() -> String {
    format!("{MOUNT_TMP}/teku-proposer-config.json")
}

/// The fee recipient flag, or a proposer config when the lock's validators have different fee
/// recipients. Teku refuses to start after Bellatrix without one of the two
/// (validator/api/.../ValidatorConfig.java, validateProposerDefaultFeeRecipientOrProposerConfigSource),
/// even though Charon itself proposes with the lock's fee recipients.
enum FeeRecipients {
    One(String),
    /// `teku` proposer config JSON (validator/client/.../ProposerConfig.java: `proposer_config`
    /// keyed by the validator's public key, which for a DV member is its public share, and a
    /// required `default_config.fee_recipient`).
    PerValidator(String),
}

fn fee_recipients(cluster: &Cluster, member: &Member) -> Option<FeeRecipients> {
    let summary = &cluster.lock_summary;
    let recipients = &summary.fee_recipients;
    let first = recipients.first()?.clone()?;
    if recipients
        .iter()
        .all(|r| r.as_deref() == Some(first.as_str()))
    {
        return Some(FeeRecipients::One(first));
    }
    let mut proposers = serde_json::Map::new();
    for (validator, recipient) in summary.public_keys.iter().zip(recipients) {
        let share = validator.public_shares.get(member.index as usize)?;
        proposers.insert(
            share.clone(),
            serde_json::json!({ "fee_recipient": recipient.clone()? }),
        );
    }
    let config = serde_json::json!({
        "proposer_config": proposers,
        "default_config": { "fee_recipient": first },
    });
    Some(FeeRecipients::PerValidator(config.to_string()))
}

pub(super) fn run(cluster: &Cluster, member: &Member) -> ClientRun {
    let mut flags = vec![
        // ValidatorClientCommand.java: --network; DataOptions.java: --data-path.
        format!("--network={}", cluster.network.as_str()),
        format!("--data-path={MOUNT_VC_DATA}/teku"),
        // ValidatorClientOptions.java: --beacon-node-api-endpoint, --Xobol-dvt-integration-enabled.
        format!("--beacon-node-api-endpoint={}", charon_api()),
        // ValidatorKeysOptions.java: --validator-keys=<keys>:<passwords> reads keystore-N.json
        // with keystore-N.txt from the Secret as they are.
        format!("--validator-keys={MOUNT_KEY_SHARE}:{MOUNT_KEY_SHARE}"),
        // ValidatorOptions.java: the Secret's mount is read-only, so no lock files beside it.
        "--validators-keystore-locking-enabled=false".to_owned(),
        "--Xobol-dvt-integration-enabled=true".to_owned(),
        // MetricsOptions.java.
        "--metrics-enabled=true".to_owned(),
        "--metrics-interface=0.0.0.0".to_owned(),
        format!("--metrics-port={PORT_VC_METRICS}"),
        "--metrics-host-allowlist=*".to_owned(),
    ];
    let mut init = Vec::new();
    // Validation refuses a lock without fee recipients for a Teku member, so `None` is not
    // reached for a validated cluster; without a flag Teku would exit with its own message.
    match fee_recipients(cluster, member) {
        Some(FeeRecipients::One(address)) => {
            // ValidatorProposerOptions.java: --validators-proposer-default-fee-recipient.
            flags.push(format!(
                "--validators-proposer-default-fee-recipient={address}"
            ));
        }
        Some(FeeRecipients::PerValidator(config)) => {
            // ValidatorProposerOptions.java: --validators-proposer-config (a file or URL).
            flags.push(format!(
                "--validators-proposer-config={}",
                proposer_config_path()
            ));
            init.push(InitStep {
                name: INIT_PROPOSER_CONFIG,
                image: StepImage::Client,
                script: format!(
                    "set -eu\nprintf '%s' \"${ENV_PROPOSER_CONFIG}\" > {}\n",
                    proposer_config_path()
                ),
                invocations: Vec::new(),
                env: vec![(ENV_PROPOSER_CONFIG.to_owned(), config)],
                data_mount: MOUNT_VC_DATA,
            });
        }
        None => {}
    }
    if cluster.builder_api {
        // ValidatorProposerOptions.java: --validators-builder-registration-default-enabled.
        flags.push("--validators-builder-registration-default-enabled=true".to_owned());
    }
    ClientRun {
        main: Invocation::new(
            &["/opt/teku/bin/teku", "validator-client"],
            "validator-client",
            flags,
        ),
        init,
    }
}
