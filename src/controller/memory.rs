//! What this process remembers of each DV between reconciles, in one place: keyed once by
//! (namespace, name) and forgotten at once when the DV goes (see `run::forget_deleted` and a
//! reconcile of a DV being deleted). Nothing here is needed for correctness after a restart:
//! it spares writes, Events and builds.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use super::built::Built;
use super::events::ReportedProblem;
use super::retry::Failures;
use super::update_status::StatusWritten;
use crate::domain::peers::{PeerHealth, PeerView};

/// A DV's (namespace, name).
pub(super) type DvKey = (String, String);

/// What this process remembers of one DV.
#[derive(Default)]
pub(super) struct DvMemory {
    /// Failures since its last good reconcile (backoff and Event limits).
    pub failures: Failures,
    /// Its last status write by this process: when, and what over which version (a repeat of
    /// it before the cache saw it is skipped).
    pub status_written: Option<StatusWritten>,
    /// Since when a detail-only status change (see `update_status::STATUS_DETAILS_WITHIN`) has
    /// been held back.
    pub details_held: Option<Instant>,
    /// The member problems its last pass reported as Events: a problem gets one Event when it
    /// appears, not one per pass.
    pub reported: BTreeSet<ReportedProblem>,
    /// Its last complete build of its children (names and hashes): a reconcile with the same
    /// inputs whose children are applied does not build them again.
    pub built: Option<Built>,
    /// What the peer monitor read of its members' Charon, and the health concluded from it.
    pub peers: Option<(PeerView, PeerHealth)>,
}

/// Every DV's memory.
#[derive(Default)]
pub(super) struct Memories(Mutex<HashMap<DvKey, DvMemory>>);

impl Memories {
    /// Runs `f` on the DV's memory (empty if there was none). `None` only if another thread
    /// panicked holding the lock: then nothing is remembered, which costs writes, not safety.
    pub fn update<R>(&self, key: &DvKey, f: impl FnOnce(&mut DvMemory) -> R) -> Option<R> {
        let mut all = self.0.lock().ok()?;
        Some(f(all.entry(key.clone()).or_default()))
    }

    /// Reads the DV's memory, if there is one.
    pub fn read<R>(&self, key: &DvKey, f: impl FnOnce(&DvMemory) -> R) -> Option<R> {
        self.0.lock().ok()?.get(key).map(f)
    }

    /// Runs `f` over every DV's memory at once (the peer monitor's round).
    pub fn update_all<R>(&self, f: impl FnOnce(&mut HashMap<DvKey, DvMemory>) -> R) -> Option<R> {
        let mut all = self.0.lock().ok()?;
        Some(f(&mut all))
    }

    /// Forgets a DV: it is deleted.
    pub fn forget(&self, key: &DvKey) {
        if let Ok(mut all) = self.0.lock() {
            all.remove(key);
        }
    }

    /// Keeps only the DVs `live` says exist.
    pub fn retain(&self, live: impl Fn(&DvKey) -> bool) {
        if let Ok(mut all) = self.0.lock() {
            all.retain(|key, _| live(key));
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.lock().map(|all| all.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> DvKey {
        ("default".to_owned(), name.to_owned())
    }

    #[test]
    fn a_dv_is_remembered_under_one_key_and_forgotten_whole() {
        let memories = Memories::default();
        memories.update(&key("a"), |m| m.details_held = Some(Instant::now()));
        memories.update(&key("a"), |m| {
            m.reported.insert(ReportedProblem {
                reason: "SecretMissing",
                member: "alpha".into(),
                why: "gone".into(),
                secrets: vec![],
            })
        });
        memories.update(&key("b"), |m| m.details_held = Some(Instant::now()));
        assert_eq!(memories.read(&key("a"), |m| m.reported.len()), Some(1));
        assert_eq!(memories.read(&key("c"), |m| m.reported.len()), None);
        memories.forget(&key("a"));
        assert_eq!(memories.read(&key("a"), |m| m.details_held), None);
        memories.retain(|k| k.1 != "b");
        assert_eq!(memories.len(), 0);
    }
}
