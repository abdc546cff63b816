//! Password hashes in RabbitMQ's format, so that hashes exported from a RabbitMQ node
//! work here unchanged.
//!
//! [`PasswordHash`] is RabbitMQ's `rabbit_password_hashing_sha256` format: a random
//! 4-byte salt, `sha256(salt ++ password)`, stored as `base64(salt ++ digest)` (36 bytes,
//! 48 base64 characters). That is what `rabbitmqctl hash_password` prints and what
//! `definitions.json` holds in `password_hash`, so such a hash can be pasted into
//! `fedamq.toml`. Hashes made with `rabbit_password_hashing_sha512` (68 bytes) and
//! `rabbit_password_hashing_md5` (20 bytes: what RabbitMQ before 3.6 made, and what a
//! definitions file without `hashing_algorithm` holds) are also accepted, so every user a
//! RabbitMQ node exports can log in; new hashes are always SHA-256. An empty hash locks
//! the account, as it does in RabbitMQ. Digests are compared in constant time. Blank
//! passwords never verify, as RabbitMQ's internal backend refuses them.

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

use super::base64;

const SALT_LEN: usize = 4;
const SHA256_LEN: usize = 32;
const SHA512_LEN: usize = 64;
const MD5_LEN: usize = 16;

/// RabbitMQ's names for the algorithms (`hashing_algorithm` in definitions).
pub const SHA256_NAME: &str = "rabbit_password_hashing_sha256";
pub const SHA512_NAME: &str = "rabbit_password_hashing_sha512";
pub const MD5_NAME: &str = "rabbit_password_hashing_md5";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha256,
    Sha512,
    Md5,
}

impl Algorithm {
    fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha256 => SHA256_LEN,
            Algorithm::Sha512 => SHA512_LEN,
            Algorithm::Md5 => MD5_LEN,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => SHA256_NAME,
            Algorithm::Sha512 => SHA512_NAME,
            Algorithm::Md5 => MD5_NAME,
        }
    }

    fn digest(self, salt: &[u8; SALT_LEN], password: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Sha256 => Sha256::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            Algorithm::Sha512 => Sha512::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            Algorithm::Md5 => Md5::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    /// An empty stored hash: no password can match (RabbitMQ's way to lock an account).
    Locked,
    Salted {
        algorithm: Algorithm,
        salt: [u8; SALT_LEN],
        digest: Vec<u8>,
    },
}

/// A salted password hash in RabbitMQ's format (see the module docs).
///
/// `Debug` does not print the hash, so configs can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(Repr);

/// Why a stored password hash could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordHashError {
    #[error("not valid base64")]
    Base64,
    #[error(
        "decodes to {0} bytes; expected 36 (rabbit_password_hashing_sha256), 68 \
         (rabbit_password_hashing_sha512) or 20 (rabbit_password_hashing_md5)"
    )]
    Length(usize),
    #[error("decodes to {got} bytes; {algorithm} hashes have {expected}")]
    LengthFor {
        algorithm: &'static str,
        got: usize,
        expected: usize,
    },
    #[error(
        "unknown hashing algorithm '{0}'; expected rabbit_password_hashing_sha256, \
         rabbit_password_hashing_sha512 or rabbit_password_hashing_md5"
    )]
    UnknownAlgorithm(String),
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt, as `rabbitmqctl add_user` does.
    pub fn new(password: impl AsRef<[u8]>) -> Self {
        Self::with_salt(rand::random(), password)
    }

    /// Hashes with a given salt: for reproducing a known hash.
    pub fn with_salt(salt: [u8; SALT_LEN], password: impl AsRef<[u8]>) -> Self {
        let algorithm = Algorithm::Sha256;
        let digest = algorithm.digest(&salt, password.as_ref());
        PasswordHash(Repr::Salted {
            algorithm,
            salt,
            digest,
        })
    }

    /// A hash no password matches.
    pub fn locked() -> Self {
        PasswordHash(Repr::Locked)
    }

    /// Reads the base64 form (`rabbitmqctl hash_password` output, `password_hash` in
    /// `definitions.json`). The algorithm is told by the length: 36 bytes is SHA-256, 68
    /// is SHA-512. An empty string is a locked account.
    pub fn parse(encoded: &str) -> Result<Self, PasswordHashError> {
        let encoded = encoded.trim();
        if encoded.is_empty() {
            return Ok(Self::locked());
        }
        let raw = base64::decode(encoded).ok_or(PasswordHashError::Base64)?;
        let algorithm = match raw.len().checked_sub(SALT_LEN) {
            Some(SHA256_LEN) => Algorithm::Sha256,
            Some(SHA512_LEN) => Algorithm::Sha512,
            Some(MD5_LEN) => Algorithm::Md5,
            _ => return Err(PasswordHashError::Length(raw.len())),
        };
        Ok(Self::salted(algorithm, &raw))
    }

    /// Reads the base64 form made with the algorithm RabbitMQ names `algorithm`
    /// (`hashing_algorithm` in `definitions.json`); the length must be that algorithm's.
    /// An empty string is a locked account.
    pub fn parse_with_algorithm(encoded: &str, algorithm: &str) -> Result<Self, PasswordHashError> {
        let algorithm = match algorithm {
            SHA256_NAME => Algorithm::Sha256,
            SHA512_NAME => Algorithm::Sha512,
            MD5_NAME => Algorithm::Md5,
            other => return Err(PasswordHashError::UnknownAlgorithm(other.to_owned())),
        };
        let encoded = encoded.trim();
        if encoded.is_empty() {
            return Ok(Self::locked());
        }
        let raw = base64::decode(encoded).ok_or(PasswordHashError::Base64)?;
        let expected = SALT_LEN + algorithm.digest_len();
        if raw.len() != expected {
            return Err(PasswordHashError::LengthFor {
                algorithm: algorithm.name(),
                got: raw.len(),
                expected,
            });
        }
        Ok(Self::salted(algorithm, &raw))
    }

    /// From `salt ++ digest`, whose length is the algorithm's.
    fn salted(algorithm: Algorithm, raw: &[u8]) -> Self {
        let (salt, digest) = raw.split_at(SALT_LEN);
        let mut salt_arr = [0u8; SALT_LEN];
        salt_arr.copy_from_slice(salt);
        PasswordHash(Repr::Salted {
            algorithm,
            salt: salt_arr,
            digest: digest.to_vec(),
        })
    }

    /// Whether `password` is the one hashed. Always false for a blank password (RabbitMQ
    /// refuses those outright) and for a locked hash.
    pub fn verify(&self, password: impl AsRef<[u8]>) -> bool {
        let password = password.as_ref();
        match &self.0 {
            Repr::Locked => false,
            Repr::Salted {
                algorithm,
                salt,
                digest,
            } => {
                let computed = algorithm.digest(salt, password);
                constant_time_eq(&computed, digest) && !password.is_empty()
            }
        }
    }

    /// The base64 form [`parse`](Self::parse) reads (empty for a locked account).
    pub fn encoded(&self) -> String {
        match &self.0 {
            Repr::Locked => String::new(),
            Repr::Salted { salt, digest, .. } => {
                let mut raw = Vec::with_capacity(SALT_LEN + digest.len());
                raw.extend_from_slice(salt);
                raw.extend_from_slice(digest);
                base64::encode(&raw)
            }
        }
    }

    /// RabbitMQ's name for the algorithm (`hashing_algorithm` in `definitions.json`).
    pub fn algorithm_name(&self) -> &'static str {
        match &self.0 {
            Repr::Locked => "locked",
            Repr::Salted { algorithm, .. } => algorithm.name(),
        }
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({})", self.algorithm_name())
    }
}

/// Equality whose running time depends only on the lengths, so a guesser cannot learn
/// how many leading bytes of the digest matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The worked example in RabbitMQ's passwords guide
    /// (https://www.rabbitmq.com/docs/passwords#computing-password-hash):
    /// salt 908D C60A, password "test12".
    const DOCS_HASH: &str = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR";
    /// Exported from a RabbitMQ node (management API) for the password "1", quoted in
    /// https://stackoverflow.com/questions/41306350.
    const EXPORTED_HASH: &str = "y4xPTRVfzXg68sz9ALqeQzARam3CwnGo53xS752cDV5+Utzh";

    #[test]
    fn rabbitmq_docs_example_hash() {
        let h = PasswordHash::parse(DOCS_HASH).unwrap();
        assert!(h.verify("test12"));
        assert!(!h.verify("test13"));
        assert_eq!(h.encoded(), DOCS_HASH);
        assert_eq!(
            PasswordHash::with_salt([0x90, 0x8D, 0xC6, 0x0A], "test12").encoded(),
            DOCS_HASH
        );
        assert_eq!(h.algorithm_name(), "rabbit_password_hashing_sha256");
    }

    #[test]
    fn hash_exported_from_rabbitmq() {
        let h = PasswordHash::parse(EXPORTED_HASH).unwrap();
        assert!(h.verify("1"));
        assert!(!h.verify("2"));
    }

    #[test]
    fn sha512_hash() {
        // python3: salt=bytes.fromhex('908DC60A');
        // base64.b64encode(salt + hashlib.sha512(salt + b'test12').digest())
        let encoded = "kI3GChuNuIYf8lRbCCxZjgjKwsY19ns6+uFO0zcXRBGA/XGJPYD8OWMy7EB8TaOmAzjP2azv84GbINYwX2cDWb4DHnc=";
        let h = PasswordHash::parse(encoded).unwrap();
        assert_eq!(h.algorithm_name(), "rabbit_password_hashing_sha512");
        assert!(h.verify("test12"));
        assert!(!h.verify("test1"));
        assert_eq!(h.encoded(), encoded);
    }

    #[test]
    fn hash_round_trip_and_fresh_salts() {
        let a = PasswordHash::new("hunter2");
        let b = PasswordHash::new("hunter2");
        assert_eq!(a.encoded().len(), 48);
        assert!(a.verify("hunter2") && b.verify("hunter2"));
        assert!(!a.verify("hunter3") && !a.verify(""));
        let back = PasswordHash::parse(&a.encoded()).unwrap();
        assert_eq!(back, a);
        assert!(back.verify(b"hunter2"));
        // Non-UTF-8 passwords are hashed as bytes, as RabbitMQ does.
        assert!(PasswordHash::new([0xff, 0x00, 0x80]).verify([0xff, 0x00, 0x80]));
    }

    #[test]
    fn blank_password_never_verifies() {
        let h = PasswordHash::new("");
        assert!(!h.verify(""));
    }

    #[test]
    fn empty_hash_locks_the_account() {
        let h = PasswordHash::parse("").unwrap();
        assert_eq!(h, PasswordHash::locked());
        assert!(!h.verify("anything"));
        assert_eq!(h.encoded(), "");
    }

    #[test]
    fn bad_hashes_are_refused() {
        assert_eq!(
            PasswordHash::parse("not base64!"),
            Err(PasswordHashError::Base64)
        );
        assert_eq!(
            PasswordHash::parse("AAAA"),
            Err(PasswordHashError::Length(3))
        );
        // Wrong padding.
        assert!(PasswordHash::parse("kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2PO=").is_err());
    }

    #[test]
    fn md5_hash_of_old_rabbitmq_versions() {
        // python3: salt=bytes.fromhex('908DC60A');
        // base64.b64encode(salt + hashlib.md5(salt + b'test12').digest())
        let encoded = "kI3GChNpte2FApYFXScl+0dIluk=";
        for h in [
            PasswordHash::parse(encoded).unwrap(),
            PasswordHash::parse_with_algorithm(encoded, MD5_NAME).unwrap(),
        ] {
            assert_eq!(h.algorithm_name(), MD5_NAME);
            assert!(h.verify("test12"));
            assert!(!h.verify("test13"));
            assert_eq!(h.encoded(), encoded);
        }
    }

    #[test]
    fn algorithm_named_in_definitions() {
        let h = PasswordHash::parse_with_algorithm(DOCS_HASH, SHA256_NAME).unwrap();
        assert!(h.verify("test12"));
        assert_eq!(
            PasswordHash::parse_with_algorithm(DOCS_HASH, SHA512_NAME),
            Err(PasswordHashError::LengthFor {
                algorithm: SHA512_NAME,
                got: 36,
                expected: 68
            })
        );
        assert!(matches!(
            PasswordHash::parse_with_algorithm(DOCS_HASH, "bcrypt"),
            Err(PasswordHashError::UnknownAlgorithm(_))
        ));
        assert_eq!(
            PasswordHash::parse_with_algorithm("", SHA256_NAME),
            Ok(PasswordHash::locked())
        );
    }

    #[test]
    fn debug_does_not_leak_the_hash() {
        let h = PasswordHash::parse(DOCS_HASH).unwrap();
        assert!(!format!("{h:?}").contains("kI3G"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "[A-Za-z0-9+/=!]{0,80}") {
            let _ = PasswordHash::parse(&s);
        }
    }
}
