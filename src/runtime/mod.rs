//! What runs around the controller in the `dvt-operator run` process: leader election on a
//! Lease, the metrics and health endpoints, and the process set-up (logging, client, signals).

pub mod leader;
pub mod metrics;
pub mod process;
