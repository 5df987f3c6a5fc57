//! Why a reconcile failed, and what kind of failure it is (the Event reason and metric label).

use super::*;

/// Why a reconcile failed; the variant names the action, and its category is the Event reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of {name}: {source}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading the cluster lock Secret {name}: {source}")]
    ReadLock {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading the keystores' public keys in Secret {name}: {source}")]
    ReadKeystores {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the watch feeding the {cache} cache stopped before listing once")]
    CachesStopped { cache: &'static str },
    #[error(
        "the {caches} cache(s) have not listed once after {waited:?}: is `list`/`watch` on them allowed?"
    )]
    CachesNotReady { caches: String, waited: Duration },
    #[error("this replica no longer holds the leader lease (renew deadline passed): not writing")]
    Fenced,
    #[error(
        "the reconcile did not finish within {0:?} (an API call that never answered); abandoned"
    )]
    TimedOut(Duration),
    #[error("encoding {kind} {name}: {source}")]
    Encode {
        kind: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A low-cardinality category: Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "ApplyFailed",
            Error::WriteStatus { .. } => "StatusWriteFailed",
            Error::ReadLock { .. } => "LockReadFailed",
            Error::Encode { .. } => "EncodeFailed",
            Error::CachesStopped { .. } => "CachesStopped",
            Error::CachesNotReady { .. } => "CachesNotReady",
            Error::ReadKeystores { .. } => "KeystoreReadFailed",
            Error::Fenced => "NotLeader",
            Error::TimedOut(_) => "ReconcileTimedOut",
        }
    }
}
