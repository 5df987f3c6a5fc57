//! The status write: only when what a user would see changed, and only by the leader.

use super::*;

/// How long a status change that only adds placement details (see
/// [`status::only_details_differ`]) waits after the DV's last status write. While a new DV's
/// members are scheduled one by one, this makes one write of "Available" out of several.
pub(super) const STATUS_SETTLE: Duration = Duration::from_secs(2);

/// Writes the status if it changed. A detail-only change within [`STATUS_SETTLE`] of the last
/// write is held back: returns how long until it is due (the caller looks again by then).
pub(super) async fn write_status(
    dv: &DistributedValidator,
    ctx: &Context,
    status: crate::api::DistributedValidatorStatus,
) -> Result<Option<Duration>, Error> {
    if dv.status.as_ref() == Some(&status) {
        return Ok(None);
    }
    let name = dv.name_any();
    let namespace = dv.namespace().unwrap_or_default();
    let key = (namespace.clone(), name.clone());
    let details_only = dv
        .status
        .as_ref()
        .is_some_and(|previous| status::only_details_differ(previous, &status));
    if details_only {
        let since = ctx
            .status_written
            .lock()
            .ok()
            .and_then(|written| written.get(&key).map(Instant::elapsed));
        if let Some(since) = since.filter(|since| *since < STATUS_SETTLE) {
            return Ok(Some(STATUS_SETTLE - since));
        }
    }
    tracing::debug!(
        changed = %status::changes(dv.status.as_ref(), &status),
        details_only,
        "writing status"
    );
    let api: Api<DistributedValidator> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({"status": status});
    if !ctx.fence.holds() {
        return Err(Error::Fenced);
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    waiting_on(api.patch_status(&name, &params, &Patch::Merge(&patch)))
        .await
        .map_err(|source| Error::WriteStatus { name, source })?;
    if let Ok(mut written) = ctx.status_written.lock() {
        written.insert(key, Instant::now());
    }
    Ok(None)
}
