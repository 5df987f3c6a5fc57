//! Why a reconcile failed, and what kind of failure it is (the Event reason and metric label).

use std::time::Duration;

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
            Error::Apply { .. } => crate::api::reasons::APPLY_FAILED,
            Error::WriteStatus { .. } => crate::api::reasons::STATUS_WRITE_FAILED,
            Error::ReadLock { .. } => crate::api::reasons::LOCK_READ_FAILED,
            Error::Encode { .. } => crate::api::reasons::ENCODE_FAILED,
            Error::CachesStopped { .. } => crate::api::reasons::CACHES_STOPPED,
            Error::CachesNotReady { .. } => crate::api::reasons::CACHES_NOT_READY,
            Error::ReadKeystores { .. } => crate::api::reasons::KEYSTORE_READ_FAILED,
            Error::Fenced => crate::api::reasons::NOT_LEADER,
            Error::TimedOut(_) => crate::api::reasons::RECONCILE_TIMED_OUT,
        }
    }
}
