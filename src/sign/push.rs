//! The signatures' part of a push: [`prepare`] before any request (the key already decrypted,
//! the payloads signed, the layout's stored signatures read and their repository checked); then
//! [`cosign_entries`] go to [`crate::artifact::push`], which merges them into their tags beside
//! the image's uploads and writes them after the index, before any tag moves. A re-push of what
//! the registry holds writes nothing: one `GET` a signature tag.

use super::{
    describe_subject, payload, signature_tag, ImageSignatures, SignError, SignatureLayer, Signer,
};
use crate::digest::Digest;
use crate::layout::{Layout, ResolvedImage};
use crate::oci::{Reference, Repository, Tag};

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

/// The signatures as entries of their `.sig` tags, for [`crate::artifact::push`].
pub fn cosign_entries(sigs: ImageSignatures) -> Vec<(Tag, Vec<SignatureLayer>, String)> {
    sigs.subjects
        .into_iter()
        .map(|(d, p, layers)| {
            (
                signature_tag(&d),
                layers,
                describe_subject(&d, p.as_deref()),
            )
        })
        .collect()
}
