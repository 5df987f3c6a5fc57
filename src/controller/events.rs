//! Events: every Event the controller publishes goes through here (fenced: only the leader
//! writes).

use super::*;

pub(super) async fn publish(
    ctx: &Context,
    dv: &DistributedValidator,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    publish_about(ctx, dv, None, type_, reason, action, note).await;
}

/// Publishes an Event on the DV; `related` names the child it concerns, which also keeps the
/// recorder from folding events about different children into one series.
pub(super) async fn publish_about(
    ctx: &Context,
    dv: &DistributedValidator,
    related: Option<ObjectReference>,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    if !ctx.fence.holds() {
        return;
    }
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: related,
    };
    if let Err(error) = waiting_on(ctx.recorder.publish(&event, &dv.object_ref(&()))).await {
        warn!(%error, "cannot publish an Event");
    }
}
