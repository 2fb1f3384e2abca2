//! Reuse of images already in the registry: a `--cargo` build whose inputs match an image the
//! registry holds runs no cargo; only the tags move.
//!
//! - [`key`]: the input key, a digest over everything an image's bytes depend on;
//! - [`declared`]: what build scripts declared they read (`rerun-if-changed`,
//!   `rerun-if-env-changed`), stored with the record and read again at lookup;
//! - [`record`]: "these inputs gave this index", under a tag derived from the key, whose
//!   `subject` is the index; the build keeps it in the layout, the push writes it after the
//!   index and before the tags ([`put_record`]);
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

/// After the index, before the tags: the layout's record about `index`, under its key's tag.
/// Nothing without a record. Its bytes are a function of the record, so a re-push writes the
/// same manifest again.
pub async fn put_record(
    client: &Client,
    layout: &Layout,
    index: &Descriptor,
    line: &(dyn Fn(String) + Sync),
) -> Result<(), PushError> {
    let Some(record) = layout_record(layout) else {
        return Ok(());
    };
    let subject = record::Subject {
        media_type: index.media_type.clone(),
        digest: index.digest.clone(),
        size: index.size,
    };
    let (bytes, digest) = record.manifest(subject);
    let tag = record::tag(&record.key);
    let mt = crate::oci::media_type::INDEX;
    client
        .put_manifest(Target::Tag(&tag), mt, &bytes, &digest)
        .await?;
    line(format!(
        "reuse record {tag} -> {}",
        crate::registry::client::short(&index.digest)
    ));
    Ok(())
}
