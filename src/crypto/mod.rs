//! Key material. The operator reads only public keys ([`keystore`] reads a keystore's `pubkey`,
//! [`lock`] a cluster lock's shares, [`bls`] checks and interpolates points); [`eip2335`] and
//! [`split`] are the test-network key tools (`dvt-operator keys`), which also handle secrets.

pub mod bls;
pub mod eip2335;
pub mod keystore;
pub mod lock;
pub mod split;
