//! Keys: the private key that signs, read from the file `cosign generate-key-pair` writes (or a
//! plain PEM key), and the public key that verifies.
//!
//! cosign's file is PEM (`ENCRYPTED SIGSTORE PRIVATE KEY`, or the older `ENCRYPTED COSIGN
//! PRIVATE KEY`) around go-securesystemslib's JSON envelope:
//! `{"kdf":{"name":"scrypt","params":{"N":…,"r":8,"p":1},"salt":…},"cipher":{"name":
//! "nacl/secretbox","nonce":…},"ciphertext":…}` (byte strings in standard base64); the key
//! derived with scrypt opens the nacl secretbox (XSalsa20-Poly1305), which holds the PKCS#8 DER
//! key. The scrypt parameters accepted are the three that library writes (N = 2^15, 2^16, 2^17;
//! r = 8; p = 1), so a file cannot make us spend unbounded memory.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use crypto_secretbox::aead::{Aead as _, KeyInit as _};
use crypto_secretbox::XSalsa20Poly1305;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::der::pem;
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{SignError, Signed, Signer};

pub const SIGSTORE_PEM: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
pub const COSIGN_PEM: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// The largest key file read: a key is a few hundred bytes.
const MAX_KEY_FILE: u64 = 64 << 10;

/// A private ECDSA P-256 key that signs (SHA-256, RFC 6979 nonces: the same payload always gives
/// the same signature).
pub struct KeySigner {
    key: SigningKey,
    path: PathBuf,
}

impl std::fmt::Debug for KeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySigner({})", self.path.display())
    }
}

#[derive(Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

impl KeySigner {
    /// Read and, when encrypted, decrypt the key at `path`. `password` is `COSIGN_PASSWORD` (an
    /// empty one is a password too); `None` with an encrypted key is an error saying so.
    pub fn load(path: &Path, password: Option<&[u8]>) -> Result<Self, SignError> {
        let err = |problem: String| SignError::Key {
            path: path.to_path_buf(),
            problem,
        };
        let bytes = read_small(path).map_err(|e| err(e.to_string()))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| err("not a PEM file (not text)".into()))?
            .trim_start();
        let (label, der) = pem::decode_vec(text.as_bytes()).map_err(|_| {
            err(format!(
                "not a PEM private key (expected `{SIGSTORE_PEM}` from `cosign generate-key-pair`, or `PRIVATE KEY`)"
            ))
        })?;
        let der = Zeroizing::new(der);
        let key = match label {
            SIGSTORE_PEM | COSIGN_PEM => {
                let password = password.ok_or_else(|| {
                    err("the key is encrypted: set COSIGN_PASSWORD to its password (empty for none)".into())
                })?;
                let pkcs8 = decrypt(&der, password).map_err(err)?;
                pkcs8_key(&pkcs8).map_err(err)?
            }
            "PRIVATE KEY" => pkcs8_key(&der).map_err(err)?,
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
                .map(|k| SigningKey::from(&k))
                .map_err(|_| err("not an ECDSA P-256 key (only P-256 is supported)".into()))?,
            other => {
                return Err(err(format!(
                    "a `{other}` PEM block is not a private key ironstar reads (expected `{SIGSTORE_PEM}` or `PRIVATE KEY`)"
                )))
            }
        };
        Ok(KeySigner {
            key,
            path: path.to_path_buf(),
        })
    }

    /// The public key, as PEM (`PUBLIC KEY`, what `cosign.pub` holds).
    pub fn public_key_pem(&self) -> String {
        use p256::pkcs8::EncodePublicKey as _;
        self.key
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("a P-256 public key encodes")
    }
}

impl Signer for KeySigner {
    fn sign(&self, payload: &[u8]) -> Result<Signed, SignError> {
        let sig: Signature = self.key.sign(payload);
        Ok(Signed {
            signature: sig.to_der().as_bytes().to_vec(),
            annotations: Default::default(),
        })
    }

    fn describe(&self) -> String {
        format!("key {}", self.path.display())
    }

    fn public_key_der(&self) -> Option<Vec<u8>> {
        use p256::pkcs8::EncodePublicKey as _;
        let der = self.key.verifying_key().to_public_key_der().ok()?;
        Some(der.as_bytes().to_vec())
    }
}

/// The bytes of a key: the file at `path`, or, for `env://NAME` (cosign's spelling), the
/// environment variable NAME (a CI secret, with no file to write it to: a scratch action has
/// no shell).
fn read_small(path: &Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    use std::io::Read as _;
    if let Some(name) = path.to_str().and_then(|p| p.strip_prefix("env://")) {
        use std::os::unix::ffi::OsStringExt as _;
        let value = std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("the environment variable {name} is not set"),
                )
            })?;
        let mut bytes = Zeroizing::new(value.into_vec());
        bytes.truncate(MAX_KEY_FILE as usize);
        return Ok(bytes);
    }
    let mut bytes = Zeroizing::new(Vec::new());
    std::fs::File::open(path)?
        .take(MAX_KEY_FILE)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Open cosign's envelope with `password`: the PKCS#8 DER inside.
fn decrypt(envelope: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let e: Envelope = serde_json::from_slice(envelope)
        .map_err(|e| format!("not cosign's encrypted key format: {e}"))?;
    if e.kdf.name != "scrypt" || e.cipher.name != "nacl/secretbox" {
        return Err(format!(
            "unsupported encryption `{}` + `{}` (cosign writes scrypt + nacl/secretbox)",
            e.kdf.name, e.cipher.name
        ));
    }
    let p = &e.kdf.params;
    let log_n = match (p.n, p.r, p.p) {
        (32768, 8, 1) => 15,
        (65536, 8, 1) => 16,
        (131072, 8, 1) => 17,
        _ => {
            return Err(format!(
            "unsupported scrypt parameters N={} r={} p={} (cosign writes N=2^15..2^17, r=8, p=1)",
            p.n, p.r, p.p
        ))
        }
    };
    let b64 = |what: &str, s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| format!("the {what} is not base64"))
    };
    let salt = b64("salt", &e.kdf.salt)?;
    let nonce = b64("nonce", &e.cipher.nonce)?;
    let ciphertext = b64("ciphertext", &e.ciphertext)?;
    if nonce.len() != 24 {
        return Err("the nonce is not 24 bytes".into());
    }
    let params = scrypt::Params::new(log_n, 8, 1, 32).map_err(|e| e.to_string())?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, &salt, &params, key.as_mut()).map_err(|e| e.to_string())?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt(nonce.as_slice().into(), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| "wrong password (COSIGN_PASSWORD), or the key file is damaged".to_string())
}

/// A PKCS#8 DER key, which must be ECDSA P-256.
fn pkcs8_key(der: &[u8]) -> Result<SigningKey, String> {
    p256::SecretKey::from_pkcs8_der(der)
        .map(|k| SigningKey::from(&k))
        .map_err(|_| {
            "not an ECDSA P-256 key (only P-256 is supported: `cosign generate-key-pair` makes one)"
                .to_string()
        })
}

/// A public key that verifies signatures (`cosign.pub`: PEM `PUBLIC KEY`, ECDSA P-256).
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    pub fn load(path: &Path) -> Result<Self, SignError> {
        let err = |problem: String| SignError::PublicKey {
            path: path.to_path_buf(),
            problem,
        };
        let bytes = read_small(path).map_err(|e| err(e.to_string()))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| err("not a PEM file".into()))?;
        Self::from_pem(text.trim()).map_err(err)
    }

    pub fn from_pem(pem: &str) -> Result<Self, String> {
        VerifyingKey::from_public_key_pem(pem)
            .map(|key| PublicKey { key })
            .map_err(|_| {
                "not a PEM `PUBLIC KEY` of ECDSA P-256 (what `cosign generate-key-pair` writes to cosign.pub)"
                    .to_string()
            })
    }

    /// Whether `signature` (DER, as cosign stores it) signs `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        Signature::from_der(signature).is_ok_and(|sig| self.key.verify(payload, &sig).is_ok())
    }

    /// [`verifies`](Self::verifies) for the payload whose SHA-256 is `payload`: what `verify`
    /// does after hashing, so a payload checked against its digest is not hashed again.
    pub fn verifies_digest(&self, payload: &crate::Digest, signature: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        let hex = payload.hex().as_bytes();
        let prehash: Vec<u8> = hex
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap_or("x"), 16).unwrap_or(0))
            .collect();
        Signature::from_der(signature)
            .is_ok_and(|sig| self.key.verify_prehash(&prehash, &sig).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key encrypted the way go-securesystemslib does it, with `password`.
    fn encrypted_pem(signing: &SigningKey, password: &[u8], log_n: u8) -> String {
        use p256::pkcs8::EncodePrivateKey as _;
        let der = signing.to_pkcs8_der().unwrap();
        let (salt, nonce) = ([7u8; 32], [9u8; 24]);
        let params = scrypt::Params::new(log_n, 8, 1, 32).unwrap();
        let mut key = [0u8; 32];
        scrypt::scrypt(password, &salt, &params, &mut key).unwrap();
        let ct = XSalsa20Poly1305::new((&key).into())
            .encrypt((&nonce).into(), der.as_bytes())
            .unwrap();
        let b = |x: &[u8]| base64::engine::general_purpose::STANDARD.encode(x);
        let json = format!(
            r#"{{"kdf":{{"name":"scrypt","params":{{"N":{},"r":8,"p":1}},"salt":"{}"}},"cipher":{{"name":"nacl/secretbox","nonce":"{}"}},"ciphertext":"{}"}}"#,
            1u64 << log_n,
            b(&salt),
            b(&nonce),
            b(&ct)
        );
        pem::encode_string(SIGSTORE_PEM, p256::pkcs8::LineEnding::LF, json.as_bytes()).unwrap()
    }

    fn test_key() -> SigningKey {
        SigningKey::from_slice(&[0x42; 32]).unwrap()
    }

    #[test]
    fn an_encrypted_key_opens_with_its_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosign.key");
        std::fs::write(&path, encrypted_pem(&test_key(), b"s3cret", 15)).unwrap();
        let signer = KeySigner::load(&path, Some(b"s3cret")).unwrap();
        assert_eq!(signer.key.verifying_key(), test_key().verifying_key());
        let err = KeySigner::load(&path, Some(b"wrong"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrong password"), "{err}");
        assert!(!err.contains("wrong\""), "{err}");
        let err = KeySigner::load(&path, None).unwrap_err().to_string();
        assert!(err.contains("COSIGN_PASSWORD"), "{err}");
    }

    #[test]
    fn an_empty_password_is_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosign.key");
        std::fs::write(&path, encrypted_pem(&test_key(), b"", 16)).unwrap();
        assert!(KeySigner::load(&path, Some(b"")).is_ok());
    }

    #[test]
    fn plain_pkcs8_and_sec1_keys_load_and_others_are_refused() {
        use p256::pkcs8::EncodePrivateKey as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let pem = test_key()
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        std::fs::write(&path, pem.as_bytes()).unwrap();
        assert!(KeySigner::load(&path, None).is_ok());
        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = KeySigner::load(&path, None).unwrap_err().to_string();
        assert!(err.starts_with("--sign-key "), "{err}");
        std::fs::write(&path, "hello").unwrap();
        assert!(KeySigner::load(&path, None).is_err());
    }

    #[test]
    fn signatures_are_deterministic_and_verify_also_in_high_s_form() {
        let signer = KeySigner {
            key: test_key(),
            path: "k".into(),
        };
        let a = signer.sign(b"payload").unwrap().signature;
        assert_eq!(a, signer.sign(b"payload").unwrap().signature);
        let public = PublicKey::from_pem(&signer.public_key_pem()).unwrap();
        assert!(public.verifies(b"payload", &a));
        assert!(!public.verifies(b"payload!", &a));
        // Go's ecdsa (cosign) does not normalise s: the other form must verify too.
        let sig = Signature::from_der(&a).unwrap();
        let (r, s) = sig.split_scalars();
        let flipped = Signature::from_scalars(r, -*s).unwrap();
        assert!(public.verifies(b"payload", flipped.to_der().as_bytes()));
        let (d, other) = (
            crate::Digest::of(b"payload"),
            crate::Digest::of(b"payload!"),
        );
        assert!(public.verifies_digest(&d, &a));
        assert!(public.verifies_digest(&d, flipped.to_der().as_bytes()));
        assert!(!public.verifies_digest(&other, &a));
    }
}
