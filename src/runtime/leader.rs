//! Leader election on a `coordination.k8s.io/v1` Lease: only the replica holding the lease runs
//! the controller; a standby takes over once the holder has not renewed for the lease duration.
//! Every write is guarded by the Lease's resourceVersion, so two replicas cannot both win.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How long after its last renewal the holder stops writing if it cannot renew (client-go's
    /// RenewDeadline): shorter than `duration`, so that it has stood down before a standby may
    /// take the lease.
    pub renew_deadline: Duration,
    /// How often the holder renews (and a standby retries).
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// A lease of `duration` with the renew deadline and retry period of [`LeaseConfig::timings`].
    pub fn new(name: &str, namespace: &str, identity: &str, duration: Duration) -> LeaseConfig {
        let (renew_deadline, renew_every) = LeaseConfig::timings(duration);
        LeaseConfig {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            duration,
            renew_deadline,
            renew_every,
        }
    }

    /// Deadline and retry period for a lease of `duration`, in the proportions of client-go's
    /// defaults (15 s lease, 10 s renew deadline, 2 s retry).
    pub fn timings(duration: Duration) -> (Duration, Duration) {
        let renew_deadline = duration * 2 / 3;
        let renew_every = (duration / 6).max(Duration::from_millis(200));
        (renew_deadline, renew_every)
    }
}

/// Whether this process may write: only while it holds the Lease, judged on the monotonic clock
/// against the renew deadline of its last renewal. Checked before every write the controller
/// makes, so a replica whose renewal hangs stops writing at the deadline, not when the call
/// returns. A process without leader election is never fenced.
#[derive(Clone, Debug, Default)]
pub struct Fence(Option<std::sync::Arc<std::sync::Mutex<Option<tokio::time::Instant>>>>);

impl Fence {
    /// A fence for one term of leadership, closed until the first renewal opens it.
    pub fn for_term() -> Fence {
        Fence(Some(Default::default()))
    }

    /// Whether writes are allowed now.
    pub fn holds(&self) -> bool {
        match &self.0 {
            None => true,
            Some(until) => until
                .lock()
                .ok()
                .and_then(|until| *until)
                .is_some_and(|until| tokio::time::Instant::now() < until),
        }
    }

    /// When the fence closes, if it is open.
    fn until(&self) -> Option<tokio::time::Instant> {
        self.0.as_ref()?.lock().ok().and_then(|until| *until)
    }

    fn open_until(&self, until: tokio::time::Instant) {
        if let Some(Ok(mut slot)) = self.0.as_ref().map(|m| m.lock()) {
            *slot = Some(until);
        }
    }

    fn close(&self) {
        if let Some(Ok(mut slot)) = self.0.as_ref().map(|m| m.lock()) {
            *slot = None;
        }
    }
}

/// What this replica may do after one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following(Option<String>),
}

/// A lease record as a standby last saw it, and when (on its own monotonic clock) it first saw
/// it so. Expiry is judged by how long the record has not changed here, never by comparing the
/// holder's `renewTime` with this machine's wall clock: clock skew between replicas then
/// changes nothing (client-go's observedTime).
#[derive(Clone, Debug, PartialEq)]
struct Observation {
    record: (Option<String>, Option<String>, Option<String>),
    since: tokio::time::Instant,
}

fn record_of(lease: &Lease) -> (Option<String>, Option<String>, Option<String>) {
    let spec = lease.spec.clone().unwrap_or_default();
    (
        spec.holder_identity,
        spec.renew_time.map(|t| t.0.to_string()),
        lease.metadata.resource_version.clone(),
    )
}

/// Whether `lease` may be taken by `identity`, given what was observed of it.
fn may_take(lease: &LeaseSpec, identity: &str, unchanged_for: Duration) -> bool {
    match lease.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == identity => true,
        Some(_) => {
            let duration =
                Duration::from_secs(lease.lease_duration_seconds.unwrap_or(15).max(1) as u64);
            unchanged_for >= duration
        }
    }
}

async fn attempt(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Option<Observation>,
) -> Result<Attempt, kube::Error> {
    let now = Timestamp::now();
    let seconds = config.duration.as_secs().max(1) as i32;
    match api.get_opt(&config.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Following(None)),
                Err(error) => Err(error),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let record = record_of(&lease);
            let seen = tokio::time::Instant::now();
            let unchanged_since = match observed {
                Some(o) if o.record == record => o.since,
                _ => {
                    *observed = Some(Observation {
                        record,
                        since: seen,
                    });
                    seen
                }
            };
            if !may_take(&spec, &config.identity, seen - unchanged_since) {
                return Ok(Attempt::Following(spec.holder_identity));
            }
            let taking_over = spec.holder_identity.as_deref() != Some(config.identity.as_str());
            let mut next = spec;
            if taking_over {
                next.acquire_time = Some(MicroTime(now));
                next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
            }
            next.holder_identity = Some(config.identity.clone());
            next.lease_duration_seconds = Some(seconds);
            next.renew_time = Some(MicroTime(now));
            lease.spec = Some(next);
            // The resourceVersion in `lease` makes this a compare-and-swap.
            match api
                .replace(&lease.name_any(), &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Following(None)),
                Err(error) => Err(error),
            }
        }
    }
}

/// Gives the lease up on shutdown, so a standby need not wait for it to expire.
async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    if let Ok(Some(mut lease)) = api.get_opt(&config.name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(config.identity.as_str())
    {
        spec.holder_identity = None;
        let _ = api
            .replace(&config.name, &PostParams::default(), &lease)
            .await;
    }
}

/// Runs `work` while this replica holds the lease, until `shutdown` resolves. `work` gets a
/// future that resolves when it must stop (leadership lost or shutdown) and the term's [`Fence`],
/// which it checks before every write. `on_change` hears every change of leadership.
pub async fn run_while_leader<W, F>(
    client: Client,
    config: LeaseConfig,
    mut work: W,
    on_change: impl Fn(bool) + Send,
    shutdown: impl Future<Output = ()> + Send,
) where
    W: FnMut(oneshot::Receiver<()>, Fence) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut running: Option<(Fence, oneshot::Sender<()>, tokio::task::JoinHandle<()>)> = None;
    let mut observed = None;
    tokio::pin!(shutdown);
    loop {
        let started = tokio::time::Instant::now();
        // A holder's attempt may take until its fence closes; a standby's up to a deadline.
        let answer_by = running
            .as_ref()
            .and_then(|(fence, _, _)| fence.until())
            .unwrap_or(started + config.renew_deadline);
        let outcome =
            tokio::time::timeout_at(answer_by, attempt(&api, &config, &mut observed)).await;
        match outcome {
            Ok(Ok(Attempt::Leading)) => {
                let until = started + config.renew_deadline;
                match &running {
                    Some((fence, _, _)) => fence.open_until(until),
                    None => {
                        info!(identity = %config.identity, lease = %config.name, "became the leader");
                        on_change(true);
                        let fence = Fence::for_term();
                        fence.open_until(until);
                        let (stop, stopped) = oneshot::channel();
                        let task = tokio::spawn(work(stopped, fence.clone()));
                        running = Some((fence, stop, task));
                    }
                }
            }
            Ok(Ok(Attempt::Following(holder))) => {
                if let Some(term) = running.take() {
                    warn!(identity = %config.identity, holder = ?holder, "lost the lease; stopping");
                    stand_down(term, &on_change).await;
                }
            }
            Ok(Err(error)) => {
                warn!(%error, "cannot reach the lease");
                if running.as_ref().is_some_and(|(fence, _, _)| !fence.holds())
                    && let Some(term) = running.take()
                {
                    warn!(identity = %config.identity, "renew deadline passed; standing down");
                    stand_down(term, &on_change).await;
                }
            }
            Err(_) => {
                warn!(deadline = ?config.renew_deadline, "the lease did not answer in time");
                if let Some(term) = running.take() {
                    warn!(identity = %config.identity, "renew deadline passed; standing down");
                    stand_down(term, &on_change).await;
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(config.renew_every) => {}
        }
    }
    if let Some(term) = running.take() {
        stand_down(term, &on_change).await;
        release(&api, &config).await;
    }
}

/// Ends a term: the fence closes first (no write from here on, even one already decided), then
/// the work is told to stop and awaited.
async fn stand_down(
    (fence, stop, task): (Fence, oneshot::Sender<()>, tokio::task::JoinHandle<()>),
    on_change: &impl Fn(bool),
) {
    fence.close();
    on_change(false);
    let _ = stop.send(());
    let _ = task.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_of_another_holder_is_taken_only_after_it_stood_still_for_its_duration() {
        let secs = Duration::from_secs;
        assert!(!may_take(&spec(Some("a")), "b", secs(5)));
        assert!(may_take(&spec(Some("a")), "b", secs(15)));
        assert!(
            may_take(&spec(Some("b")), "b", secs(0)),
            "renewing one's own lease"
        );
        assert!(may_take(&spec(None), "b", secs(0)), "a released lease");
    }

    #[test]
    fn the_renew_deadline_ends_before_the_lease() {
        for seconds in [2, 3, 15, 60] {
            let duration = Duration::from_secs(seconds);
            let (deadline, every) = LeaseConfig::timings(duration);
            assert!(every < deadline && deadline < duration, "{seconds}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fence_closes_at_its_deadline_and_an_unelected_process_is_never_fenced() {
        assert!(Fence::default().holds());
        let fence = Fence::for_term();
        assert!(!fence.holds(), "closed until the first renewal");
        fence.open_until(tokio::time::Instant::now() + Duration::from_secs(10));
        assert!(fence.holds());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(fence.holds());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            !fence.holds(),
            "no write once the renew deadline has passed"
        );
        fence.open_until(tokio::time::Instant::now() + Duration::from_secs(10));
        fence.close();
        assert!(!fence.holds());
    }
}
