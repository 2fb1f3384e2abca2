//! Reuse of images already in the registry: a `--cargo` build whose inputs match an image the
//! registry holds runs no cargo; only the tags move.
//!
//! - [`key`]: the input key, a digest over everything an image's bytes depend on;
//! - [`declared`]: what build scripts declared they read (`rerun-if-changed`,
//!   `rerun-if-env-changed`), stored with the record and read again at lookup;
//! - [`record`]: "these inputs gave this index", under a tag derived from the key, whose
//!   `subject` is the index; the build keeps it in the layout, the push writes it after the
//!   index and before the tags ([`stage_record`]);
//! - [`lookup`]: every image's record at once, before cargo; a hit whose index is still in the
//!   repository is reused.
//!
//! Images are reproducible, so a record can be trusted and checked: `--check-reuse` rebuilds
//! and compares.

pub mod declared;
pub mod files;
pub mod images;
pub mod key;
pub mod lookup;
pub mod record;

pub use declared::Declared;
pub use images::{keys, record, KeyOptions};
pub use key::{InputKey, Inputs};
pub use lookup::{lookup_all, Hit, Miss, Wanted};
pub use record::Record;

use crate::layout::{Descriptor, Layout};
use crate::push::PushError;
use crate::registry::{Client, Target};

/// The record a layout holds (its `index.json` annotation), if any; one that does not parse is
/// none (said at debug level: the layout is still pushed).
pub fn layout_record(layout: &Layout) -> Option<Record> {
    let text = layout
        .index_annotations()
        .ok()?
        .remove(record::ANNOTATION)?;
    Record::from_annotation(&text)
        .map_err(|e| tracing::debug!("{}: {e}", layout.root().display()))
        .ok()
}

/// The layout's record about `index`, as it goes up after the index and before the tags
/// ([`StagedRecord::put`]); `None` without a record, or when the registry holds these very bytes
/// under its key's tag already (a re-push writes nothing). Asked for beside the image's uploads,
/// so it costs no round trip of its own.
pub async fn stage_record(
    client: &Client,
    layout: &Layout,
    index: &Descriptor,
) -> Result<Option<StagedRecord>, PushError> {
    let Some(record) = layout_record(layout) else {
        return Ok(None);
    };
    let subject = record::Subject {
        media_type: index.media_type.clone(),
        digest: index.digest.clone(),
        size: index.size,
    };
    let (bytes, digest) = record.manifest(subject);
    let tag = record::tag(&record.key);
    if client.manifest_digest(Target::Tag(&tag)).await?.as_ref() == Some(&digest) {
        return Ok(None);
    }
    let index = index.digest.clone();
    Ok(Some(StagedRecord {
        tag,
        bytes,
        digest,
        index,
    }))
}

/// A record the registry does not hold yet.
pub struct StagedRecord {
    tag: crate::oci::Tag,
    bytes: Vec<u8>,
    digest: crate::digest::Digest,
    index: crate::digest::Digest,
}

impl StagedRecord {
    /// Put the record under its key's tag (after the index, before the image's tags).
    pub async fn put(
        self,
        client: &Client,
        line: &(dyn Fn(String) + Sync),
    ) -> Result<(), PushError> {
        let mt = crate::oci::media_type::INDEX;
        client
            .put_manifest(Target::Tag(&self.tag), mt, &self.bytes, &self.digest)
            .await?;
        line(format!(
            "reuse record {} -> {}",
            self.tag,
            crate::registry::client::short(&self.index)
        ));
        Ok(())
    }
}
