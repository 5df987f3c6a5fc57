//! The peer monitor: reads the members' Charon monitoring endpoint (`http://<pod IP>:3620/metrics`)
//! in the background, keeps what it says per DV (a [`PeerView`]: who answered, who says it is not
//! ready and why), and asks for a reconcile of a DV when who is up, or why a member is not
//! ready, changes. Reconciles only read what it keeps: no request of a reconcile waits on a pod.
//!
//! A DV with remote members has every local member read (their pings are how remote members are
//! seen); a DV run wholly here has only its members that are not Ready read (to say why).

use std::collections::HashMap;
use std::net::SocketAddr;

use futures::stream;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::caches::Caches;
use super::context::Context;
use super::memory::{DvKey, DvMemory};
use super::names::LABEL_DV;
use super::names::PORT_MONITORING;
use super::names::member_pod_name;
use super::run::Triggers;
use super::status;
use crate::api::DistributedValidator;
use crate::domain::peers::{PeerHealth, parse_metrics};
use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Charon's monitoring port (its `--monitoring-address`, as the builder sets it).
pub(super) const CHARON_MONITORING_PORT: u16 = PORT_MONITORING as u16;
/// How long one read of a Charon may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Charon pages read at once.
const READS_AT_ONCE: usize = 32;
/// A page larger than this is not Charon's.
const MAX_PAGE: usize = 1 << 20;

/// What the peer monitor knows of a DV now (empty when it has read nothing yet).
pub(super) fn peer_health(ctx: &Context, dv: &DistributedValidator) -> PeerHealth {
    let key = (dv.namespace().unwrap_or_default(), dv.name_any());
    ctx.memory
        .read(&key, |m| m.peers.as_ref().map(|(_, health)| health.clone()))
        .flatten()
        .unwrap_or_default()
}

/// Reads the members' Charon every `settings.peer_read_every`, until aborted.
pub(super) async fn watch_peers(
    dvs: Store<DistributedValidator>,
    ctx: Arc<Context>,
    triggers: Triggers,
    every: Duration,
    within: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let targets: Vec<((String, String), u32, SocketAddr)> = dvs
            .state()
            .iter()
            .flat_map(|dv| read_targets(dv, &ctx.caches))
            .collect();
        let reads = stream::iter(targets)
            .map(|(key, index, address)| async move { (key, index, read_charon(address).await) })
            .buffer_unordered(READS_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        let now = Timestamp::now();
        // Live DVs, and whether each has remote members.
        let live: BTreeMap<(String, String), bool> = dvs
            .state()
            .iter()
            .map(|dv| {
                (
                    (dv.namespace().unwrap_or_default(), dv.name_any()),
                    dv.spec.members.iter().any(|m| m.remote),
                )
            })
            .collect();
        let changed = ctx
            .memory
            .update_all(|all| conclude_round(all, reads, &live, now, within))
            .unwrap_or_default();
        for (namespace, name) in changed {
            let _ = triggers.unbounded_send(ObjectRef::new(&name).within(&namespace));
        }
    }
}

/// Records a round of reads in each live DV's memory and concludes its peers' health afresh;
/// returns the DVs whose health changed in a way their status shows (they are reconciled).
fn conclude_round(
    all: &mut HashMap<DvKey, DvMemory>,
    reads: Vec<(DvKey, u32, Result<String, String>)>,
    live: &BTreeMap<DvKey, bool>,
    now: Timestamp,
    within: Duration,
) -> Vec<DvKey> {
    for (key, index, page) in reads {
        let Ok(page) = page else { continue };
        let (view, _) = all.entry(key).or_default().peers.get_or_insert_default();
        view.record(index, &parse_metrics(&page), now);
    }
    let mut changed = Vec::new();
    for (key, memory) in all.iter_mut() {
        let Some(has_remote) = live.get(key).copied() else {
            // Deleted: the rest of its memory goes with `forget_deleted`.
            memory.peers = None;
            continue;
        };
        let Some((view, health)) = memory.peers.as_mut() else {
            continue;
        };
        let fresh = PeerHealth::of(view, now, within);
        if fresh.differs_from(health, has_remote) {
            changed.push(key.clone());
        }
        *health = fresh;
    }
    changed
}

/// The members of `dv` whose Charon is read this round: (DV key, share index, address).
fn read_targets(
    dv: &DistributedValidator,
    caches: &Caches,
) -> Vec<((String, String), u32, SocketAddr)> {
    let namespace = dv.namespace().unwrap_or_default();
    let dv_name = dv.name_any();
    let has_remote = dv.spec.members.iter().any(|m| m.remote);
    dv.spec
        .members
        .iter()
        .filter(|m| m.is_local())
        .filter_map(|m| {
            let key = ObjectRef::new(&member_pod_name(&dv_name, &m.name)).within(&namespace);
            let pod = caches.pods.get(&key)?;
            if pod.labels().get(LABEL_DV) != Some(&dv_name) {
                return None;
            }
            let status = pod.status.as_ref()?;
            if status.phase.as_deref() != Some("Running")
                || (!has_remote && status::pod_is_ready(&pod))
            {
                return None;
            }
            let ip: std::net::IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
            Some((
                (namespace.clone(), dv_name.clone()),
                m.index,
                SocketAddr::new(ip, CHARON_MONITORING_PORT),
            ))
        })
        .collect()
}

/// `GET /metrics` over HTTP/1.0 (the connection closes after the answer), within
/// [`READ_TIMEOUT`]; the body of a 200 answer.
async fn read_charon(address: SocketAddr) -> Result<String, String> {
    let read = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect {address}: {e}"))?;
        stream
            .write_all(
                format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\nAccept: text/plain\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .map_err(|e| format!("write {address}: {e}"))?;
        let mut answer = Vec::new();
        stream
            .take(MAX_PAGE as u64)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("read {address}: {e}"))?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("{address}: not an HTTP answer"))?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return Err(format!(
                "{address}: {}",
                head.lines().next().unwrap_or_default()
            ));
        }
        Ok(body.to_owned())
    };
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| format!("{address}: no answer within {READ_TIMEOUT:?}"))?
}
