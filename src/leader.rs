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
    /// How often the holder renews (and a standby retries).
    pub renew_every: Duration,
}

/// What this replica may do after one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following(Option<String>),
}

/// Whether `lease` may be taken by `identity` at `now`.
fn may_take(lease: &LeaseSpec, identity: &str, now: Timestamp) -> bool {
    match lease.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == identity => true,
        Some(_) => {
            let duration =
                Duration::from_secs(lease.lease_duration_seconds.unwrap_or(15).max(1) as u64);
            match lease.renew_time.as_ref().or(lease.acquire_time.as_ref()) {
                Some(renewed) => renewed
                    .0
                    .checked_add(duration)
                    .is_ok_and(|expiry| expiry < now),
                None => true,
            }
        }
    }
}

async fn attempt(api: &Api<Lease>, config: &LeaseConfig) -> Result<Attempt, kube::Error> {
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
            if !may_take(&spec, &config.identity, now) {
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
/// future that resolves when it must stop (leadership lost or shutdown). `on_change` hears
/// every change of leadership.
pub async fn run_while_leader<W, F>(
    client: Client,
    config: LeaseConfig,
    mut work: W,
    on_change: impl Fn(bool) + Send,
    shutdown: impl Future<Output = ()> + Send,
) where
    W: FnMut(oneshot::Receiver<()>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut running: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)> = None;
    let mut last_renewal = tokio::time::Instant::now();
    tokio::pin!(shutdown);
    loop {
        let outcome = attempt(&api, &config).await;
        match outcome {
            Ok(Attempt::Leading) => {
                last_renewal = tokio::time::Instant::now();
                if running.is_none() {
                    info!(identity = %config.identity, lease = %config.name, "became the leader");
                    on_change(true);
                    let (stop, stopped) = oneshot::channel();
                    running = Some((stop, tokio::spawn(work(stopped))));
                }
            }
            Ok(Attempt::Following(holder)) => {
                if let Some((stop, task)) = running.take() {
                    warn!(identity = %config.identity, holder = ?holder, "lost the lease; stopping");
                    let _ = stop.send(());
                    let _ = task.await;
                    on_change(false);
                }
            }
            Err(error) => {
                warn!(%error, "cannot reach the lease");
                // Step down before the lease could have expired for others.
                if last_renewal.elapsed() + config.renew_every >= config.duration
                    && let Some((stop, task)) = running.take()
                {
                    let _ = stop.send(());
                    let _ = task.await;
                    on_change(false);
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(config.renew_every) => {}
        }
    }
    if let Some((stop, task)) = running.take() {
        let _ = stop.send(());
        let _ = task.await;
        on_change(false);
        release(&api, &config).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_seconds_ago: i64) -> LeaseSpec {
        let now = Timestamp::now();
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(
                now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(
                    renewed_seconds_ago,
                ))
                .unwrap(),
            )),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_fresh_lease_of_another_holder_is_respected_and_an_expired_one_taken() {
        let now = Timestamp::now();
        assert!(!may_take(&spec(Some("a"), 5), "b", now));
        assert!(may_take(&spec(Some("a"), 20), "b", now));
        assert!(
            may_take(&spec(Some("b"), 5), "b", now),
            "renewing one's own lease"
        );
        assert!(may_take(&spec(None, 5), "b", now), "a released lease");
    }
}
