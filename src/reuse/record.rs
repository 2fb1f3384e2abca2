//! The reuse record: "the inputs with this key gave this index". In the registry it is an OCI
//! image index with no manifests, whose `subject` is the image's index and whose annotation
//! holds the record, under a tag derived from the key alone (`ironstar-reuse-<hex>`): one `GET`
//! finds it, no blob is needed to write it, and it is a function of its inputs (a re-push writes
//! the same bytes). In a layout it is an annotation of `index.json`, written by the build and
//! put by the push after the index, before the tags.

use serde::{Deserialize, Serialize};

use super::declared::Declared;
use crate::digest::Digest;
use crate::oci::media_type;
use crate::registry::Tag;

/// The annotation holding the record (in the registry's record and a layout's `index.json`).
pub const ANNOTATION: &str = "dev.ironstar.reuse.record";
/// The record's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.dev.ironstar.reuse.v1+json";
/// The largest record read: a record is a few kilobytes; anything larger is not one of ours.
pub const MAX_RECORD: usize = 256 << 10;

/// What a build records of its inputs, beside the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub key: Digest,
    /// The image's `org.opencontainers.image.revision` (`--revision`): `--check-reuse`
    /// rebuilds with it.
    #[serde(default)]
    pub revision: Option<String>,
    /// The commit the image was built from, for the summary.
    #[serde(default)]
    pub commit: Option<String>,
    /// The image's date: `--check-reuse` rebuilds with it.
    pub source_date_epoch: i64,
    /// What the build scripts declared, with the digests of their values.
    #[serde(default)]
    pub declared: Declared,
}

/// The index a record names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    media_type: String,
    artifact_type: String,
    manifests: Vec<serde_json::Value>,
    subject: Subject,
    annotations: std::collections::BTreeMap<String, String>,
}

impl Record {
    /// What the summary names the build by: its revision, else its commit, else its key.
    pub fn since(&self) -> String {
        self.revision
            .clone()
            .or_else(|| self.commit.clone())
            .unwrap_or_else(|| format!("the build of key {}", self.key))
    }
}

/// The tag the record of `key` is stored under.
pub fn tag(key: &Digest) -> Tag {
    Tag::parse(&format!("ironstar-reuse-{}", key.hex())).expect("a valid tag")
}

impl Record {
    /// The record as one annotation value (canonical JSON: sorted keys, no spaces).
    pub fn to_annotation(&self) -> String {
        let v = serde_json::to_value(self).expect("a record serialises");
        serde_json::to_string(&v).expect("JSON")
    }

    pub fn from_annotation(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("the record does not parse: {e}"))
    }

    /// The record's manifest about `subject`: its bytes and digest.
    pub fn manifest(&self, subject: Subject) -> (Vec<u8>, Digest) {
        let m = Manifest {
            schema_version: 2,
            media_type: media_type::INDEX.into(),
            artifact_type: ARTIFACT_TYPE.into(),
            manifests: Vec::new(),
            subject,
            annotations: [(ANNOTATION.to_string(), self.to_annotation())].into(),
        };
        let v = serde_json::to_value(&m).expect("a manifest serialises");
        let bytes = serde_json::to_vec(&v).expect("JSON");
        let digest = Digest::of(&bytes);
        (bytes, digest)
    }

    /// The record a registry holds under `key`'s tag, and the index it names; refused (with the
    /// reason, for a one-line warning) when it is too large, not ours, or for another key.
    pub fn parse(bytes: &[u8], key: &Digest) -> Result<(Record, Subject), String> {
        if bytes.len() > MAX_RECORD {
            return Err(format!(
                "{} bytes, over the {MAX_RECORD}-byte cap",
                bytes.len()
            ));
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a reuse record: {e}"))?;
        if m.artifact_type != ARTIFACT_TYPE || m.media_type != media_type::INDEX {
            return Err(format!(
                "artifact type `{}`, not a reuse record",
                m.artifact_type
            ));
        }
        let indexes = [
            media_type::INDEX,
            media_type::MANIFEST,
            media_type::DOCKER_LIST,
        ];
        if !indexes.contains(&m.subject.media_type.as_str()) {
            return Err(format!("its subject is a `{}`", m.subject.media_type));
        }
        let text = m.annotations.get(ANNOTATION).ok_or("it holds no record")?;
        let record = Record::from_annotation(text)?;
        if record.key != *key {
            return Err(format!("it is the record of another key ({})", record.key));
        }
        Ok((record, m.subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &Digest) -> Record {
        Record {
            key: key.clone(),
            revision: Some("v1".into()),
            commit: Some("abc123".into()),
            source_date_epoch: 1_700_000_000,
            declared: Declared::default(),
        }
    }

    #[test]
    fn a_record_round_trips_and_its_bytes_are_a_function_of_it() {
        let key = Digest::of(b"inputs");
        let subject = Subject {
            media_type: media_type::INDEX.into(),
            digest: Digest::of(b"index"),
            size: 5,
        };
        let (bytes, digest) = record(&key).manifest(subject.clone());
        assert_eq!(
            record(&key).manifest(subject.clone()),
            (bytes.clone(), digest)
        );
        assert_eq!(
            Record::parse(&bytes, &key).unwrap(),
            (record(&key), subject)
        );
        assert!(tag(&key).as_str().starts_with("ironstar-reuse-"));
    }

    #[test]
    fn hostile_records_are_refused_with_a_reason() {
        let key = Digest::of(b"inputs");
        let other = Digest::of(b"other");
        let subject = Subject {
            media_type: media_type::INDEX.into(),
            digest: Digest::of(b"index"),
            size: 5,
        };
        let refused = |b: &[u8]| Record::parse(b, &key).unwrap_err();
        assert!(refused(b"not json").contains("not a reuse record"));
        assert!(refused(&vec![b' '; MAX_RECORD + 1]).contains("cap"));
        let (theirs, _) = record(&other).manifest(subject.clone());
        assert!(refused(&theirs).contains("another key"));
        let (ours, _) = record(&key).manifest(subject);
        let text = String::from_utf8(ours).unwrap();
        let layer = text.replace(media_type::INDEX, "application/vnd.oci.image.layer.v1.tar");
        assert!(!refused(layer.as_bytes()).is_empty());
    }
}
