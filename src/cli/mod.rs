//! The offline commands of `dvt-operator`: each checks or makes something without a cluster
//! and prints what a person reads (`main.rs` only parses the flags and calls these).

pub mod crd;
pub mod keys;
pub mod lock;
pub mod manifest;
pub mod plan;
pub mod slashing_protection;
pub mod validate;

use std::io::Read;
use std::path::Path;

/// A file's text, or standard input's for `-`.
pub fn read_input(path: &Path) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}
