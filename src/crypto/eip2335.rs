//! EIP-2335 keystores (version 4): encrypting and decrypting a BLS secret key with a password,
//! for the test-network key tools. The operator itself never calls this: it reads only a
//! keystore's `pubkey` (see `keystore.rs`).
//!
//! decryption key = KDF(password, salt) (scrypt or PBKDF2-HMAC-SHA256, 32 bytes);
//! checksum = SHA-256(decryption key[16..32] ‖ ciphertext); the secret is AES-128-CTR with
//! decryption key[0..16] and the stored IV. Passwords are NFKD-normalised and stripped of
//! control codes before use, as the EIP requires.

use ctr::cipher::{KeyIvInit, StreamCipher};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Why a keystore cannot be written or opened. Never carries a password or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoreError {
    #[error("not an EIP-2335 keystore: {0}")]
    Malformed(String),
    #[error("unsupported keystore: {0}")]
    Unsupported(String),
    #[error("wrong password (the checksum does not match)")]
    WrongPassword,
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// The key derivation function protecting a keystore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kdf {
    /// scrypt with N = 2^`log_n`, r = 8, p = 1 (the EIP's example uses 2^18).
    Scrypt { log_n: u8 },
    /// PBKDF2-HMAC-SHA256 with `rounds` iterations (the EIP's example uses 262,144).
    Pbkdf2 { rounds: u32 },
}

impl Kdf {
    /// The parameters of the EIP's examples: what validator clients expect by default.
    pub const SCRYPT_STANDARD: Kdf = Kdf::Scrypt { log_n: 18 };
    pub const PBKDF2_STANDARD: Kdf = Kdf::Pbkdf2 { rounds: 262_144 };
}

#[derive(Serialize, Deserialize)]
struct Keystore {
    crypto: Crypto,
    #[serde(default)]
    description: String,
    pubkey: String,
    path: String,
    uuid: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
struct Crypto {
    kdf: Module,
    checksum: Module,
    cipher: Module,
}

#[derive(Serialize, Deserialize)]
struct Module {
    function: String,
    params: serde_json::Map<String, serde_json::Value>,
    message: String,
}

/// A password as the EIP processes it: NFKD, without C0, C1 and Delete control codes, as UTF-8.
pub fn password_bytes(password: &str) -> Vec<u8> {
    password
        .nfkd()
        .filter(|c| !matches!(*c as u32, 0x00..=0x1f | 0x7f..=0x9f))
        .collect::<String>()
        .into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(field: &str, text: &str) -> Result<Vec<u8>, KeystoreError> {
    crate::crypto::bls::from_hex(text)
        .map_err(|_| KeystoreError::Malformed(format!("{field} is not hex")))
}

fn random<const N: usize>() -> Result<[u8; N], KeystoreError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| KeystoreError::Random(e.to_string()))?;
    Ok(bytes)
}

fn derive(kdf: &Kdf, password: &[u8], salt: &[u8]) -> Result<[u8; 32], KeystoreError> {
    let mut key = [0u8; 32];
    match *kdf {
        Kdf::Scrypt { log_n } => {
            let params = scrypt::Params::new(log_n, 8, 1)
                .map_err(|_| KeystoreError::Unsupported(format!("scrypt with n = 2^{log_n}")))?;
            scrypt::scrypt(password, salt, &params, &mut key)
                .map_err(|_| KeystoreError::Unsupported("scrypt output length".into()))?;
        }
        Kdf::Pbkdf2 { rounds } => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut key),
    }
    Ok(key)
}

fn checksum(key: &[u8; 32], ciphertext: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(&key[16..]);
    hasher.update(ciphertext);
    hasher.finalize().into()
}

fn apply_cipher(key: &[u8; 32], iv: &[u8], data: &mut [u8]) -> Result<(), KeystoreError> {
    let mut cipher = Aes128Ctr::new_from_slices(&key[..16], iv)
        .map_err(|_| KeystoreError::Malformed("the AES-128-CTR iv is not 16 bytes".into()))?;
    cipher.apply_keystream(data);
    Ok(())
}

/// A random UUID (version 4), as the EIP asks for.
fn uuid() -> Result<String, KeystoreError> {
    let mut b: [u8; 16] = random()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// Encrypts a 32-byte secret key into a keystore document (pretty JSON).
pub fn encrypt(
    secret: &crate::crypto::bls::Secret,
    password: &str,
    kdf: &Kdf,
    path: &str,
    description: &str,
) -> Result<String, KeystoreError> {
    let salt: [u8; 32] = random()?;
    let iv: [u8; 16] = random()?;
    let mut key = derive(kdf, &password_bytes(password), &salt)?;
    let mut ciphertext = secret.to_bytes();
    apply_cipher(&key, &iv, &mut ciphertext)?;
    let sum = checksum(&key, &ciphertext);
    key.fill(0);
    let mut kdf_params = serde_json::Map::new();
    kdf_params.insert("dklen".into(), 32.into());
    let function = match *kdf {
        Kdf::Scrypt { log_n } => {
            kdf_params.insert("n".into(), (1u64 << log_n).into());
            kdf_params.insert("r".into(), 8.into());
            kdf_params.insert("p".into(), 1.into());
            "scrypt"
        }
        Kdf::Pbkdf2 { rounds } => {
            kdf_params.insert("c".into(), rounds.into());
            kdf_params.insert("prf".into(), "hmac-sha256".into());
            "pbkdf2"
        }
    };
    kdf_params.insert("salt".into(), hex(&salt).into());
    let mut cipher_params = serde_json::Map::new();
    cipher_params.insert("iv".into(), hex(&iv).into());
    let keystore = Keystore {
        crypto: Crypto {
            kdf: Module {
                function: function.into(),
                params: kdf_params,
                message: String::new(),
            },
            checksum: Module {
                function: "sha256".into(),
                params: serde_json::Map::new(),
                message: hex(&sum),
            },
            cipher: Module {
                function: "aes-128-ctr".into(),
                params: cipher_params,
                message: hex(&ciphertext),
            },
        },
        description: description.into(),
        pubkey: hex(&secret.public_key().to_compressed()),
        path: path.into(),
        uuid: uuid()?,
        version: 4,
    };
    serde_json::to_string_pretty(&keystore)
        .map_err(|e| KeystoreError::Malformed(format!("encoding: {e}")))
}

fn number(
    params: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<u64, KeystoreError> {
    params
        .get(name)
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| KeystoreError::Malformed(format!("crypto.kdf.params.{name} is missing")))
}

/// The KDF and salt a keystore names, checked against what this tool supports.
fn kdf_of(module: &Module) -> Result<(Kdf, Vec<u8>), KeystoreError> {
    let params = &module.params;
    if number(params, "dklen")? != 32 {
        return Err(KeystoreError::Unsupported("dklen other than 32".into()));
    }
    let salt = unhex(
        "crypto.kdf.params.salt",
        params
            .get("salt")
            .and_then(|s| s.as_str())
            .unwrap_or_default(),
    )?;
    let kdf = match module.function.as_str() {
        "scrypt" => {
            let n = number(params, "n")?;
            if !n.is_power_of_two()
                || n < 2
                || number(params, "r")? != 8
                || number(params, "p")? != 1
            {
                return Err(KeystoreError::Unsupported(format!(
                    "scrypt parameters other than n = 2^k, r = 8, p = 1 (n = {n})"
                )));
            }
            Kdf::Scrypt {
                log_n: n.trailing_zeros() as u8,
            }
        }
        "pbkdf2" => {
            let prf = params
                .get("prf")
                .and_then(|p| p.as_str())
                .unwrap_or_default();
            if prf != "hmac-sha256" {
                return Err(KeystoreError::Unsupported(format!("PBKDF2 PRF {prf:?}")));
            }
            let rounds = u32::try_from(number(params, "c")?)
                .map_err(|_| KeystoreError::Unsupported("PBKDF2 count beyond 2^32".into()))?;
            Kdf::Pbkdf2 { rounds }
        }
        other => return Err(KeystoreError::Unsupported(format!("KDF {other:?}"))),
    };
    Ok((kdf, salt))
}

/// What a decrypted keystore holds: its secret key and the public key it claims.
pub struct Opened {
    pub secret: crate::crypto::bls::Secret,
    /// The keystore's `pubkey` field (lower-case hex, no `0x`).
    pub pubkey: String,
}

/// Decrypts a keystore document with `password`; checks the checksum and that the secret's
/// public key is the one the keystore claims.
pub fn decrypt(document: &str, password: &str) -> Result<Opened, KeystoreError> {
    // serde's message could quote the document: keep only its position.
    let keystore: Keystore = serde_json::from_str(document).map_err(|e| {
        KeystoreError::Malformed(format!(
            "invalid keystore JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    if keystore.version != 4 {
        return Err(KeystoreError::Unsupported(format!(
            "version {}",
            keystore.version
        )));
    }
    let crypto = &keystore.crypto;
    if crypto.checksum.function != "sha256" {
        return Err(KeystoreError::Unsupported(format!(
            "checksum {:?}",
            crypto.checksum.function
        )));
    }
    if crypto.cipher.function != "aes-128-ctr" {
        return Err(KeystoreError::Unsupported(format!(
            "cipher {:?}",
            crypto.cipher.function
        )));
    }
    let (kdf, salt) = kdf_of(&crypto.kdf)?;
    let mut ciphertext = unhex("crypto.cipher.message", &crypto.cipher.message)?;
    let expected = unhex("crypto.checksum.message", &crypto.checksum.message)?;
    let iv = unhex(
        "crypto.cipher.params.iv",
        crypto
            .cipher
            .params
            .get("iv")
            .and_then(|v| v.as_str())
            .unwrap_or_default(),
    )?;
    let mut key = derive(&kdf, &password_bytes(password), &salt)?;
    if checksum(&key, &ciphertext)[..] != expected[..] {
        key.fill(0);
        return Err(KeystoreError::WrongPassword);
    }
    apply_cipher(&key, &iv, &mut ciphertext)?;
    key.fill(0);
    let secret = crate::crypto::bls::Secret::from_bytes(&ciphertext)
        .map_err(|e| KeystoreError::Malformed(format!("the decrypted secret: {e}")));
    ciphertext.fill(0);
    let secret = secret?;
    let pubkey = keystore
        .pubkey
        .trim_start_matches("0x")
        .to_ascii_lowercase();
    if hex(&secret.public_key().to_compressed()) != pubkey {
        return Err(KeystoreError::Malformed(
            "the decrypted secret does not belong to the keystore's pubkey".into(),
        ));
    }
    Ok(Opened { secret, pubkey })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vectors of EIP-2335 (https://eips.ethereum.org/EIPS/eip-2335#test-cases).
    const PASSWORD: &str = "𝔱𝔢𝔰𝔱𝔭𝔞𝔰𝔰𝔴𝔬𝔯𝔡🔑";
    const SECRET: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";
    const PUBKEY: &str = "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07";
    const SCRYPT_VECTOR: &str = r#"{
        "crypto": {
            "kdf": {"function": "scrypt", "params": {"dklen": 32, "n": 262144, "p": 1, "r": 8,
                "salt": "d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"}, "message": ""},
            "checksum": {"function": "sha256", "params": {},
                "message": "d2217fe5f3e9a1e34581ef8a78f7c9928e436d36dacc5e846690a5581e8ea484"},
            "cipher": {"function": "aes-128-ctr", "params": {"iv": "264daa3f303d7259501c93d997d84fe6"},
                "message": "06ae90d55fe0a6e9c5c3bc5b170827b2e5cce3929ed3f116c2811e6366dfe20f"}
        },
        "description": "This is a test keystore that uses scrypt to secure the secret.",
        "pubkey": "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07",
        "path": "m/12381/60/3141592653/589793238",
        "uuid": "1d85ae20-35c5-4611-98e8-aa14a633906f",
        "version": 4
    }"#;
    const PBKDF2_VECTOR: &str = r#"{
        "crypto": {
            "kdf": {"function": "pbkdf2", "params": {"dklen": 32, "c": 262144, "prf": "hmac-sha256",
                "salt": "d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"}, "message": ""},
            "checksum": {"function": "sha256", "params": {},
                "message": "8a9f5d9912ed7e75ea794bc5a89bca5f193721d30868ade6f73043c6ea6febf1"},
            "cipher": {"function": "aes-128-ctr", "params": {"iv": "264daa3f303d7259501c93d997d84fe6"},
                "message": "cee03fde2af33149775b7223e7845e4fb2c8ae1792e5f99fe9ecf474cc8c16ad"}
        },
        "description": "This is a test keystore that uses PBKDF2 to secure the secret.",
        "pubkey": "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07",
        "path": "m/12381/60/0/0",
        "uuid": "64625def-3331-4eea-ab6f-782f3ed16a83",
        "version": 4
    }"#;

    #[test]
    fn the_password_is_normalised_as_the_eip_says() {
        // The EIP's "Encoded Password".
        assert_eq!(
            hex(&password_bytes(PASSWORD)),
            "7465737470617373776f7264f09f9491"
        );
        assert_eq!(password_bytes("pass\u{7f}wo\u{0}rd\u{85}"), b"password");
    }

    #[test]
    fn the_eip_test_vectors_decrypt_to_the_published_secret() {
        for vector in [SCRYPT_VECTOR, PBKDF2_VECTOR] {
            let opened = decrypt(vector, PASSWORD).unwrap();
            assert_eq!(hex(&opened.secret.to_bytes()), SECRET);
            assert_eq!(opened.pubkey, PUBKEY);
            assert_eq!(
                decrypt(vector, "testpassword").err(),
                Some(KeystoreError::WrongPassword)
            );
        }
    }

    #[test]
    fn a_keystore_round_trips_with_either_kdf_and_refuses_a_wrong_password() {
        let secret = crate::crypto::bls::Secret::random().unwrap();
        for kdf in [Kdf::Scrypt { log_n: 10 }, Kdf::Pbkdf2 { rounds: 1_000 }] {
            let document =
                encrypt(&secret, "correct horse", &kdf, "m/12381/3600/0/0/0", "test").unwrap();
            assert!(!document.contains(&hex(&secret.to_bytes())));
            let opened = decrypt(&document, "correct horse").unwrap();
            assert_eq!(opened.secret.to_bytes(), secret.to_bytes());
            assert_eq!(
                decrypt(&document, "wrong horse").err(),
                Some(KeystoreError::WrongPassword)
            );
        }
    }

    #[test]
    fn unsupported_and_malformed_keystores_are_named() {
        let v3 = SCRYPT_VECTOR.replace("\"version\": 4", "\"version\": 3");
        assert_eq!(
            decrypt(&v3, PASSWORD).err(),
            Some(KeystoreError::Unsupported("version 3".into()))
        );
        let other_cipher = PBKDF2_VECTOR.replace("aes-128-ctr", "aes-256-gcm");
        assert!(
            matches!(decrypt(&other_cipher, PASSWORD), Err(KeystoreError::Unsupported(m)) if m.contains("aes-256-gcm"))
        );
        let truncated = &PBKDF2_VECTOR[..200];
        assert!(
            matches!(decrypt(truncated, PASSWORD), Err(KeystoreError::Malformed(m)) if !m.contains("d4e567"))
        );
        let other_pubkey = PBKDF2_VECTOR.replace("9612d7", "a612d7");
        assert!(
            matches!(decrypt(&other_pubkey, PASSWORD), Err(KeystoreError::Malformed(m)) if m.contains("does not belong"))
        );
    }
}
