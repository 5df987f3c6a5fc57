//! The BLS12-381 arithmetic the key-share checks need, as a small safe wrapper over `blst`:
//! G1 points (public keys) decoded and checked (on the curve, in the subgroup, not infinity),
//! scalars in the field Fr, Lagrange coefficients, and interpolation of public shares. The
//! operator only ever passes public material through here; the test-network key tools
//! (`dvt-operator keys`) also use [`Secret`] (Shamir splitting and signing) and [`G2`]
//! (combining partial signatures).
//!
//! Every `unsafe` block calls one blst function on values this module owns and initialised; blst
//! reads its inputs and writes only its output.

use blst::{
    BLST_ERROR, blst_bendian_from_scalar, blst_fr, blst_fr_add, blst_fr_from_scalar,
    blst_fr_from_uint64, blst_fr_inverse, blst_fr_mul, blst_fr_sub, blst_p1, blst_p1_add_or_double,
    blst_p1_affine, blst_p1_affine_in_g1, blst_p1_affine_is_inf, blst_p1_compress,
    blst_p1_from_affine, blst_p1_is_equal, blst_p1_mult, blst_p1_uncompress, blst_p2,
    blst_p2_add_or_double, blst_p2_affine, blst_p2_compress, blst_p2_from_affine, blst_p2_mult,
    blst_p2_uncompress, blst_scalar, blst_scalar_from_bendian, blst_scalar_from_fr,
};

/// The domain separation tag of Ethereum consensus signatures (proof-of-possession scheme).
pub const ETH_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// Why bytes are not a usable public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointError {
    #[error("not hex: {0}")]
    Hex(String),
    #[error("a compressed G1 point is 48 bytes, this has {0}")]
    Length(usize),
    #[error("not a point on the BLS12-381 curve ({0:?})")]
    NotOnCurve(String),
    #[error("the point is not in the G1 subgroup")]
    NotInSubgroup,
    #[error("the point at infinity is not a public key")]
    Infinity,
}

/// A checked G1 point.
#[derive(Clone, Copy)]
pub struct G1(blst_p1);

impl std::fmt::Debug for G1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "G1({})", self.to_hex())
    }
}

impl PartialEq for G1 {
    fn eq(&self, other: &Self) -> bool {
        // SAFETY: both points are initialised blst_p1 values owned by `self` and `other`.
        unsafe { blst_p1_is_equal(&self.0, &other.0) }
    }
}

/// `0x`-prefixed (or bare) hex to bytes.
pub fn from_hex(text: &str) -> Result<Vec<u8>, PointError> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if !digits.len().is_multiple_of(2) {
        return Err(PointError::Hex("odd number of digits".into()));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| PointError::Hex(format!("bad digit near position {i}")))
        })
        .collect()
}

impl G1 {
    /// Decodes a 48-byte compressed point and checks it is a valid public key.
    pub fn from_compressed(bytes: &[u8]) -> Result<G1, PointError> {
        let bytes: &[u8; 48] = bytes
            .try_into()
            .map_err(|_| PointError::Length(bytes.len()))?;
        let mut affine = blst_p1_affine::default();
        // SAFETY: `bytes` is 48 readable bytes, `affine` a writable output.
        let result = unsafe { blst_p1_uncompress(&mut affine, bytes.as_ptr()) };
        if result != BLST_ERROR::BLST_SUCCESS {
            return Err(PointError::NotOnCurve(format!("{result:?}")));
        }
        // SAFETY: `affine` was initialised by the successful uncompress above.
        if unsafe { blst_p1_affine_is_inf(&affine) } {
            return Err(PointError::Infinity);
        }
        // SAFETY: as above.
        if !unsafe { blst_p1_affine_in_g1(&affine) } {
            return Err(PointError::NotInSubgroup);
        }
        let mut point = blst_p1::default();
        // SAFETY: `affine` is initialised, `point` a writable output.
        unsafe { blst_p1_from_affine(&mut point, &affine) };
        Ok(G1(point))
    }

    pub fn from_hex(text: &str) -> Result<G1, PointError> {
        G1::from_compressed(&from_hex(text)?)
    }

    pub fn to_compressed(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        // SAFETY: `out` is 48 writable bytes, `self.0` an initialised point.
        unsafe { blst_p1_compress(out.as_mut_ptr(), &self.0) };
        out
    }

    pub fn to_hex(&self) -> String {
        let mut text = String::from("0x");
        for byte in self.to_compressed() {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    }

    fn mul(&self, scalar: &Fr) -> G1 {
        let mut bytes = blst_scalar::default();
        // SAFETY: `scalar.0` is initialised; `bytes` a writable output.
        unsafe { blst_scalar_from_fr(&mut bytes, &scalar.0) };
        let mut out = blst_p1::default();
        // SAFETY: `bytes.b` holds 32 little-endian bytes (255 significant bits of an Fr element).
        unsafe { blst_p1_mult(&mut out, &self.0, bytes.b.as_ptr(), 255) };
        G1(out)
    }

    fn add(&self, other: &G1) -> G1 {
        let mut out = blst_p1::default();
        // SAFETY: both inputs are initialised points; `out` a writable output.
        unsafe { blst_p1_add_or_double(&mut out, &self.0, &other.0) };
        G1(out)
    }
}

/// An element of the scalar field Fr.
#[derive(Clone, Copy)]
struct Fr(blst_fr);

impl Fr {
    fn from_u64(value: u64) -> Fr {
        let limbs = [value, 0, 0, 0];
        let mut out = blst_fr::default();
        // SAFETY: `limbs` is four readable u64 limbs; `out` a writable output.
        unsafe { blst_fr_from_uint64(&mut out, limbs.as_ptr()) };
        Fr(out)
    }

    fn add(&self, other: &Fr) -> Fr {
        let mut out = blst_fr::default();
        // SAFETY: initialised inputs, writable output.
        unsafe { blst_fr_add(&mut out, &self.0, &other.0) };
        Fr(out)
    }

    fn from_bendian(bytes: &[u8; 32]) -> Fr {
        let mut scalar = blst_scalar::default();
        let mut out = blst_fr::default();
        // SAFETY: `bytes` is 32 readable bytes; `scalar` and `out` are writable outputs.
        unsafe {
            blst_scalar_from_bendian(&mut scalar, bytes.as_ptr());
            blst_fr_from_scalar(&mut out, &scalar);
        }
        Fr(out)
    }

    fn to_bendian(self) -> [u8; 32] {
        let mut scalar = blst_scalar::default();
        let mut out = [0u8; 32];
        // SAFETY: `self.0` is initialised; `scalar` and `out` (32 bytes) are writable outputs.
        unsafe {
            blst_scalar_from_fr(&mut scalar, &self.0);
            blst_bendian_from_scalar(out.as_mut_ptr(), &scalar);
        }
        out
    }

    fn sub(&self, other: &Fr) -> Fr {
        let mut out = blst_fr::default();
        // SAFETY: initialised inputs, writable output.
        unsafe { blst_fr_sub(&mut out, &self.0, &other.0) };
        Fr(out)
    }

    fn mul(&self, other: &Fr) -> Fr {
        let mut out = blst_fr::default();
        // SAFETY: initialised inputs, writable output.
        unsafe { blst_fr_mul(&mut out, &self.0, &other.0) };
        Fr(out)
    }

    fn inverse(&self) -> Fr {
        let mut out = blst_fr::default();
        // SAFETY: initialised input, writable output. The callers never invert zero: the
        // x-coordinates are distinct, so every difference is non-zero.
        unsafe { blst_fr_inverse(&mut out, &self.0) };
        Fr(out)
    }
}

/// Lagrange coefficients for evaluating at `at` the polynomial through points at `xs`
/// (distinct, non-zero x-coordinates).
fn lagrange(xs: &[u64], at: u64) -> Vec<Fr> {
    let at = Fr::from_u64(at);
    xs.iter()
        .map(|&xi| {
            let fxi = Fr::from_u64(xi);
            let mut numerator = Fr::from_u64(1);
            let mut denominator = Fr::from_u64(1);
            for &xj in xs.iter().filter(|&&xj| xj != xi) {
                let fxj = Fr::from_u64(xj);
                numerator = numerator.mul(&at.sub(&fxj));
                denominator = denominator.mul(&fxi.sub(&fxj));
            }
            numerator.mul(&denominator.inverse())
        })
        .collect()
}

/// Evaluates at x = `at` the polynomial "in the exponent" through `(x, point)` pairs, by
/// multi-scalar Lagrange interpolation. The x-coordinates must be distinct.
pub fn interpolate(points: &[(u64, G1)], at: u64) -> Option<G1> {
    let xs: Vec<u64> = points.iter().map(|(x, _)| *x).collect();
    let mut unique = xs.clone();
    unique.sort_unstable();
    unique.dedup();
    if points.is_empty() || unique.len() != xs.len() {
        return None;
    }
    let coefficients = lagrange(&xs, at);
    let mut terms = points.iter().zip(&coefficients).map(|((_, p), c)| p.mul(c));
    let first = terms.next()?;
    Some(terms.fold(first, |sum, term| sum.add(&term)))
}

/// Why bytes are not a usable secret key, or a key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    // Never carries the bytes themselves.
    #[error("a BLS secret key is 32 bytes, this has {0}")]
    Length(usize),
    #[error("not a BLS secret key (zero, or not below the group order)")]
    OutOfRange,
    #[error("the system random number generator failed: {0}")]
    Random(String),
    #[error("cannot split into {shares} shares with threshold {threshold}")]
    Split { shares: usize, threshold: usize },
}

/// A BLS secret key, or a share of one. Deliberately neither `Debug` nor `Display`, so it
/// cannot end up in a log line.
#[derive(Clone)]
pub struct Secret(blst::min_pk::SecretKey);

impl Secret {
    /// A 32-byte big-endian secret key, `0 < key < r`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Secret, SecretError> {
        if bytes.len() != 32 {
            return Err(SecretError::Length(bytes.len()));
        }
        blst::min_pk::SecretKey::from_bytes(bytes)
            .map(Secret)
            .map_err(|_| SecretError::OutOfRange)
    }

    /// A fresh key from 32 bytes of system randomness, through blst's EIP-2333 `KeyGen` (so the
    /// key is uniform modulo r).
    pub fn random() -> Result<Secret, SecretError> {
        let mut ikm = [0u8; 32];
        getrandom::fill(&mut ikm).map_err(|e| SecretError::Random(e.to_string()))?;
        let key = blst::min_pk::SecretKey::key_gen(&ikm, &[]).map_err(|_| SecretError::OutOfRange);
        ikm.fill(0);
        key.map(Secret)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public_key(&self) -> G1 {
        // The compressed form of a key blst derived is always a valid point.
        G1::from_compressed(&self.0.sk_to_pk().to_bytes()).expect("blst derives valid public keys")
    }

    /// Signs `message` (Ethereum's proof-of-possession scheme); the signature as a G2 point.
    pub fn sign(&self, message: &[u8]) -> G2 {
        G2::from_compressed(&self.0.sign(message, ETH_DST, &[]).to_bytes())
            .expect("blst produces valid signatures")
    }

    fn scalar(&self) -> Fr {
        Fr::from_bendian(&self.to_bytes())
    }
}

/// Shamir-splits `secret` into `shares` shares, any `threshold` of which recover it: share `i`
/// is f(i + 1) for a random polynomial f of degree `threshold - 1` with f(0) = the secret
/// (Charon's convention, so share `i` belongs to operator `i`).
pub fn split(secret: &Secret, shares: usize, threshold: usize) -> Result<Vec<Secret>, SecretError> {
    if threshold == 0 || threshold > shares {
        return Err(SecretError::Split { shares, threshold });
    }
    let mut coefficients = vec![secret.scalar()];
    for _ in 1..threshold {
        coefficients.push(Secret::random()?.scalar());
    }
    (1..=shares as u64)
        .map(|x| {
            let x = Fr::from_u64(x);
            // Horner's rule, highest coefficient first.
            let value = coefficients
                .iter()
                .rev()
                .fold(Fr::from_u64(0), |acc, c| acc.mul(&x).add(c));
            // f(x) = 0 happens with probability 1/r; refusing it is the honest answer.
            Secret::from_bytes(&value.to_bendian())
        })
        .collect()
}

/// A G2 point: a signature or a partial signature.
#[derive(Clone, Copy)]
pub struct G2(blst_p2);

impl PartialEq for G2 {
    fn eq(&self, other: &Self) -> bool {
        self.to_compressed() == other.to_compressed()
    }
}

impl std::fmt::Debug for G2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.to_compressed();
        write!(f, "G2(0x")?;
        for byte in &bytes[..8] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

impl G2 {
    /// Decodes a 96-byte compressed point (a signature).
    pub fn from_compressed(bytes: &[u8]) -> Result<G2, PointError> {
        let bytes: &[u8; 96] = bytes
            .try_into()
            .map_err(|_| PointError::Length(bytes.len()))?;
        let mut affine = blst_p2_affine::default();
        // SAFETY: `bytes` is 96 readable bytes, `affine` a writable output.
        let result = unsafe { blst_p2_uncompress(&mut affine, bytes.as_ptr()) };
        if result != BLST_ERROR::BLST_SUCCESS {
            return Err(PointError::NotOnCurve(format!("{result:?}")));
        }
        let mut point = blst_p2::default();
        // SAFETY: `affine` is initialised, `point` a writable output.
        unsafe { blst_p2_from_affine(&mut point, &affine) };
        Ok(G2(point))
    }

    pub fn to_compressed(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        // SAFETY: `out` is 96 writable bytes, `self.0` an initialised point.
        unsafe { blst_p2_compress(out.as_mut_ptr(), &self.0) };
        out
    }

    fn mul(&self, scalar: &Fr) -> G2 {
        let mut bytes = blst_scalar::default();
        // SAFETY: `scalar.0` is initialised; `bytes` a writable output.
        unsafe { blst_scalar_from_fr(&mut bytes, &scalar.0) };
        let mut out = blst_p2::default();
        // SAFETY: `bytes.b` holds 32 little-endian bytes (255 significant bits of an Fr element).
        unsafe { blst_p2_mult(&mut out, &self.0, bytes.b.as_ptr(), 255) };
        G2(out)
    }

    fn add(&self, other: &G2) -> G2 {
        let mut out = blst_p2::default();
        // SAFETY: both inputs are initialised points; `out` a writable output.
        unsafe { blst_p2_add_or_double(&mut out, &self.0, &other.0) };
        G2(out)
    }

    /// Checks this signature of `message` against `public` (Ethereum's scheme), with subgroup
    /// checks of both points.
    pub fn verifies(&self, message: &[u8], public: &G1) -> bool {
        let Ok(signature) = blst::min_pk::Signature::from_bytes(&self.to_compressed()) else {
            return false;
        };
        let Ok(public) = blst::min_pk::PublicKey::from_bytes(&public.to_compressed()) else {
            return false;
        };
        signature.verify(true, message, ETH_DST, &[], &public, true) == BLST_ERROR::BLST_SUCCESS
    }
}

/// Combines partial signatures `(x, signature)` (share index i at x = i + 1) into the group
/// signature, by Lagrange interpolation at 0 in G2. The x-coordinates must be distinct.
pub fn combine(partials: &[(u64, G2)]) -> Option<G2> {
    let xs: Vec<u64> = partials.iter().map(|(x, _)| *x).collect();
    let mut unique = xs.clone();
    unique.sort_unstable();
    unique.dedup();
    if partials.is_empty() || unique.len() != xs.len() || xs.contains(&0) {
        return None;
    }
    let coefficients = lagrange(&xs, 0);
    let mut terms = partials
        .iter()
        .zip(&coefficients)
        .map(|((_, p), c)| p.mul(c));
    let first = terms.next()?;
    Some(terms.fold(first, |sum, term| sum.add(&term)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/charon/cluster-lock-v1.7.0-3of4.json"
    );

    fn fixture_shares() -> (G1, Vec<G1>) {
        let lock: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
        let dv = &lock["distributed_validators"][0];
        let group = G1::from_hex(dv["distributed_public_key"].as_str().unwrap()).unwrap();
        let shares = dv["public_shares"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| G1::from_hex(s.as_str().unwrap()).unwrap())
            .collect();
        (group, shares)
    }

    #[test]
    fn any_three_shares_of_the_real_lock_interpolate_to_its_group_key() {
        let (group, shares) = fixture_shares();
        for skip in 0..4 {
            let subset: Vec<(u64, G1)> = (0..4)
                .filter(|&i| i != skip)
                .map(|i| (i as u64 + 1, shares[i]))
                .collect();
            assert_eq!(interpolate(&subset, 0), Some(group), "without share {skip}");
        }
        // The fourth share lies on the polynomial the other three define.
        let basis: Vec<(u64, G1)> = (0..3).map(|i| (i as u64 + 1, shares[i])).collect();
        assert_eq!(interpolate(&basis, 4), Some(shares[3]));
    }

    #[test]
    fn swapped_shares_do_not_interpolate_to_the_group_key() {
        let (group, shares) = fixture_shares();
        let swapped = [(1, shares[1]), (2, shares[0]), (3, shares[2])];
        assert_ne!(interpolate(&swapped, 0), Some(group));
    }

    #[test]
    fn bad_points_are_refused_with_the_reason() {
        assert_eq!(G1::from_hex("0x1234"), Err(PointError::Length(2)));
        assert!(matches!(G1::from_hex("zz"), Err(PointError::Hex(_))));
        // The compressed point at infinity.
        let mut infinity = [0u8; 48];
        infinity[0] = 0xc0;
        assert_eq!(G1::from_compressed(&infinity), Err(PointError::Infinity));
        // A flipped bit leaves the curve (or the subgroup).
        let (_, shares) = fixture_shares();
        let mut bytes = shares[0].to_compressed();
        bytes[20] ^= 0x01;
        assert!(G1::from_compressed(&bytes).is_err());
        // Round trip.
        assert_eq!(
            G1::from_compressed(&shares[0].to_compressed()),
            Ok(shares[0])
        );
    }

    #[test]
    fn interpolation_needs_distinct_points() {
        let (_, shares) = fixture_shares();
        assert_eq!(interpolate(&[(1, shares[0]), (1, shares[1])], 0), None);
        assert_eq!(interpolate(&[], 0), None);
    }

    #[test]
    fn any_threshold_subset_of_split_shares_signs_for_the_group_key() {
        let secret = Secret::random().unwrap();
        let group = secret.public_key();
        let shares = split(&secret, 4, 3).unwrap();
        let message = b"attestation";
        let partials: Vec<(u64, G2)> = shares
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u64 + 1, s.sign(message)))
            .collect();
        for skip in 0..4 {
            let subset: Vec<(u64, G2)> =
                (0..4).filter(|&i| i != skip).map(|i| partials[i]).collect();
            let signature = combine(&subset).unwrap();
            assert!(signature.verifies(message, &group), "without share {skip}");
            assert_eq!(signature, secret.sign(message));
        }
        // Two shares are not enough, and a share's own signature is not the group's.
        let too_few = combine(&partials[..2]).unwrap();
        assert!(!too_few.verifies(message, &group));
        assert!(!partials[0].1.verifies(message, &group));
        // The public shares interpolate to the group key too.
        let public: Vec<(u64, G1)> = shares
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u64 + 1, s.public_key()))
            .collect();
        assert_eq!(interpolate(&public[1..], 0), Some(group));
    }

    #[test]
    fn secrets_are_checked_and_splits_need_a_fitting_threshold() {
        assert_eq!(
            Secret::from_bytes(&[1; 31]).err(),
            Some(SecretError::Length(31))
        );
        assert_eq!(
            Secret::from_bytes(&[0; 32]).err(),
            Some(SecretError::OutOfRange)
        );
        assert_eq!(
            Secret::from_bytes(&[0xff; 32]).err(),
            Some(SecretError::OutOfRange)
        );
        let secret = Secret::random().unwrap();
        assert_eq!(
            Secret::from_bytes(&secret.to_bytes()).unwrap().to_bytes(),
            secret.to_bytes()
        );
        for (shares, threshold) in [(4, 0), (4, 5)] {
            assert_eq!(
                split(&secret, shares, threshold).err(),
                Some(SecretError::Split { shares, threshold })
            );
        }
    }
}
