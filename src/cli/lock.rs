//! `dvt-operator lock verify FILE`: a cluster lock's shares checked point by point and
//! interpolated, one line per validator.

use std::path::Path;
use std::process::ExitCode;

use super::read_input;
use crate::crypto::lock::{self, LockProblem};

/// Verifies the lock in `file`; exit code 1 when any check fails.
pub fn verify_command(file: &Path) -> ExitCode {
    let text = match read_input(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: cannot read {}: {error}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let summary = match lock::summarize(&text) {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let problems = lock::verify(&summary);
    println!(
        "lock {}: {} operators, threshold {}, {} validator(s)",
        summary.lock_hash.as_deref().unwrap_or("(no lock_hash)"),
        summary.operators,
        summary.threshold,
        summary.validators
    );
    let general: Vec<&LockProblem> = problems.iter().filter(|p| p.validator.is_none()).collect();
    for problem in &general {
        println!("{problem}");
    }
    for (v, keys) in summary.public_keys.iter().enumerate() {
        let own: Vec<&LockProblem> = problems.iter().filter(|p| p.validator == Some(v)).collect();
        if !own.is_empty() {
            for problem in own {
                println!("{problem}");
            }
        } else if general.is_empty() {
            println!("validator {v} {}: ok", keys.distributed_public_key);
        } else {
            println!(
                "validator {v} {}: points valid; shares not interpolated (see above)",
                keys.distributed_public_key
            );
        }
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
