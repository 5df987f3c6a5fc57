//! What the members' Charon says about themselves and their peers, and which members count as
//! up from it. Pure: the text of a Charon `/metrics` page in, a [`CharonReport`] out; reports
//! gathered over time into a [`PeerView`]; a view and the time in, the members up.
//!
//! The series are Charon v1.10.3's (read from its source): `app_monitoring_readyz` (app/metrics.go
//! lines 14-34, `readyz*`: 1 ready, 2 beacon node down, 3 beacon node syncing, 4 quorum peers not
//! connected, 5 validator client not connected, 7 beacon node has zero peers, 8 beacon node far
//! behind; 6, "validator client missing validators", was removed as flaky and is no longer set), `app_peerinfo_index{peer}` (app/peerinfo/peerinfo.go:
//! each peer of the lock, by its peer name, with its index in the cluster definition) and
//! `p2p_ping_success{peer}` (p2p/metrics.go: 1 when the last ping of the peer succeeded).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// Why a member's Charon says it is not ready (`/readyz` fails).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NotReady {
    BeaconNodeDown,
    BeaconNodeSyncing,
    InsufficientPeers,
    ValidatorClientNotConnected,
    BeaconNodeZeroPeers,
    BeaconNodeFarBehind,
    /// A value this version does not know.
    Other(i64),
}

impl NotReady {
    /// From `app_monitoring_readyz`; `None` for 1 (ready).
    pub fn from_readyz(value: i64) -> Option<NotReady> {
        Some(match value {
            1 => return None,
            2 => NotReady::BeaconNodeDown,
            3 => NotReady::BeaconNodeSyncing,
            4 => NotReady::InsufficientPeers,
            5 => NotReady::ValidatorClientNotConnected,
            7 => NotReady::BeaconNodeZeroPeers,
            8 => NotReady::BeaconNodeFarBehind,
            other => NotReady::Other(other),
        })
    }
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::BeaconNodeDown => f.write_str("beacon node down"),
            NotReady::BeaconNodeSyncing => f.write_str("beacon node syncing"),
            NotReady::InsufficientPeers => f.write_str("quorum peers not connected"),
            NotReady::ValidatorClientNotConnected => f.write_str("validator client not connected"),
            NotReady::BeaconNodeZeroPeers => f.write_str("beacon node has zero peers"),
            NotReady::BeaconNodeFarBehind => f.write_str("beacon node far behind"),
            NotReady::Other(value) => write!(f, "app_monitoring_readyz {value}"),
        }
    }
}

/// One read of a member's Charon `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CharonReport {
    /// `app_monitoring_readyz`, when served.
    pub readyz: Option<i64>,
    /// Whether the last ping of each peer (by share index) succeeded.
    pub pings: BTreeMap<u32, bool>,
}

/// Reads the series this module knows from a Prometheus text exposition; others are skipped,
/// and so is anything malformed (a page from another program gives an empty report).
pub fn parse_metrics(text: &str) -> CharonReport {
    let mut readyz = None;
    let mut index_of: BTreeMap<String, u32> = BTreeMap::new();
    let mut ping_by_name: BTreeMap<String, bool> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let peer = || label(labels, "peer");
        match name {
            "app_monitoring_readyz" => readyz = Some(value as i64),
            "app_peerinfo_index" if value >= 0.0 => {
                if let Some(peer) = peer() {
                    index_of.insert(peer, value as u32);
                }
            }
            "p2p_ping_success" => {
                if let Some(peer) = peer() {
                    ping_by_name.insert(peer, value >= 1.0);
                }
            }
            _ => {}
        }
    }
    let pings = ping_by_name
        .into_iter()
        .filter_map(|(peer, ok)| Some((*index_of.get(&peer)?, ok)))
        .collect();
    CharonReport { readyz, pings }
}

/// The value of label `key` in `a="x",b="y"` (Charon's peer names need no escapes).
fn label(labels: &str, key: &str) -> Option<String> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// What this cluster's members' Charon have said over time, per share index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerView {
    /// When each member was last seen answering: its own `/metrics` read, or a local member's
    /// successful ping of it.
    pub last_seen: BTreeMap<u32, Timestamp>,
    /// What each member read here last said of its own readiness.
    pub not_ready: BTreeMap<u32, NotReady>,
}

impl PeerView {
    /// Records a report read at `at` from the Charon of member `reporter`.
    pub fn record(&mut self, reporter: u32, report: &CharonReport, at: Timestamp) {
        self.last_seen.insert(reporter, at);
        match report.readyz.and_then(NotReady::from_readyz) {
            Some(why) => {
                self.not_ready.insert(reporter, why);
            }
            None => {
                self.not_ready.remove(&reporter);
            }
        }
        for (&peer, &answered) in &report.pings {
            if answered && peer != reporter {
                self.last_seen.insert(peer, at);
            }
        }
    }

    /// The members seen answering within `within` of `now`. With no member of this cluster
    /// read lately, nothing is fresh, so remote members count as down (the safe side).
    pub fn up(&self, now: Timestamp, within: Duration) -> BTreeSet<u32> {
        self.last_seen
            .iter()
            .filter(|(_, seen)| {
                now.duration_since(**seen)
                    .try_into()
                    .is_ok_and(|age: Duration| age <= within)
            })
            .map(|(&index, _)| index)
            .collect()
    }
}

/// What a reconcile knows of a DV's members from Charon: who is up, when each was last seen,
/// and why members read here say they are not ready.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerHealth {
    pub up: BTreeSet<u32>,
    pub last_seen: BTreeMap<u32, Timestamp>,
    pub not_ready: BTreeMap<u32, NotReady>,
    /// Whether any member here has been read at all (before that, nothing is known).
    pub observed: bool,
}

impl PeerHealth {
    pub fn of(view: &PeerView, now: Timestamp, within: Duration) -> PeerHealth {
        PeerHealth {
            up: view.up(now, within),
            last_seen: view.last_seen.clone(),
            not_ready: view.not_ready.clone(),
            observed: !view.last_seen.is_empty(),
        }
    }

    /// Whether a reconcile must look again: why a member is not ready changed, or, for a DV
    /// with remote members (whose quorum depends on it), who is up (a newer last-seen time alone
    /// never does).
    pub fn differs_from(&self, other: &PeerHealth, has_remote: bool) -> bool {
        self.not_ready != other.not_ready
            || (has_remote && (self.up != other.up || self.observed != other.observed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP app_monitoring_readyz Set to 1 if the node is operational
# TYPE app_monitoring_readyz gauge
app_monitoring_readyz 3
# TYPE app_peerinfo_index gauge
app_peerinfo_index{peer="magnificent-panda"} 0
app_peerinfo_index{peer="quiet-river"} 1
app_peerinfo_index{peer="bold-falcon"} 2
app_peerinfo_index{peer="wise-otter"} 3
# TYPE p2p_ping_success gauge
p2p_ping_success{peer="quiet-river"} 1
p2p_ping_success{peer="bold-falcon"} 0
p2p_ping_success{peer="wise-otter"} 1
p2p_ping_latency_secs_bucket{peer="wise-otter",le="0.1"} 4
"#;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    #[test]
    fn a_charon_page_gives_its_readiness_and_pings_by_share_index() {
        let report = parse_metrics(PAGE);
        assert_eq!(report.readyz, Some(3));
        assert_eq!(
            report.pings,
            BTreeMap::from([(1, true), (2, false), (3, true)])
        );
        assert_eq!(
            NotReady::from_readyz(3).map(|r| r.to_string()).as_deref(),
            Some("beacon node syncing")
        );
        assert_eq!(NotReady::from_readyz(1), None);
        assert_eq!(
            parse_metrics("<html>not metrics</html>"),
            CharonReport::default()
        );
    }

    #[test]
    fn a_member_is_up_while_someone_saw_it_answer_within_the_window() {
        let mut view = PeerView::default();
        view.record(0, &parse_metrics(PAGE), at(0));
        let within = Duration::from_secs(60);
        assert_eq!(view.up(at(10), within), BTreeSet::from([0, 1, 3]));
        assert_eq!(view.not_ready.get(&0), Some(&NotReady::BeaconNodeSyncing));
        // Nobody read since: everyone ages out, remote members included.
        assert!(view.up(at(61), within).is_empty());
        // Member 2 answers later.
        let report = CharonReport {
            readyz: Some(1),
            pings: BTreeMap::from([(2, true)]),
        };
        view.record(1, &report, at(70));
        assert_eq!(view.up(at(75), within), BTreeSet::from([1, 2]));
        assert!(!view.not_ready.contains_key(&1));
        let before = PeerHealth::of(&view, at(75), within);
        let later = PeerHealth::of(&view, at(76), within);
        assert!(!later.differs_from(&before, true), "only time passed");
        let gone = PeerHealth::of(&view, at(200), within);
        assert!(gone.differs_from(&before, true));
        assert!(
            !gone.differs_from(&before, false),
            "who is up does not matter to a DV run wholly here"
        );
    }
}
