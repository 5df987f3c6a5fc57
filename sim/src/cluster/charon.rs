//! Charon as the simulated kubelet runs it: a pod with a Charon container gets an address on the
//! loopback range and serves Charon's monitoring `/metrics` on it (port 3620), with the series
//! an operator reads of a real Charon v1.10.3: `app_monitoring_readyz` (app/metrics.go: 1 ready,
//! 2 beacon node down, 3 syncing, 4 quorum peers not connected, 5 validator client not
//! connected, 7 beacon node zero peers, 8 far behind; charon v1.10 no longer sets 6),
//! `app_peerinfo_index{peer}` (app/peerinfo/peerinfo.go: every peer of the lock with its index)
//! and `p2p_ping_success{peer}` (p2p/metrics.go: whether the last ping of a peer succeeded).
//!
//! Peers are found through a [`P2pWorld`] that several simulated clusters may share (members of
//! one lock run by different organisations): a peer answers pings while its pod runs on a node
//! that is up, and the link between the two clusters is not cut.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::lock;

/// Charon's monitoring port (`--monitoring-address`, Charon's default 3620).
pub const MONITORING_PORT: u16 = 3620;
/// The pod label naming a member's position in the lock, which the operator sets and a real
/// Charon learns by finding its own ENR in the lock.
pub const SHARE_INDEX_LABEL: &str = "dvt.io/share-index";

/// Why Charon's `/readyz` fails, with the `app_monitoring_readyz` value Charon v1.7.1 reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotReadyReason {
    BeaconNodeDown,
    BeaconNodeSyncing,
    InsufficientPeers,
    VcNotConnected,
    VcMissingValidators,
    BeaconNodeZeroPeers,
    BeaconNodeFarBehind,
}

impl NotReadyReason {
    /// The gauge value (app/metrics.go `readyz*` constants).
    pub fn readyz(self) -> u8 {
        match self {
            NotReadyReason::BeaconNodeDown => 2,
            NotReadyReason::BeaconNodeSyncing => 3,
            NotReadyReason::InsufficientPeers => 4,
            NotReadyReason::VcNotConnected => 5,
            NotReadyReason::VcMissingValidators => 6,
            NotReadyReason::BeaconNodeZeroPeers => 7,
            NotReadyReason::BeaconNodeFarBehind => 8,
        }
    }
}

/// One simulated cluster's place in a [`P2pWorld`].
pub type Site = u64;

/// The peer-to-peer network the members of a lock share, across simulated clusters.
#[derive(Debug, Default)]
pub struct P2pWorld {
    next_site: AtomicU64,
    /// (lock hash, share index) → the sites running that member, and whether it is up there.
    members: Mutex<HashMap<(String, u32), BTreeMap<Site, bool>>>,
    /// Pairs of sites that cannot reach each other (smaller site first).
    cuts: Mutex<BTreeSet<(Site, Site)>>,
}

impl P2pWorld {
    pub fn new() -> Arc<P2pWorld> {
        Arc::new(P2pWorld::default())
    }

    /// A new site (one simulated cluster).
    pub fn join(&self) -> Site {
        self.next_site.fetch_add(1, Ordering::Relaxed)
    }

    /// Cuts the link between two sites: their members stop answering each other's pings.
    pub fn cut(&self, a: Site, b: Site) {
        lock(&self.cuts).insert((a.min(b), a.max(b)));
    }

    /// Restores the link between two sites.
    pub fn mend(&self, a: Site, b: Site) {
        lock(&self.cuts).remove(&(a.min(b), a.max(b)));
    }

    fn set(&self, site: Site, lock_hash: &str, index: u32, up: bool) {
        lock(&self.members)
            .entry((lock_hash.to_owned(), index))
            .or_default()
            .insert(site, up);
    }

    fn forget(&self, site: Site, lock_hash: &str, index: u32) {
        let mut members = lock(&self.members);
        let key = (lock_hash.to_owned(), index);
        if let Some(sites) = members.get_mut(&key) {
            sites.remove(&site);
            if sites.is_empty() {
                members.remove(&key);
            }
        }
    }

    /// Whether a member at `from` gets an answer when it pings share `index` of the lock.
    pub fn answers(&self, from: Site, lock_hash: &str, index: u32) -> bool {
        let cuts = lock(&self.cuts).clone();
        lock(&self.members)
            .get(&(lock_hash.to_owned(), index))
            .is_some_and(|sites| {
                sites.iter().any(|(&site, &up)| {
                    up && (site == from || !cuts.contains(&(from.min(site), from.max(site))))
                })
            })
    }
}

/// What the simulated Charon of one pod knows: its lock, its index, its readiness.
#[derive(Debug)]
struct Node {
    world: Arc<P2pWorld>,
    site: Site,
    lock_hash: String,
    operators: u32,
    index: u32,
    readyz: Mutex<u8>,
    /// When this Charon last had quorum peers connected (`None`: never yet).
    quorum_connected_at: Mutex<Option<std::time::Instant>>,
}

impl Node {
    fn peer_name(&self, index: u32) -> String {
        let short: String = self
            .lock_hash
            .trim_start_matches("0x")
            .chars()
            .take(6)
            .collect();
        format!("sim-{short}-peer{index}")
    }

    /// The exposition text Charon's `/metrics` would serve now.
    fn metrics(&self) -> String {
        let mut text = String::from(
            "# HELP app_monitoring_readyz Set to 1 if the node is operational and monitoring api `/readyz` endpoint is returning 200s.\n# TYPE app_monitoring_readyz gauge\n",
        );
        text.push_str(&format!("app_monitoring_readyz {}\n", *lock(&self.readyz)));
        text.push_str("# HELP app_peerinfo_index Constant gauge set to the peer index in the cluster definition\n# TYPE app_peerinfo_index gauge\n");
        for index in 0..self.operators {
            text.push_str(&format!(
                "app_peerinfo_index{{peer=\"{}\"}} {index}\n",
                self.peer_name(index)
            ));
        }
        text.push_str("# HELP p2p_ping_success Whether the last ping was successful (1) or not (0). Can be used as proxy for connected peers\n# TYPE p2p_ping_success gauge\n");
        for index in (0..self.operators).filter(|&i| i != self.index) {
            let answered = self.world.answers(self.site, &self.lock_hash, index);
            text.push_str(&format!(
                "p2p_ping_success{{peer=\"{}\"}} {}\n",
                self.peer_name(index),
                u8::from(answered)
            ));
        }
        text
    }
}

/// A running simulated Charon: its address, and its server (stopped when this is dropped).
#[derive(Debug)]
pub struct Charon {
    pub ip: Ipv4Addr,
    node: Arc<Node>,
    server: tokio::task::AbortHandle,
}

impl Drop for Charon {
    fn drop(&mut self) {
        self.server.abort();
        self.node
            .world
            .forget(self.node.site, &self.node.lock_hash, self.node.index);
    }
}

impl Charon {
    /// Starts serving `/metrics` for a Charon pod on a free loopback address. `lock_text` is
    /// the pod's `cluster-lock.json`. `None` when the lock cannot be read or no address is free.
    pub fn start(world: Arc<P2pWorld>, site: Site, lock_text: &str, index: u32) -> Option<Charon> {
        let lock_json: serde_json::Value = serde_json::from_str(lock_text).ok()?;
        // A lock without its hash (test data) is known by its text.
        let lock_hash = match lock_json["lock_hash"].as_str() {
            Some(hash) => hash.to_owned(),
            None => format!("0x{:016x}", fnv1a(lock_text.as_bytes())),
        };
        let operators = lock_json["cluster_definition"]["operators"]
            .as_array()?
            .len() as u32;
        let node = Arc::new(Node {
            world,
            site,
            lock_hash,
            operators,
            index,
            readyz: Mutex::new(1),
            quorum_connected_at: Mutex::new(None),
        });
        let (ip, listener) = bind_loopback()?;
        let app = axum::Router::new()
            .route("/metrics", get(serve_metrics))
            .with_state(node.clone());
        let listener = tokio::net::TcpListener::from_std(listener).ok()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
        .abort_handle();
        Some(Charon { ip, node, server })
    }

    /// Reports the member up (its Charon container runs on a node that is up) or down, and
    /// returns what its `/readyz` says: `fault` (a beacon node syncing, say), else, with
    /// `peer_grace`, Charon's own quorum check (app/monitoringapi.go v1.7.1
    /// `quorumPeersConnected`: at least `Threshold(n) - 1` peers connected, `Threshold(n) =
    /// ceil(2n/3)`; too few for six rounds, a minute, or since it started, is
    /// `InsufficientPeers`).
    pub fn observe(
        &self,
        up: bool,
        fault: Option<NotReadyReason>,
        now: std::time::Instant,
        peer_grace: Option<std::time::Duration>,
    ) -> Option<NotReadyReason> {
        let node = &self.node;
        node.world.set(node.site, &node.lock_hash, node.index, up);
        let quorum_lost = peer_grace.is_some_and(|grace| {
            let needed = (2 * node.operators).div_ceil(3).saturating_sub(1);
            let connected = (0..node.operators)
                .filter(|&i| i != node.index && node.world.answers(node.site, &node.lock_hash, i))
                .count() as u32;
            let mut connected_at = lock(&node.quorum_connected_at);
            if up && connected >= needed {
                *connected_at = Some(now);
            }
            connected_at.is_none_or(|at| now.duration_since(at) >= grace)
        });
        let reason = fault.or(quorum_lost.then_some(NotReadyReason::InsufficientPeers));
        *lock(&node.readyz) = reason.map_or(1, NotReadyReason::readyz);
        reason
    }
}

/// FNV-1a: stable across processes, for locks that carry no hash of their own.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Monitoring pages served by every simulated Charon of this process.
static PAGES_SERVED: AtomicU64 = AtomicU64::new(0);

/// Monitoring pages served so far by the simulated Charons of this process (what a peer monitor
/// costs the simulator).
pub fn pages_served() -> u64 {
    PAGES_SERVED.load(Ordering::Relaxed)
}

async fn serve_metrics(State(node): State<Arc<Node>>) -> String {
    PAGES_SERVED.fetch_add(1, Ordering::Relaxed);
    node.metrics()
}

/// A listener on a free address of 127.0.0.0/8 (every address of it is local on Linux), port
/// 3620: each pod its own address, as on a pod network. Several simulators may run at once (in
/// several test processes), so an address in use is skipped.
fn bind_loopback() -> Option<(Ipv4Addr, std::net::TcpListener)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id()).wrapping_mul(7_919);
    for _ in 0..64 {
        let n = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % (250 * 250 * 250);
        let ip = Ipv4Addr::new(
            127,
            (n / 62_500) as u8 + 2,
            (n / 250 % 250) as u8 + 1,
            (n % 250) as u8 + 1,
        );
        if let Ok(listener) = std::net::TcpListener::bind((ip, MONITORING_PORT)) {
            listener.set_nonblocking(true).ok()?;
            return Some((ip, listener));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str =
        r#"{"lock_hash": "0xabcdef0123", "cluster_definition": {"operators": [{}, {}, {}, {}]}}"#;

    #[test]
    fn a_peer_answers_while_it_is_up_and_the_link_holds() {
        let world = P2pWorld::new();
        let (a, b) = (world.join(), world.join());
        world.set(b, "0xabcdef0123", 2, true);
        assert!(world.answers(a, "0xabcdef0123", 2));
        assert!(!world.answers(a, "0xabcdef0123", 3), "never seen");
        world.cut(b, a);
        assert!(!world.answers(a, "0xabcdef0123", 2));
        assert!(
            world.answers(b, "0xabcdef0123", 2),
            "its own site still reaches it"
        );
        world.mend(a, b);
        world.set(b, "0xabcdef0123", 2, false);
        assert!(!world.answers(a, "0xabcdef0123", 2));
    }

    #[tokio::test]
    async fn a_charon_pod_serves_readiness_peer_indexes_and_pings() {
        let world = P2pWorld::new();
        let site = world.join();
        let alpha = Charon::start(world.clone(), site, LOCK, 0).expect("a loopback address");
        let bravo = Charon::start(world.clone(), site, LOCK, 1).expect("a loopback address");
        assert_ne!(alpha.ip, bravo.ip);
        let now = std::time::Instant::now();
        alpha.observe(true, None, now, None);
        bravo.observe(true, Some(NotReadyReason::BeaconNodeSyncing), now, None);
        let text = alpha.node.metrics();
        assert!(text.contains("app_monitoring_readyz 1\n"), "{text}");
        assert!(text.contains("app_peerinfo_index{peer=\"sim-abcdef-peer3\"} 3\n"));
        assert!(text.contains("p2p_ping_success{peer=\"sim-abcdef-peer1\"} 1\n"));
        assert!(text.contains("p2p_ping_success{peer=\"sim-abcdef-peer2\"} 0\n"));
        assert!(
            !text.contains("p2p_ping_success{peer=\"sim-abcdef-peer0\"}"),
            "no ping of itself"
        );
        assert!(bravo.node.metrics().contains("app_monitoring_readyz 3\n"));
        drop(bravo);
        assert!(
            alpha
                .node
                .metrics()
                .contains("p2p_ping_success{peer=\"sim-abcdef-peer1\"} 0\n")
        );
    }

    #[tokio::test]
    async fn charon_is_ready_while_quorum_peers_answer_and_not_after_the_grace() {
        let world = P2pWorld::new();
        let site = world.join();
        let grace = Some(std::time::Duration::from_secs(60));
        let start = std::time::Instant::now();
        let later = |s: u64| start + std::time::Duration::from_secs(s);
        let members: Vec<Charon> = (0..4)
            .map(|i| Charon::start(world.clone(), site, LOCK, i).expect("an address"))
            .collect();
        // Alone at first: never connected, so not ready (Charon starts as not connected).
        assert_eq!(
            members[0].observe(true, None, later(0), grace),
            Some(NotReadyReason::InsufficientPeers)
        );
        // Threshold(4) = 3: two peers besides itself are enough.
        members[1].observe(true, None, later(0), grace);
        members[2].observe(true, None, later(0), grace);
        assert_eq!(members[0].observe(true, None, later(1), grace), None);
        // A peer gone: still ready within the grace, then not.
        members[1].observe(false, None, later(2), grace);
        assert_eq!(members[0].observe(true, None, later(30), grace), None);
        assert_eq!(
            members[0].observe(true, None, later(62), grace),
            Some(NotReadyReason::InsufficientPeers)
        );
        assert!(
            members[0]
                .node
                .metrics()
                .contains("app_monitoring_readyz 4\n")
        );
    }
}
