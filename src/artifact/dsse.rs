//! DSSE (Dead Simple Signing Envelope, v1.0): a payload, its type, and signatures over the
//! pre-authentication encoding `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP
//! body` (lengths in ASCII decimal), so the type is signed with the body. The JSON form is what
//! cosign writes into an `.att` layer: `payloadType`, `payload` (standard base64), `signatures`
//! (`keyid`, `sig`: base64 DER ECDSA).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{malformed, ArtifactError};
use crate::sign::{PublicKey, SignError, Signer};

/// The payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The largest envelope read: a provenance is a few kilobytes; more is refused, not parsed.
pub const MAX_ENVELOPE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// DSSE's pre-authentication encoding of `body` as `payload_type`.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl Envelope {
    /// `body` as `payload_type`, signed by `signer` over the PAE. The key id is empty, as
    /// cosign writes it for a key.
    pub fn sign(signer: &dyn Signer, payload_type: &str, body: &[u8]) -> Result<Self, SignError> {
        let signed = signer.sign(&pae(payload_type, body))?;
        Ok(Envelope {
            payload_type: payload_type.to_string(),
            payload: STANDARD.encode(body),
            signatures: vec![Signature {
                keyid: String::new(),
                sig: STANDARD.encode(&signed.signature),
            }],
        })
    }

    /// The JSON bytes (field order fixed, compact).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope serialises")
    }

    /// Read an envelope, at most [`MAX_ENVELOPE`] bytes.
    pub fn parse(what: &str, bytes: &[u8]) -> Result<Self, ArtifactError> {
        if bytes.len() > MAX_ENVELOPE {
            return Err(malformed(
                what,
                format!(
                    "a DSSE envelope of {} bytes (more than {MAX_ENVELOPE}); refused",
                    bytes.len()
                ),
            ));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| malformed(what, format!("not a DSSE envelope: {e}")))
    }

    /// The payload, when one signature verifies with `key` over the PAE; the signature is
    /// checked before the payload is used.
    pub fn open(&self, what: &str, key: &PublicKey) -> Result<Vec<u8>, ArtifactError> {
        let body = STANDARD
            .decode(&self.payload)
            .map_err(|_| malformed(what, "the payload is not base64"))?;
        let message = pae(&self.payload_type, &body);
        let good = self.signatures.iter().any(|s| {
            STANDARD
                .decode(&s.sig)
                .is_ok_and(|der| key.verifies(&message, &der))
        });
        match good {
            true => Ok(body),
            false => Err(ArtifactError::Verify(format!(
                "{what}: no signature of the envelope verifies with the key ({} checked)",
                self.signatures.len()
            ))),
        }
    }

    /// The payload, unverified (for printing what a layout holds).
    pub fn body(&self, what: &str) -> Result<Vec<u8>, ArtifactError> {
        STANDARD
            .decode(&self.payload)
            .map_err(|_| malformed(what, "the payload is not base64"))
    }
}

/// The in-toto Statement v1 of `predicate_type` an envelope carries about `digest`, checked: an
/// in-toto payload, its signature good with `key` (before anything of the payload is read), the
/// Statement's subject naming `digest`; `other` says what a statement about another digest is.
pub fn statement_about(
    what: &str,
    envelope: &Envelope,
    key: &PublicKey,
    digest: &crate::digest::Digest,
    predicate_type: &str,
    other: &str,
) -> Result<serde_json::Value, ArtifactError> {
    if envelope.payload_type != IN_TOTO {
        return Err(malformed(
            what,
            format!("payload type `{}`, not `{IN_TOTO}`", envelope.payload_type),
        ));
    }
    let statement = statement_of(what, &envelope.open(what, key)?, predicate_type)?;
    let names = statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["digest"]["sha256"].as_str() == Some(digest.hex()));
    match names {
        true => Ok(statement),
        false => Err(ArtifactError::Verify(format!(
            "{what}: {other} (its subject is not {digest})"
        ))),
    }
}

/// A payload read as an in-toto Statement v1 of `predicate_type`.
pub fn statement_of(
    what: &str,
    body: &[u8],
    predicate_type: &str,
) -> Result<serde_json::Value, ArtifactError> {
    // Counted before it is parsed: a `Value` costs far more than its text.
    let limits = crate::untrusted::Limits {
        array: 1_000,
        values: 8_192,
    };
    let v = crate::untrusted::parse(body, limits).map_err(|e| match e {
        crate::untrusted::BoundError::Json(e) => {
            malformed(what, format!("the payload is not JSON: {e}"))
        }
        e => malformed(what, format!("the payload is refused: {e}")),
    })?;
    if v["_type"] != super::provenance::STATEMENT_TYPE || v["predicateType"] != predicate_type {
        return Err(malformed(
            what,
            format!("not an in-toto Statement v1 with predicate type {predicate_type}"),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_specs_encoding() {
        // The DSSE protocol document's example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn oversized_or_non_json_envelopes_are_refused() {
        let big = vec![b' '; MAX_ENVELOPE + 1];
        let e = Envelope::parse("x", &big).unwrap_err().to_string();
        assert!(e.contains("refused"), "{e}");
        assert!(Envelope::parse("x", b"hello").is_err());
    }
}
