//! Charon's `charon run` command line.
//!
//! Flags read at ObolNetwork/charon v1.10.3: `cmd/run.go` (bindRunFlags, bindPrivKeyFlag,
//! bindLogFlags, bindP2PFlags) and `cmd/debug_tools.go` (--monitoring-address). `charon run` has
//! no data-dir flag, and writes `<key>.lock` only with --private-key-file-lock (default off), so
//! the ENR key is read straight from its read-only Secret mount.

use super::Invocation;
use crate::api::LogLevel;
use crate::controller::model::{Cluster, Member};
use crate::controller::names::{
    ENR_KEY_FILE, LOCK_FILE, MOUNT_ENR_KEY, MOUNT_KEY_SHARE, MOUNT_LOCK, PORT_MONITORING,
    PORT_VALIDATOR_API, member_object_name, member_pod_name,
};

fn log_level(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// The beacon node flags: the endpoints, or in test-network mode Charon's mocks
/// (cmd/run.go v1.10.3 lines 89-94: --simnet-beacon-mock, --simnet-validator-mock,
/// --simnet-validator-keys-dir, --simnet-slot-duration). The validator mock signs with the
/// keystores in the keys directory (app/vmock.go: keystore.LoadFilesUnordered, `keystore-*.json`
/// with their `.txt` passwords): the member's own key-share Secret, mounted read-only.
fn beacon_flags(cluster: &Cluster) -> Vec<String> {
    if let Some(test_network) = &cluster.test_network {
        return vec![
            "--simnet-beacon-mock".to_owned(),
            "--simnet-validator-mock".to_owned(),
            format!("--simnet-validator-keys-dir={MOUNT_KEY_SHARE}"),
            format!("--simnet-slot-duration={}s", test_network.slot_seconds),
        ];
    }
    let mut flags = vec![format!(
        "--beacon-node-endpoints={}",
        cluster
            .beacon_endpoints
            .first()
            .cloned()
            .unwrap_or_default()
    )];
    if cluster.beacon_endpoints.len() > 1 {
        flags.push(format!(
            "--fallback-beacon-node-endpoints={}",
            cluster.beacon_endpoints[1..].join(",")
        ));
    }
    flags
}

/// `charon run` for one member; the image's entrypoint is `/usr/local/bin/charon`
/// (charon v1.10.3 Dockerfile).
pub fn run(cluster: &Cluster, member: &Member) -> Invocation {
    let service = member_object_name(&cluster.name, &member.name);
    let pod = member_pod_name(&cluster.name, &member.name);
    let mut flags = vec![
        format!("--lock-file={MOUNT_LOCK}/{LOCK_FILE}"),
        format!("--private-key-file={MOUNT_ENR_KEY}/{ENR_KEY_FILE}"),
    ];
    flags.extend(beacon_flags(cluster));
    flags.extend([
        // Pod-local: only this member's validator client may use it.
        format!("--validator-api-address=127.0.0.1:{PORT_VALIDATOR_API}"),
        format!("--p2p-tcp-address=0.0.0.0:{}", member.p2p_port),
        // Defaults to 127.0.0.1, where neither probes nor Prometheus reach it.
        format!("--monitoring-address=0.0.0.0:{PORT_MONITORING}"),
        // What peers dial (cmd/run.go v1.10.3: --p2p-external-ip, --p2p-external-hostname): the
        // published address of an exposed member, else its in-cluster name.
        match &member.external_address {
            Some(address) if address.parse::<std::net::IpAddr>().is_ok() => {
                format!("--p2p-external-ip={address}")
            }
            Some(hostname) => format!("--p2p-external-hostname={hostname}"),
            None => format!(
                "--p2p-external-hostname={pod}.{service}.{}.svc",
                cluster.namespace
            ),
        },
        format!("--p2p-relays={}", cluster.relays.join(",")),
        format!("--nickname={}", member.name),
        "--log-format=json".to_owned(),
        format!("--log-level={}", log_level(cluster.log_level)),
    ]);
    if cluster.builder_api {
        flags.push("--builder-api".to_owned());
    }
    flags.extend(cluster.charon_extra_args.iter().cloned());
    Invocation::new(&["/usr/local/bin/charon", "run"], "run", flags)
}
