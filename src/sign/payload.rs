//! The simple-signing payload, as cosign writes it (sigstore's `payload.Cosign`, Go's
//! `json.Marshal`: fields in declaration order, compact, no newline, `"optional":null` without
//! annotations), and its strict reading, as containers/image reads it (`critical` with exactly
//! `identity`, `image` and `type`; `optional` null or an object).

use serde::Deserialize;

use super::SignError;
use crate::digest::Digest;

pub const COSIGN_TYPE: &str = "cosign container image signature";

/// The payload bytes that sign `digest` for `identity` (the repository without tag, as cosign
/// writes it: `ghcr.io/org/app`).
pub fn payload(identity: &str, digest: &Digest) -> Vec<u8> {
    let s = |v: &str| serde_json::to_string(v).expect("a string serialises");
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":{}}},"image":{{"docker-manifest-digest":{}}},"type":{}}},"optional":null}}"#,
        s(identity),
        s(&digest.to_string()),
        s(COSIGN_TYPE)
    )
    .into_bytes()
}

/// What a payload claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub identity: String,
    pub digest: Digest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    critical: Critical,
    // Required, but may be null: `Option` alone would accept it missing.
    optional: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// Read a payload strictly. Only call this on bytes whose signature verified.
pub fn parse(what: &str, bytes: &[u8]) -> Result<Claims, SignError> {
    let bad = |problem: String| SignError::Malformed {
        what: what.to_string(),
        problem,
    };
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if !(raw.optional.is_null() || raw.optional.is_object()) {
        return Err(bad("`optional` is neither null nor an object".into()));
    }
    if raw.critical.kind != COSIGN_TYPE {
        return Err(bad(format!(
            "critical.type is `{}`, not `{COSIGN_TYPE}`",
            raw.critical.kind
        )));
    }
    let digest = Digest::parse(&raw.critical.image.docker_manifest_digest)
        .map_err(|e| bad(format!("critical.image: {e}")))?;
    Ok(Claims {
        identity: raw.critical.identity.docker_reference,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_cosigns_bytes_and_reads_back() {
        let d = Digest::of(b"x");
        let p = payload("ghcr.io/org/app", &d);
        let want = format!(
            "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"ghcr.io/org/app\"}},\"image\":{{\"docker-manifest-digest\":\"{d}\"}},\"type\":\"cosign container image signature\"}},\"optional\":null}}"
        );
        assert_eq!(String::from_utf8(p.clone()).unwrap(), want);
        let c = parse("p", &p).unwrap();
        assert_eq!(c.identity, "ghcr.io/org/app");
        assert_eq!(c.digest, d);
    }

    #[test]
    fn strict_reading_refuses_what_containers_image_refuses() {
        let d = Digest::of(b"x");
        let ok = String::from_utf8(payload("r/a", &d)).unwrap();
        let with_optional = ok.replace("null", r#"{"creator":"x"}"#);
        assert!(parse("p", with_optional.as_bytes()).is_ok());
        for bad in [
            ok.replace(",\"optional\":null", ""),
            ok.replace("\"type\"", "\"extra\":1,\"type\""),
            ok.replace(
                "cosign container image signature",
                "atomic container signature",
            ),
            ok.replace(&d.to_string(), "sha256:12"),
            ok.replace("null", "3"),
        ] {
            assert!(parse("p", bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
