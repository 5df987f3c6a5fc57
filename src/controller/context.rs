//! What every reconcile shares: settings, the client, the caches, what this process remembers
//! per DV, and the identity the operator's client presents to the API server.

use super::caches::Caches;
use super::dereference::LockChecks;
use super::dereference::LockReads;
use super::names::FIELD_MANAGER;
use kube::Client;
use kube::Resource;
use kube::api::Api;
use kube::runtime::events::Recorder;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Where the controller watches and how many DVs it reconciles at once.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// DVs reconciled at the same time (one DV is never reconciled twice at once). Bounded, so
    /// that a restart with a thousand DVs does not open a thousand request streams at once.
    pub concurrency: u16,
    /// How long a DV's changes are gathered before it is reconciled: its members' pods change
    /// several times each while they start, and one reconcile (and one status write) for a burst
    /// is enough. Delays every reaction by at most this much.
    pub debounce: Duration,
    /// Whether this process may write (the leader's fence; never closed without election).
    pub fence: crate::runtime::leader::Fence,
    /// How often the members' Charon monitoring endpoints are read (see `peers`).
    pub peer_read_every: Duration,
    /// How recently a member must have been seen answering to count as up (remote members count
    /// toward quorum only so).
    pub peer_seen_within: Duration,
}

/// The default of [`Settings::concurrency`].
pub const DEFAULT_CONCURRENCY: u16 = 16;
/// The default of [`Settings::peer_read_every`].
pub const DEFAULT_PEER_READ_EVERY: Duration = Duration::from_secs(10);
/// The default of [`Settings::peer_seen_within`]: three reads missed.
pub const DEFAULT_PEER_SEEN_WITHIN: Duration = Duration::from_secs(30);
/// The default of [`Settings::debounce`].
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(500);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespaces: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            debounce: DEFAULT_DEBOUNCE,
            fence: crate::runtime::leader::Fence::default(),
            peer_read_every: DEFAULT_PEER_READ_EVERY,
            peer_seen_within: DEFAULT_PEER_SEEN_WITHIN,
        }
    }
}

/// Keystore public keys by (namespace, Secret), with the resourceVersion they were read at.
pub(super) type KeystoreCache = std::sync::Mutex<
    std::collections::HashMap<(String, String), (String, Result<BTreeMap<usize, String>, String>)>,
>;

pub(super) struct Context {
    pub(super) metrics: Arc<crate::runtime::metrics::Metrics>,
    /// Checked right before every write: a replica that lost the lease writes nothing more.
    pub(super) fence: crate::runtime::leader::Fence,
    pub(super) client: Client,
    pub(super) recorder: Recorder,
    pub(super) caches: Caches,
    pub(super) keystores: KeystoreCache,
    pub(super) lock_checks: LockChecks,
    pub(super) lock_reads: LockReads,
    /// What this process remembers of each DV (failures, status writes, reported problems,
    /// builds, peer reads).
    pub(super) memory: super::memory::Memories,
}

pub(super) fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// A client configured as the operator's: it names itself in the user agent, so the API
/// server's audit log (and the simulator's timeline) can attribute its deletes and evictions.
pub fn identify(config: &mut kube::Config) {
    // The replica (POD_NAME) after the version, so that audit logs tell replicas apart.
    let replica = std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .map(|name| format!(" ({name})"))
        .unwrap_or_default();
    if let Ok(agent) = http::HeaderValue::from_str(&format!(
        "{FIELD_MANAGER}/{}{replica}",
        env!("CARGO_PKG_VERSION")
    )) {
        config.headers.push((http::header::USER_AGENT, agent));
    }
    // An API server that does not accept the connection is an error soon, not a hang.
    config.connect_timeout = Some(Duration::from_secs(10));
}
