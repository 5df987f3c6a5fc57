//! `dvt-operator validate -f FILE...`: every DistributedValidator in the files checked as the
//! controller would check it, each problem printed with its field path.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{manifest, read_input};

/// Checks every file; exit code 1 when any resource has an error.
pub fn command(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    let mut resources = 0;
    for path in files {
        let shown = if path.as_os_str() == "-" {
            "<stdin>".to_owned()
        } else {
            path.display().to_string()
        };
        let text = match read_input(path) {
            Ok(text) => text,
            Err(error) => {
                println!("{shown}: error: cannot read: {error}");
                failed = true;
                continue;
            }
        };
        let checked = match manifest::check_manifests(&text) {
            Ok(checked) => checked,
            Err(error) => {
                println!("{shown}: error: {error}");
                failed = true;
                continue;
            }
        };
        if checked.is_empty() {
            println!("{shown}: error: no DistributedValidator found");
            failed = true;
        }
        for resource in checked {
            resources += 1;
            println!("{shown}: {resource}");
            for problem in &resource.report.problems {
                println!("  {problem}");
            }
            failed |= resource.report.has_errors();
        }
    }
    if failed {
        println!("{resources} DistributedValidator(s) checked: errors found");
        ExitCode::FAILURE
    } else {
        println!("{resources} DistributedValidator(s) checked: all valid");
        ExitCode::SUCCESS
    }
}
