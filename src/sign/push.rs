//! The signatures' part of a push, in three steps matching the push's own:
//! [`prepare`] before any request (the key already decrypted, the payloads signed, the layout's
//! stored signatures read and their repository checked); [`stage`] beside the image's blobs (each
//! signature tag fetched, the manifests merged, their payloads and configs uploaded); and
//! [`Staged::commit`] after the index and the SBOMs, before any tag moves (the signature
//! manifests under their tags). A re-push of what the registry holds writes nothing: one `GET` a
//! signature tag.

use std::collections::BTreeSet;
use std::path::PathBuf;

use futures_util::future::try_join_all;

use super::{describe_subject, payload, signature_tag, store, ImageSignatures, SignError, Signer};
use crate::digest::Digest;
use crate::layout::{Layout, ResolvedImage};
use crate::oci::{Reference, Repository, Tag};
use crate::registry::client::short;
use crate::registry::{Client, Target};

/// The signed digests of an image: its index (or single manifest), then each platform manifest.
pub fn subjects(image: &ResolvedImage) -> Vec<(Digest, Option<String>)> {
    std::iter::once(&image.top)
        .chain(&image.manifests)
        .map(|m| (m.descriptor.digest.clone(), m.descriptor.platform.clone()))
        .collect()
}

/// What this push puts up, decided before any request. With `signer`: fresh signatures for
/// `repository`, and those stored in the layout that name it too (another key's). Without: the
/// layout's, which must name `repository`. `None`: nothing to sign or send.
pub fn prepare(
    layout: &Layout,
    image: &ResolvedImage,
    repository: &Repository,
    signer: Option<&dyn Signer>,
) -> Result<Option<ImageSignatures>, SignError> {
    let subjects = subjects(image);
    let identity = repository.to_string();
    let stored = super::layout::read(layout, &subjects)?;
    let mut out = match signer {
        Some(s) => ImageSignatures::sign(s, &identity, &subjects)?,
        None => ImageSignatures {
            subjects: subjects
                .iter()
                .map(|(d, p)| (d.clone(), p.clone(), Vec::new()))
                .collect(),
        },
    };
    for ((digest, platform, layers), (_, _, kept)) in out.subjects.iter_mut().zip(stored.subjects) {
        for layer in kept {
            let what = format!(
                "{}: the signature of {}",
                layout.root().display(),
                describe_subject(digest, platform.as_deref())
            );
            let claims = payload::parse(&what, &layer.payload)?;
            if claims.digest != *digest {
                return Err(SignError::Malformed {
                    what,
                    problem: format!("it signs {}, not this manifest", claims.digest),
                });
            }
            if names(&claims.identity, repository) {
                if !layers.contains(&layer) {
                    layers.push(layer);
                }
            } else if signer.is_none() {
                return Err(SignError::Identity(format!(
                    "{}: its signatures name `{}`, not `{identity}` where this push goes; pass --sign-key FILE to sign for `{identity}`, or --no-sign to push it unsigned",
                    layout.root().display(),
                    claims.identity
                )));
            } else {
                tracing::debug!(
                    "{what}: names `{}`, re-signed for `{identity}`",
                    claims.identity
                );
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Whether a payload's `docker-reference` names `repository` (a tag in it is ignored; Docker
/// Hub's aliases are one registry).
pub fn names(identity: &str, repository: &Repository) -> bool {
    Reference::parse(identity).is_ok_and(|r| r.repository == *repository)
}

/// Signature manifests ready to go under their tags; their blobs are in the registry.
pub struct Staged {
    manifests: Vec<(Tag, store::Written, String)>,
    _scratch: Option<tempfile::TempDir>,
}

/// Fetch every signature tag, merge ours into what it holds, and upload the payloads and configs
/// of the manifests that change. Runs beside the image's own uploads: nothing here is visible
/// until [`Staged::commit`].
pub async fn stage(client: &Client, sigs: &ImageSignatures) -> Result<Staged, SignError> {
    // A subject with nothing to add (no key, and the layout holds none for it) is not asked for.
    let subjects: Vec<_> = sigs.subjects.iter().filter(|s| !s.2.is_empty()).collect();
    let current = try_join_all(subjects.iter().map(|(d, _, _)| async move {
        let tag = signature_tag(d);
        let got = client.get_manifest(Target::Tag(&tag)).await?;
        Ok::<_, SignError>((tag, got))
    }))
    .await?;
    let mut manifests = Vec::new();
    for ((digest, platform, layers), (tag, got)) in subjects.into_iter().zip(current) {
        let what = format!("{}:{tag}", client.repository);
        let existing = got
            .as_ref()
            .map(|m| store::parse(&what, &m.bytes))
            .transpose()?;
        if let Some(w) = store::merge(existing, layers)? {
            manifests.push((tag, w, describe_subject(digest, platform.as_deref())));
        }
    }
    if manifests.is_empty() {
        return Ok(Staged {
            manifests,
            _scratch: None,
        });
    }
    // The blobs go up from files, as every blob of a push does.
    let scratch = tempfile::tempdir().map_err(|source| SignError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let mut blobs: Vec<(Digest, PathBuf, u64)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add = |bytes: &[u8]| -> Result<(), SignError> {
        let d = Digest::of(bytes);
        if seen.insert(d.clone()) {
            let path = scratch.path().join(d.hex());
            std::fs::write(&path, bytes).map_err(|source| SignError::Io {
                path: path.clone(),
                source,
            })?;
            blobs.push((d, path, bytes.len() as u64));
        }
        Ok(())
    };
    for (_, w, _) in &manifests {
        for l in &w.added {
            add(&l.payload)?;
        }
        add(&w.config)?;
    }
    try_join_all(
        blobs.iter().map(|(d, path, size)| async move {
            client.push_blob(d, *size, path, None, None).await
        }),
    )
    .await?;
    Ok(Staged {
        manifests,
        _scratch: Some(scratch),
    })
}

impl Staged {
    /// The signature manifests under their tags, together; how many were written.
    pub async fn commit(
        self,
        client: &Client,
        line: &(dyn Fn(String) + Sync),
    ) -> Result<usize, SignError> {
        try_join_all(self.manifests.iter().map(|(tag, w, subject)| async move {
            client
                .put_manifest(Target::Tag(tag), &w.media_type, &w.manifest, &w.digest)
                .await
                .map_err(|e| {
                    SignError::Put(format!("putting the signature tag {tag} of {subject}: {e}"))
                })?;
            line(format!(
                "signature {} -> {tag} ({} new)",
                short(&w.digest),
                w.added.len()
            ));
            Ok::<_, SignError>(())
        }))
        .await?;
        Ok(self.manifests.len())
    }
}
