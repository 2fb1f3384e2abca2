//! Finding each image's record before cargo runs, all images at once, and moving a reused
//! image's tags. Round trips: the records' `GET`s beside the tags' `HEAD`s (the first, which
//! also meets the auth challenge); for each hit the index's `GET` by digest (it is still in the
//! repository, and its bytes go under the tags); then the tags that differ, together.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::{join_all, try_join_all};

use super::record::{self, Record};
use crate::digest::Digest;
use crate::push::{PushError, PushOptions};
use crate::registry::client::short;
use crate::registry::manifest::Fetched;
use crate::registry::{Client, Tag, Target};

/// One image to look up: where it goes (the push's options: repository, tags, credential) and
/// its key; declared files are read under `root`, the workspace root.
pub struct Wanted {
    pub name: String,
    pub opts: PushOptions,
    pub key: Digest,
    pub root: PathBuf,
}

/// A record that holds: the image is reused.
pub struct Hit {
    pub record: Record,
    /// The recorded index, as the registry serves it.
    pub index: Fetched,
    /// The tags to move; those already at the index are left alone.
    pub moving: Vec<Tag>,
    pub unchanged: Vec<Tag>,
    client: Arc<Client>,
}

/// Why an image is built: no record, or one that does not hold (said once, as a warning
/// when the record is unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    NoRecord,
    Changed(String),
    Unreadable(String),
}

/// Look up every image of `wanted`, together: a hit or why not, in order. Never an error: a
/// registry that cannot be asked is a miss for each image (the push says what is wrong).
pub async fn lookup_all(wanted: &[Wanted]) -> Vec<Result<Hit, Miss>> {
    let opts: Vec<&PushOptions> = wanted.iter().map(|w| &w.opts).collect();
    let clients = match crate::push::connect_shared_clients(&opts).await {
        Ok(c) => c,
        Err(e) => {
            let why = Miss::Unreadable(format!("cannot reach the registry: {e}"));
            return wanted.iter().map(|_| Err(why.clone())).collect();
        }
    };
    join_all(wanted.iter().zip(clients).map(|(w, c)| lookup(w, c))).await
}

async fn lookup(w: &Wanted, client: Arc<Client>) -> Result<Hit, Miss> {
    let tag = record::tag(&w.key);
    let tags = &w.opts.tags;
    let (found, at) = tokio::join!(
        client.get_manifest(Target::Tag(&tag)),
        try_join_all(tags.iter().map(|t| client.manifest_digest(Target::Tag(t)))),
    );
    let unreadable = |e: String| Miss::Unreadable(format!("{}:{tag}: {e}", w.opts.repository));
    let found = match found {
        // A repository not made yet, or not readable with this credential before the push
        // (registries answer either for a name they do not know): no record, as on a first push.
        Err(e) if matches!(e.status(), Some(401 | 403 | 404)) => {
            tracing::debug!("{}:{tag}: {e}", w.opts.repository);
            return Err(Miss::NoRecord);
        }
        found => found.map_err(|e| unreadable(e.to_string()))?,
    };
    let found = found.ok_or(Miss::NoRecord)?;
    let (record, subject) = record::Record::parse(&found.bytes, &w.key).map_err(unreadable)?;
    if let Some(what) = record.declared.first_changed(&w.root) {
        return Err(Miss::Changed(format!("{what} changed since the build")));
    }
    let index = client
        .get_manifest(Target::Digest(&subject.digest))
        .await
        .map_err(|e| unreadable(e.to_string()))?
        .ok_or_else(|| {
            Miss::Changed(format!(
                "its recorded index {} is no longer in {}",
                short(&subject.digest),
                w.opts.repository
            ))
        })?;
    let at = at.map_err(|e| unreadable(e.to_string()))?;
    let (mut moving, mut unchanged) = (Vec::new(), Vec::new());
    for (t, d) in tags.iter().zip(at) {
        match d.as_ref() == Some(&index.digest) {
            true => unchanged.push(t.clone()),
            false => moving.push(t.clone()),
        }
    }
    Ok(Hit {
        record,
        index,
        moving,
        unchanged,
        client,
    })
}

impl Hit {
    /// Point the tags that differ at the recorded index, together.
    pub async fn move_tags(&self) -> Result<(), PushError> {
        let i = &self.index;
        try_join_all(self.moving.iter().map(|t| async move {
            self.client
                .put_manifest(Target::Tag(t), &i.media_type, &i.bytes, &i.digest)
                .await
        }))
        .await?;
        Ok(())
    }
}

/// Move the tags of every hit, together (a blocking caller's runtime).
pub async fn move_all(hits: &[&Hit]) -> Result<(), PushError> {
    try_join_all(hits.iter().map(|h| h.move_tags())).await?;
    Ok(())
}
