//! Each validator client's container and key import: flags, key layout, data directory. The
//! commands follow Obol's charon-distributed-validator-node scripts for each client; every
//! client talks to Charon's pod-local validator API and runs in distributed mode.
//!
//! Keys arrive as Charon's DKG writes them: `keystore-N.json` with its password in
//! `keystore-N.txt`, mounted read-only from the member's own Secret.

use crate::api::ValidatorClient;
use crate::controller::model::{Cluster, Member};
use crate::controller::names::{
    MOUNT_KEY_SHARE, MOUNT_VC_DATA, PORT_VALIDATOR_API, PORT_VC_METRICS,
};

/// What the client's containers run.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientRun {
    /// Main container command and arguments.
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// A one-off key import before the client starts (idempotent: safe on every restart),
    /// as a shell script run by the client's own image; `None` when the client reads the
    /// keystores directly.
    pub import_script: Option<String>,
}

fn beacon() -> String {
    format!("http://127.0.0.1:{PORT_VALIDATOR_API}")
}

fn s(text: &str) -> String {
    text.to_owned()
}

/// The client's run for one member.
pub fn client_run(cluster: &Cluster, member: &Member) -> ClientRun {
    let network = cluster.network.as_str();
    let keys = MOUNT_KEY_SHARE;
    let data = MOUNT_VC_DATA;
    let builder = cluster.builder_api;
    let mut run = match member.client {
        ValidatorClient::Lighthouse => ClientRun {
            command: vec![s("lighthouse")],
            args: [
                s("validator"),
                format!("--network={network}"),
                format!("--datadir={data}/lighthouse"),
                format!("--beacon-nodes={}", beacon()),
                s("--distributed"),
                s("--metrics"),
                s("--metrics-address=0.0.0.0"),
                format!("--metrics-port={PORT_VC_METRICS}"),
                s("--use-long-timeouts"),
            ]
            .into_iter()
            .chain(builder.then(|| s("--builder-proposals")))
            .collect(),
            // Imports each keystore with its own password; an already imported key is skipped,
            // and slashing protection (in the same datadir) is never reset.
            import_script: Some(format!(
                "set -eu\nfor keystore in {keys}/keystore-*.json; do\n  lighthouse --network={network} account validator import --datadir={data}/lighthouse --reuse-password --keystore \"$keystore\" --password-file \"${{keystore%.json}}.txt\" || true\ndone\n"
            )),
        },
        ValidatorClient::Teku => ClientRun {
            command: vec![s("/opt/teku/bin/teku")],
            args: [
                s("validator-client"),
                format!("--network={network}"),
                format!("--data-path={data}/teku"),
                format!("--beacon-node-api-endpoint={}", beacon()),
                format!("--validator-keys={keys}:{keys}"),
                s("--validators-keystore-locking-enabled=false"),
                s("--Xobol-dvt-integration-enabled=true"),
                s("--metrics-enabled=true"),
                s("--metrics-interface=0.0.0.0"),
                format!("--metrics-port={PORT_VC_METRICS}"),
                s("--metrics-host-allowlist=*"),
            ]
            .into_iter()
            .chain(builder.then(|| s("--validators-builder-registration-default-enabled=true")))
            .collect(),
            import_script: None,
        },
        ValidatorClient::Prysm => ClientRun {
            command: vec![s("/app/cmd/validator/validator")],
            args: [
                format!("--{network}"),
                s("--accept-terms-of-use"),
                format!("--wallet-dir={data}/prysm/wallet"),
                format!("--wallet-password-file={data}/prysm/wallet-password.txt"),
                format!("--datadir={data}/prysm"),
                format!("--beacon-rest-api-provider={}", beacon()),
                s("--distributed"),
                s("--monitoring-host=0.0.0.0"),
                format!("--monitoring-port={PORT_VC_METRICS}"),
            ]
            .into_iter()
            .chain(builder.then(|| s("--enable-builder")))
            .collect(),
            // The wallet password is generated once and kept on the data volume; each keystore
            // is imported with its own password.
            import_script: Some(format!(
                "set -eu\nmkdir -p {data}/prysm\nif [ ! -f {data}/prysm/wallet-password.txt ]; then head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > {data}/prysm/wallet-password.txt; fi\nif [ ! -d {data}/prysm/wallet/direct ]; then /app/cmd/validator/validator wallet create --accept-terms-of-use --keymanager-kind=direct --wallet-dir={data}/prysm/wallet --wallet-password-file={data}/prysm/wallet-password.txt; fi\nfor keystore in {keys}/keystore-*.json; do\n  tmp=$(mktemp -d)\n  cp \"$keystore\" \"$tmp/\"\n  /app/cmd/validator/validator accounts import --accept-terms-of-use --keys-dir=\"$tmp\" --wallet-dir={data}/prysm/wallet --wallet-password-file={data}/prysm/wallet-password.txt --account-password-file=\"${{keystore%.json}}.txt\"\n  rm -rf \"$tmp\"\ndone\n"
            )),
        },
        ValidatorClient::Nimbus => ClientRun {
            command: vec![s("/home/user/nimbus_validator_client")],
            args: [
                format!("--data-dir={data}/nimbus"),
                format!("--beacon-node={}", beacon()),
                s("--doppelganger-detection=false"),
                s("--distributed"),
                s("--metrics"),
                s("--metrics-address=0.0.0.0"),
                format!("--metrics-port={PORT_VC_METRICS}"),
            ]
            .into_iter()
            .chain(builder.then(|| s("--payload-builder=true")))
            .collect(),
            // `deposits import` reads the password on stdin; one keystore at a time.
            import_script: Some(format!(
                "set -eu\nfor keystore in {keys}/keystore-*.json; do\n  tmp=$(mktemp -d)\n  cp \"$keystore\" \"$tmp/\"\n  /home/user/nimbus_beacon_node deposits import --data-dir={data}/nimbus \"$tmp\" < \"${{keystore%.json}}.txt\"\n  rm -rf \"$tmp\"\ndone\n"
            )),
        },
        ValidatorClient::Lodestar => ClientRun {
            command: vec![s("node"), s("/usr/app/packages/cli/bin/lodestar")],
            args: [
                s("validator"),
                format!("--network={network}"),
                format!("--dataDir={data}/lodestar"),
                format!("--keystoresDir={data}/lodestar/keystores"),
                format!("--secretsDir={data}/lodestar/secrets"),
                format!("--beaconNodes={}", beacon()),
                s("--distributed"),
                s("--metrics=true"),
                s("--metrics.address=0.0.0.0"),
                format!("--metrics.port={PORT_VC_METRICS}"),
            ]
            .into_iter()
            .chain(builder.then(|| s("--builder")))
            .collect(),
            // Lodestar's layout: keystores/<pubkey>/voting-keystore.json and secrets/<pubkey>.
            import_script: Some(format!(
                "set -eu\nmkdir -p {data}/lodestar/keystores {data}/lodestar/secrets\nfor keystore in {keys}/keystore-*.json; do\n  pubkey=0x$(sed -n 's/.*\"pubkey\": *\"\\([0-9a-fA-Fx]*\\)\".*/\\1/p' \"$keystore\" | sed 's/^0x//')\n  mkdir -p {data}/lodestar/keystores/$pubkey\n  cp \"$keystore\" {data}/lodestar/keystores/$pubkey/voting-keystore.json\n  cp \"${{keystore%.json}}.txt\" {data}/lodestar/secrets/$pubkey\n  chmod 0600 {data}/lodestar/secrets/$pubkey\ndone\n"
            )),
        },
    };
    run.args.extend(cluster.client_extra_args.iter().cloned());
    run
}
