//! The rules of a distributed validator, apart from Kubernetes: what `(n, t)` allow, which
//! specs are sound, where members go, and what may be restarted when. Everything here is pure:
//! facts in, decisions out.

pub mod client_moves;
pub mod peers;
pub mod placement;
pub mod planner;
pub mod quantity;
pub mod quorum;
pub mod spec_checks;
