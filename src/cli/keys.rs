//! `dvt-operator keys split|check`: the test-network key tools' commands (the splitting and
//! checking themselves are in [`crate::crypto::split`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::crypto::eip2335::Kdf;

/// The first line of a password file (without its line ending).
pub fn read_password(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Splits the secrets (read or random) into `shares` keystores each, and prints what it wrote.
#[allow(clippy::too_many_arguments)]
pub fn split_command(
    shares: u32,
    threshold: Option<u32>,
    secret_key_file: Option<PathBuf>,
    validators: u32,
    kdf: Kdf,
    password_file: Option<PathBuf>,
    out: &std::path::Path,
) -> Result<ExitCode, String> {
    let threshold = threshold.unwrap_or_else(|| crate::domain::quorum::default_threshold(shares));
    let secrets = match &secret_key_file {
        Some(file) => crate::crypto::split::read_secrets(file).map_err(|e| e.to_string())?,
        None => (0..validators)
            .map(|_| crate::crypto::bls::Secret::random())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?,
    };
    let password = password_file.as_deref().map(read_password).transpose()?;
    let options = crate::crypto::split::SplitOptions {
        shares: shares as usize,
        threshold: threshold as usize,
        secrets,
        kdf,
        password,
    };
    let lock = crate::crypto::split::split(out, &options).map_err(|e| e.to_string())?;
    let count = lock["distributed_validators"]
        .as_array()
        .map_or(0, Vec::len);
    println!(
        "split {count} validator key(s) into {shares} shares, threshold {threshold}, in {}",
        out.display()
    );
    for validator in lock["distributed_validators"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "  {}",
            validator["distributed_public_key"]
                .as_str()
                .unwrap_or_default()
        );
    }
    println!(
        "lock: {}; keystores: {}",
        out.join("cluster-lock.json").display(),
        crate::crypto::split::node_dir(out, 0)
            .display()
            .to_string()
            .replace("node0", "node{i}")
    );
    Ok(ExitCode::SUCCESS)
}

/// Decrypts and proves a split; exit code 1 on any problem.
pub fn check_command(
    dir: &std::path::Path,
    password_file: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let password = password_file.as_deref().map(read_password).transpose()?;
    let checks =
        crate::crypto::split::check(dir, password.as_deref()).map_err(|e| e.to_string())?;
    let mut failed = false;
    for check in &checks {
        if check.problems.is_empty() {
            println!(
                "validator {}: ok ({} of {} threshold subsets sign for the group key)",
                check.validator, check.subsets_verified, check.subsets
            );
        } else {
            failed = true;
            println!(
                "validator {}: FAILED ({} of {} threshold subsets sign for the group key)",
                check.validator, check.subsets_verified, check.subsets
            );
            for problem in &check.problems {
                println!("  {problem}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
