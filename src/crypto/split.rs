//! Key tools for test networks: `dvt-operator keys split` Shamir-splits BLS secrets into
//! per-operator EIP-2335 keystores plus a lock-shaped JSON of the public shares, and
//! `dvt-operator keys check` decrypts such a set and proves that every `t`-subset of shares
//! signs for the group key. The operator itself never holds private keys; these tools exist so
//! that a test network (or kind) can be given real, verifiable key shares.
//!
//! Layout (Charon's): `DIR/cluster-lock.json` and, for operator i,
//! `DIR/node{i}/validator_keys/keystore-{v}.json` with its password in `keystore-{v}.txt`.

use std::path::{Path, PathBuf};

use crate::crypto::bls::{self, G1, G2, Secret};
use crate::crypto::eip2335::{self, Kdf};

/// Why a split or check failed. Messages name files and indices, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Secret(#[from] bls::SecretError),
    #[error("{path}: {source}")]
    Keystore {
        path: String,
        #[source]
        source: eip2335::KeystoreError,
    },
}

fn file_error(path: &Path, error: impl std::fmt::Display) -> KeysError {
    KeysError::File {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

/// What to split and how to protect it.
pub struct SplitOptions {
    pub shares: usize,
    pub threshold: usize,
    /// The secrets to split, one per validator.
    pub secrets: Vec<Secret>,
    pub kdf: Kdf,
    /// One password for every keystore; a random one per keystore when `None`.
    pub password: Option<String>,
}

/// The directory of operator `i` (0-based): `node0`, `node1`, ...
pub fn node_dir(out: &Path, operator: usize) -> PathBuf {
    out.join(format!("node{operator}")).join("validator_keys")
}

fn random_password() -> Result<String, KeysError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| bls::SecretError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a file readable by its owner only: keystores and passwords are key material.
fn write_private(path: &Path, contents: &str) -> Result<(), KeysError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| file_error(path, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| file_error(path, e))
}

/// The lock-shaped JSON of a split: Charon's fields that `lock verify` and the operator read.
/// It is not a signed Charon lock; its name says so.
pub fn lock_json(
    threshold: usize,
    shares: usize,
    validators: &[(G1, Vec<G1>)],
) -> serde_json::Value {
    serde_json::json!({
        "cluster_definition": {
            "name": "dvt-operator keys split (test network, unsigned)",
            "version": "v1.7.0",
            "threshold": threshold,
            "operators": (0..shares).map(|i| serde_json::json!({"enr": "", "address": "", "name": format!("node{i}")})).collect::<Vec<_>>(),
        },
        "distributed_validators": validators.iter().map(|(group, public_shares)| serde_json::json!({
            "distributed_public_key": group.to_hex(),
            "public_shares": public_shares.iter().map(G1::to_hex).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Splits every secret and writes keystores, passwords and the lock into `out`, which must not
/// exist yet or be empty (key material is never overwritten). Returns the lock document.
pub fn split(out: &Path, options: &SplitOptions) -> Result<serde_json::Value, KeysError> {
    if options.secrets.is_empty() {
        return Err(KeysError::Invalid("no secret to split".into()));
    }
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| file_error(out, e))?
            .next()
            .is_some()
    {
        return Err(file_error(
            out,
            "exists and is not empty; refusing to write key material over it",
        ));
    }
    let mut validators = Vec::with_capacity(options.secrets.len());
    let mut shares_by_validator = Vec::with_capacity(options.secrets.len());
    for secret in &options.secrets {
        let shares = bls::split(secret, options.shares, options.threshold)?;
        validators.push((
            secret.public_key(),
            shares.iter().map(Secret::public_key).collect::<Vec<_>>(),
        ));
        shares_by_validator.push(shares);
    }
    for operator in 0..options.shares {
        let dir = node_dir(out, operator);
        std::fs::create_dir_all(&dir).map_err(|e| file_error(&dir, e))?;
        for (v, shares) in shares_by_validator.iter().enumerate() {
            let password = match &options.password {
                Some(password) => password.clone(),
                None => random_password()?,
            };
            let path = dir.join(format!("keystore-{v}.json"));
            let document = eip2335::encrypt(
                &shares[operator],
                &password,
                &options.kdf,
                &format!("m/12381/3600/{v}/0/0"),
                &format!("share {operator} of validator {v} (dvt-operator keys split)"),
            )
            .map_err(|source| KeysError::Keystore {
                path: path.display().to_string(),
                source,
            })?;
            write_private(&path, &document)?;
            write_private(&dir.join(format!("keystore-{v}.txt")), &password)?;
        }
    }
    let lock = lock_json(options.threshold, options.shares, &validators);
    let text =
        serde_json::to_string_pretty(&lock).map_err(|e| KeysError::Invalid(e.to_string()))?;
    let path = out.join("cluster-lock.json");
    std::fs::write(&path, text + "\n").map_err(|e| file_error(&path, e))?;
    Ok(lock)
}

/// What `check` found for one validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorCheck {
    pub validator: usize,
    /// Number of `t`-subsets whose combined signature verified.
    pub subsets_verified: usize,
    pub subsets: usize,
    pub problems: Vec<String>,
}

/// Every `k`-subset of `0..n`, in lexicographic order.
pub fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    fn extend(
        start: usize,
        n: usize,
        k: usize,
        current: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
    ) {
        if current.len() == k {
            out.push(current.clone());
            return;
        }
        for i in start..n {
            if n - i < k - current.len() {
                break;
            }
            current.push(i);
            extend(i + 1, n, k, current, out);
            current.pop();
        }
    }
    let mut out = Vec::new();
    if k <= n {
        extend(0, n, k, &mut Vec::with_capacity(k), &mut out);
    }
    out
}

/// The message each share signs in a check: a fixed text with the validator's index, so a
/// check never signs anything a beacon chain would accept.
fn check_message(validator: usize) -> Vec<u8> {
    format!("dvt-operator keys check: validator {validator}").into_bytes()
}

/// Decrypts every share under `dir` (with `password`, or each keystore's `.txt` beside it),
/// checks each against the lock's public shares, and for every validator signs with every share,
/// combines every `t`-subset of partial signatures with Lagrange coefficients in G2 and verifies
/// the result against the group key.
pub fn check(dir: &Path, password: Option<&str>) -> Result<Vec<ValidatorCheck>, KeysError> {
    let lock_path = dir.join("cluster-lock.json");
    let text = std::fs::read_to_string(&lock_path).map_err(|e| file_error(&lock_path, e))?;
    let lock = crate::crypto::lock::summarize(&text).map_err(|e| file_error(&lock_path, e))?;
    let threshold = lock.threshold as usize;
    let mut results = Vec::with_capacity(lock.validators);
    for (v, keys) in lock.public_keys.iter().enumerate() {
        let mut problems = Vec::new();
        let group = G1::from_hex(&keys.distributed_public_key)
            .map_err(|e| file_error(&lock_path, format!("validator {v}: {e}")))?;
        let message = check_message(v);
        let mut partials: Vec<Option<G2>> = Vec::with_capacity(lock.operators);
        for operator in 0..lock.operators {
            let path = node_dir(dir, operator).join(format!("keystore-{v}.json"));
            let opened = std::fs::read_to_string(&path)
                .map_err(|e| file_error(&path, e))
                .and_then(|document| {
                    let password = match password {
                        Some(password) => password.to_owned(),
                        None => {
                            let password_path = path.with_extension("txt");
                            std::fs::read_to_string(&password_path)
                                .map_err(|e| file_error(&password_path, e))?
                                .trim_end_matches(['\n', '\r'])
                                .to_owned()
                        }
                    };
                    eip2335::decrypt(&document, &password).map_err(|source| KeysError::Keystore {
                        path: path.display().to_string(),
                        source,
                    })
                });
            match opened {
                Ok(opened) => {
                    let expected = keys
                        .public_shares
                        .get(operator)
                        .map(|s| s.trim_start_matches("0x").to_ascii_lowercase());
                    if expected.as_deref() != Some(opened.pubkey.as_str()) {
                        problems.push(format!(
                            "operator {operator}: the keystore holds another share than the lock's public share {operator}"
                        ));
                        partials.push(None);
                    } else {
                        partials.push(Some(opened.secret.sign(&message)));
                    }
                }
                Err(error) => {
                    problems.push(format!("operator {operator}: {error}"));
                    partials.push(None);
                }
            }
        }
        let all = subsets(lock.operators, threshold);
        let mut verified = 0;
        for subset in &all {
            let points: Option<Vec<(u64, G2)>> = subset
                .iter()
                .map(|&i| partials[i].map(|p| (i as u64 + 1, p)))
                .collect();
            let Some(points) = points else {
                continue;
            };
            match bls::combine(&points) {
                Some(signature) if signature.verifies(&message, &group) => verified += 1,
                _ => problems.push(format!(
                    "shares {subset:?} do not combine to a signature of the group key"
                )),
            }
        }
        results.push(ValidatorCheck {
            validator: v,
            subsets_verified: verified,
            subsets: all.len(),
            problems,
        });
    }
    Ok(results)
}

/// Reads secrets from a file: one 32-byte hex secret key per line (blank lines and `#` comments
/// skipped). Errors name the line, never its content.
pub fn read_secrets(path: &Path) -> Result<Vec<Secret>, KeysError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(n, line)| {
            bls::from_hex(line.trim())
                .map_err(|_| file_error(path, format!("line {}: not hex", n + 1)))
                .and_then(|bytes| {
                    Secret::from_bytes(&bytes)
                        .map_err(|e| file_error(path, format!("line {}: {e}", n + 1)))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Kdf = Kdf::Pbkdf2 { rounds: 16 };

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dvt-keys-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn subsets_are_all_k_combinations() {
        assert_eq!(subsets(4, 3).len(), 4);
        assert_eq!(subsets(7, 5).len(), 21);
        assert_eq!(subsets(10, 7).len(), 120);
        assert_eq!(subsets(3, 3), vec![vec![0, 1, 2]]);
        assert!(subsets(2, 3).is_empty());
    }

    #[test]
    fn split_then_check_round_trips_and_the_lock_verifies() {
        for (shares, threshold) in [(4, 3), (7, 5), (10, 7)] {
            let out = temp(&format!("{threshold}of{shares}"));
            let secrets = vec![Secret::random().unwrap(), Secret::random().unwrap()];
            let group_keys: Vec<String> = secrets.iter().map(|s| s.public_key().to_hex()).collect();
            let options = SplitOptions {
                shares,
                threshold,
                secrets,
                kdf: FAST,
                password: None,
            };
            let lock = split(&out, &options).unwrap();
            let summary = crate::crypto::lock::summarize(&lock.to_string()).unwrap();
            assert_eq!(crate::crypto::lock::verify(&summary), Vec::new());
            assert_eq!(summary.threshold as usize, threshold);
            let listed: Vec<String> = summary
                .public_keys
                .iter()
                .map(|k| k.distributed_public_key.clone())
                .collect();
            assert_eq!(listed, group_keys);
            let checks = check(&out, None).unwrap();
            assert_eq!(checks.len(), 2);
            for c in &checks {
                assert_eq!(c.problems, Vec::<String>::new(), "{threshold} of {shares}");
                assert_eq!(c.subsets_verified, subsets(shares, threshold).len());
            }
            // Refuses to write over key material.
            assert!(
                matches!(split(&out, &options), Err(KeysError::File { message, .. }) if message.contains("not empty"))
            );
            std::fs::remove_dir_all(&out).unwrap();
        }
    }

    #[test]
    fn check_names_a_swapped_share_and_a_wrong_password() {
        let out = temp("swapped");
        let options = SplitOptions {
            shares: 4,
            threshold: 3,
            secrets: vec![Secret::random().unwrap()],
            kdf: FAST,
            password: Some("one password".into()),
        };
        split(&out, &options).unwrap();
        assert!(
            check(&out, Some("one password")).unwrap()[0]
                .problems
                .is_empty()
        );
        let wrong = check(&out, Some("another")).unwrap();
        assert_eq!(wrong[0].subsets_verified, 0);
        assert!(
            wrong[0].problems[0].contains("wrong password"),
            "{:?}",
            wrong[0].problems
        );
        // Operator 1 gets operator 2's keystore.
        let from = node_dir(&out, 2).join("keystore-0.json");
        let to = node_dir(&out, 1).join("keystore-0.json");
        std::fs::remove_file(&to).unwrap();
        std::fs::copy(&from, &to).unwrap();
        let swapped = check(&out, Some("one password")).unwrap();
        assert!(swapped[0].problems[0].starts_with("operator 1: the keystore holds another share"));
        // Only the subset without operator 1 remains: {0, 2, 3}.
        assert_eq!(swapped[0].subsets_verified, 1);
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn a_given_secret_is_split_and_bad_secret_files_name_the_line() {
        let dir = temp("secrets");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secrets.txt");
        let secret = Secret::random().unwrap();
        let hex: String = secret
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(&file, format!("# test\n0x{hex}\n\n")).unwrap();
        let read = read_secrets(&file).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].to_bytes(), secret.to_bytes());
        std::fs::write(&file, format!("{hex}\nzz{}\n", &hex[2..])).unwrap();
        let error = read_secrets(&file).err().unwrap().to_string();
        assert!(error.ends_with("line 2: not hex"), "{error}");
        assert!(!error.contains(&hex[2..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_operator_accepts_each_split_share_as_its_members_keystores() {
        let out = temp("operator");
        let options = SplitOptions {
            shares: 4,
            threshold: 3,
            secrets: vec![Secret::random().unwrap(), Secret::random().unwrap()],
            kdf: FAST,
            password: None,
        };
        let lock = split(&out, &options).unwrap();
        let summary = crate::crypto::lock::summarize(&lock.to_string()).unwrap();
        let names: std::collections::BTreeMap<usize, String> =
            (0..4).map(|i| (i, format!("node{i}"))).collect();
        let read = |operator: usize| {
            let dir = node_dir(&out, operator);
            let files: Vec<(String, Vec<u8>)> = (0..2)
                .map(|v| {
                    let name = format!("keystore-{v}.json");
                    (name.clone(), std::fs::read(dir.join(&name)).unwrap())
                })
                .collect();
            crate::crypto::keystore::public_keys(
                files.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            )
            .unwrap()
        };
        for operator in 0..4 {
            let keys = read(operator);
            let problems = crate::crypto::keystore::check_member(
                &names[&operator],
                operator,
                "secret",
                &keys,
                &summary,
                &names,
            );
            assert_eq!(problems, Vec::<String>::new());
        }
        // Operator 0's Secret holding operator 1's keystores is caught.
        let problems =
            crate::crypto::keystore::check_member("node0", 0, "secret", &read(1), &summary, &names);
        assert_eq!(problems.len(), 2, "{problems:?}");
        std::fs::remove_dir_all(&out).unwrap();
    }
}
