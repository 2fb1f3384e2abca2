//! Moving tags, the last step of a push, all or none as far as the registry allows: every tag
//! of one image (or of several images) is pointed at its index together, each `PUT` run to its
//! end; when one fails, every tag that moved is undone: put back to the manifest it named when
//! the push began (that manifest `PUT` again under it), or, if it did not exist then, deleted.
//! A registry without tag deletion (distribution 2.8 answers 400) keeps such a tag: the error
//! line names it and the index it names. Nothing else is guaranteed: a tag moved by someone
//! else between the push's first round trip and its end is put back to what it named then.

use futures_util::future::join_all;

use super::report::Reporter;
use crate::digest::Digest;
use crate::layout::ManifestBlob;
use crate::registry::client::short;
use crate::registry::{Client, RegistryError, Tag, Target};

/// One tag to point at an index.
pub(crate) struct TagMove<'a> {
    pub client: &'a Client,
    /// The index, as the layout holds it.
    pub top: &'a ManifestBlob,
    pub tag: &'a Tag,
    /// What the tag named when the push began; `None`: it did not exist.
    pub before: Option<&'a Digest>,
    pub report: &'a Reporter,
}

/// A tag `PUT` failed: the others that had moved were undone, as `undone` says.
#[derive(Debug, thiserror::Error)]
#[error("tag {tag}: {source}; {undone}")]
pub struct TagsNotMoved {
    tag: String,
    #[source]
    source: RegistryError,
    undone: String,
}

impl TagMove<'_> {
    /// `REPO:TAG`, as the error line names it.
    fn name(&self) -> String {
        format!("{}:{}", self.client.repository.path, self.tag)
    }

    async fn point(&self) -> Result<(), RegistryError> {
        let d = &self.top.descriptor;
        let target = Target::Tag(self.tag);
        self.client
            .put_manifest(target, &d.media_type, &self.top.bytes, &d.digest)
            .await?;
        self.report
            .line(format!("tag {} -> {}", self.tag, short(&d.digest)));
        Ok(())
    }

    /// Undo [`point`](Self::point): back to what the tag named, or gone.
    async fn undo(&self) -> Result<(), RegistryError> {
        let target = Target::Tag(self.tag);
        let Some(before) = self.before else {
            self.client.delete_manifest(target).await?;
            self.report.line(format!("tag {} removed", self.tag));
            return Ok(());
        };
        let old = self.client.get_manifest(Target::Digest(before)).await?;
        let old = old.ok_or_else(|| {
            RegistryError::Protocol(format!("{before} is no longer in the registry"))
        })?;
        self.client
            .put_manifest(target, &old.media_type, &old.bytes, before)
            .await?;
        self.report
            .line(format!("tag {} put back -> {}", self.tag, short(before)));
        Ok(())
    }
}

/// Point every tag of `moves`; on a failure, undo those that moved (and those whose `PUT` may
/// have landed: no answer came), and return which move failed and what was undone.
pub(crate) async fn move_all(moves: &[TagMove<'_>]) -> Result<(), (usize, TagsNotMoved)> {
    let results = join_all(moves.iter().map(TagMove::point)).await;
    let Some(failed) = results.iter().position(Result::is_err) else {
        return Ok(());
    };
    // A tag whose `PUT` got no answer, or a wrong digest, may have moved: undone too (a
    // no-op if it had not).
    let landed = |e: &RegistryError| {
        matches!(
            e,
            RegistryError::Transport { .. } | RegistryError::DigestMismatch { .. }
        )
    };
    let undo: Vec<&TagMove> = moves
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.as_ref().err().is_none_or(landed))
        .map(|(m, _)| m)
        .collect();
    let undone = join_all(undo.iter().map(|m| m.undo())).await;
    let undone = said(undo.iter().copied().zip(undone));
    let source = results
        .into_iter()
        .nth(failed)
        .and_then(Result::err)
        .expect("the failed move");
    let tag = moves[failed].name();
    Err((
        failed,
        TagsNotMoved {
            tag,
            source,
            undone,
        },
    ))
}

/// What undoing said, for the error line: which tags are back, which are not and why.
fn said<'a, 'b: 'a>(
    undone: impl Iterator<Item = (&'a TagMove<'b>, Result<(), RegistryError>)>,
) -> String {
    let (mut back, mut kept) = (Vec::new(), Vec::new());
    for (m, r) in undone {
        match r {
            Ok(()) => back.push(m.name()),
            Err(e) => kept.push(format!(
                "{} still names {} ({}: {e})",
                m.name(),
                short(&m.top.descriptor.digest),
                match m.before {
                    Some(_) => "putting it back failed",
                    None => "it did not exist before, and deleting it failed",
                }
            )),
        }
    }
    match (back.is_empty(), kept.is_empty()) {
        (true, true) => "no other tag had moved".to_string(),
        (false, true) => format!("the tags that had moved were undone: {}", back.join(", ")),
        (true, false) => format!("undone: none; not undone: {}", kept.join("; ")),
        (false, false) => format!(
            "undone: {}; not undone: {}",
            back.join(", "),
            kept.join("; ")
        ),
    }
}
