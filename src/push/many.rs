//! Pushing several images together (a workspace's): the three push steps run across images,
//! each step for every image before the next, so that no tag moves until every image is up.
//!
//! 1. one client per repository, the clients of one registry sharing one session whose token
//!    covers every repository's scopes (one token fetch for all);
//! 2. [`check`](super::check) for every image together: the first round trip asks, for every
//!    image at once, whether the registry holds its index and where its tags point;
//! 3. [`Checked::upload`] for every image together, the index by digest (never under its tag);
//!    every upload runs to its end, and one that fails fails the push, naming its image;
//! 4. only when every upload succeeded, [`Uploaded::tag`] for every image together.

use std::sync::Arc;

use futures_util::future::{join_all, try_join_all};

use super::phases::{check_with, connect_shared, Uploaded};
use super::tags::{self, TagMove};
use super::{PushError, PushOptions, PushOutcome};
use crate::registry::{Client, Repository};

/// One image of several: its name (for messages) and where it goes.
#[derive(Debug, Clone)]
pub struct NamedPush {
    pub name: String,
    pub opts: PushOptions,
}

/// Two images bound for one repository: their tags would race, and which image a tag names
/// would depend on the run.
#[derive(Debug, thiserror::Error)]
#[error("images `{first}` and `{second}` both go to {repository}: which one a tag would name depends on the run; give each its own `repository`")]
pub struct SameRepository {
    pub first: String,
    pub second: String,
    pub repository: String,
}

/// Refuse two of `images` (name, repository) with one repository, the first pair in order.
pub fn one_repository_each<'a>(
    images: impl IntoIterator<Item = (&'a str, &'a Repository)>,
) -> Result<(), SameRepository> {
    let mut seen: Vec<(&str, &Repository)> = Vec::new();
    for (name, repository) in images {
        if let Some((first, _)) = seen.iter().find(|(_, r)| *r == repository) {
            return Err(SameRepository {
                first: first.to_string(),
                second: name.to_string(),
                repository: repository.to_string(),
            });
        }
        seen.push((name, repository));
    }
    Ok(())
}

/// Push every image of `images`; returns once every image's tags point at its index, the
/// outcomes in the order given. A failure before the tags moves no tag of any image. Two
/// images with one repository are refused before any request.
pub async fn push_all(images: &[NamedPush]) -> Result<Vec<PushOutcome>, PushError> {
    one_repository_each(images.iter().map(|i| (i.name.as_str(), &i.opts.repository)))?;
    let clients = connect_all(images).await?;
    let checked = try_join_all(images.iter().zip(clients).map(|(img, client)| async move {
        check_with(&img.opts, client)
            .await
            .map_err(|e| named(img, e, HELD))
    }))
    .await?;
    // Every upload runs to its end (none is dropped halfway through a blob); the first failure
    // is reported, and no tag moves.
    let uploads = join_all(checked.into_iter().map(|c| c.upload(false))).await;
    let mut uploaded = Vec::new();
    for (img, result) in images.iter().zip(uploads) {
        uploaded.push(result.map_err(|e| named(img, e, HELD))?);
    }
    // Every image's tags together, all or none as far as the registry allows.
    let (owners, moves): (Vec<usize>, Vec<TagMove>) = uploaded
        .iter()
        .enumerate()
        .flat_map(|(i, u)| u.moves().into_iter().map(move |m| (i, m)))
        .unzip();
    let moved = tags::move_all(&moves).await;
    drop(moves);
    if let Err((at, e)) = moved {
        return Err(named(
            &images[owners[at]],
            PushError::Tags(Box::new(e)),
            TAGGING,
        ));
    }
    Ok(uploaded.into_iter().map(Uploaded::done).collect())
}

const HELD: &str = "no image's tags were moved (they move only when every image is up)";
const TAGGING: &str = "every image is in the registry by digest";

fn named(img: &NamedPush, e: PushError, note: &'static str) -> PushError {
    PushError::Image {
        name: img.name.clone(),
        repository: img.opts.repository.to_string(),
        source: Box::new(e),
        note,
    }
}

/// One client per image, those of one registry (and scheme) over one shared session.
async fn connect_all(images: &[NamedPush]) -> Result<Vec<Arc<Client>>, PushError> {
    let mut clients: Vec<Option<Arc<Client>>> = vec![None; images.len()];
    let mut groups: Vec<(&str, bool, Vec<usize>)> = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let key = (img.opts.repository.api_host(), img.opts.plain_http);
        match groups.iter_mut().find(|g| (g.0, g.1) == key) {
            Some(g) => g.2.push(i),
            None => groups.push((key.0, key.1, vec![i])),
        }
    }
    for (_, _, members) in groups {
        let opts: Vec<&PushOptions> = members.iter().map(|&i| &images[i].opts).collect();
        let shared = connect_shared(&opts)
            .await
            .map_err(|e| named(&images[members[0]], e, HELD))?;
        for (i, c) in members.into_iter().zip(shared) {
            clients[i] = Some(c);
        }
    }
    Ok(clients
        .into_iter()
        .map(|c| c.expect("a client per image"))
        .collect())
}
