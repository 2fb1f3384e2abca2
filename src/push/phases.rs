//! A push in three steps, so that a caller pushing several images can run each step for all of
//! them before the next, and move no tag until every image is up:
//! [`check`] (the first round trip), [`Checked::upload`] (blobs, manifests, the index, then the
//! artifacts about them: SBOMs, signatures, attestations), [`Uploaded::tag`] (the tags that
//! differ).

use std::sync::Arc;

use futures_util::future::try_join_all;

use super::blobs::BlobPush;
use super::report::Reporter;
use super::tags::{self, TagMove};
use super::verify::Verification;
use super::{blocking, PushError, PushOptions, PushOutcome};
use crate::digest::Digest;
use crate::layout::{Layout, ManifestBlob, ResolvedImage};
use crate::registry::client::short;
use crate::registry::credential::find_credential;
use crate::registry::{Client, ClientOptions, Repository, Tag, Target};

/// A push after its first round trip: what the registry holds, and which tags must move.
pub struct Checked<'a> {
    opts: &'a PushOptions,
    client: Arc<Client>,
    layout: Layout,
    image: ResolvedImage,
    mount_from: Option<Repository>,
    /// The base image's repository, a mount source for its layers.
    base: Option<Repository>,
    report: Reporter,
    /// Hashing the blobs; `None` when the registry holds the index (nothing local is sent).
    verification: Option<Verification>,
    /// What goes up after the index ([`crate::artifact::push`]): signatures made before any
    /// request, the layout's attestations and referrers.
    artifacts: crate::artifact::push::Artifacts,
    moving: Vec<Tag>,
    /// What the moving tags that exist named when the push began (to put them back).
    before: Vec<(Tag, Digest)>,
    outcome: PushOutcome,
}

/// A push whose content is all in the registry: only its tags are left to move.
pub struct Uploaded<'a> {
    checked: Checked<'a>,
}

/// The layout's image and the remote tags: those given, else the image's own, else `latest`.
async fn open(opts: &PushOptions) -> Result<(Layout, ResolvedImage, Vec<Tag>), PushError> {
    let (dir, image) = (opts.layout.clone(), opts.image.clone());
    let (layout, resolved) = blocking(move || {
        let layout = Layout::open(&dir)?;
        let resolved = layout.resolve(image.as_deref())?;
        Ok((layout, resolved))
    })
    .await?;
    let mut tags = opts.tags.clone();
    if tags.is_empty() {
        tags = resolved
            .tags
            .iter()
            .filter_map(|t| Tag::parse(t).ok())
            .collect();
    }
    if tags.is_empty() {
        tags.push(Tag::latest().clone());
    }
    Ok((layout, resolved, tags))
}

/// The first round trip: whether the registry holds the index, and where each tag points (no
/// `/v2/` ping before it: its first answer tells what the ping would have). The blobs are hashed
/// meanwhile.
pub async fn check(opts: &PushOptions) -> Result<Checked<'_>, PushError> {
    let client = connect(opts).await?;
    check_with(opts, client).await
}

/// [`check`] over a client of the caller's (several images' clients sharing one session and
/// token: [`Client::shared`]).
pub async fn check_with(opts: &PushOptions, client: Arc<Client>) -> Result<Checked<'_>, PushError> {
    let mount_from = match &opts.mount_from {
        Some(m) => Some(opts.repository.sibling(m).map_err(PushError::MountFrom)?),
        None => None,
    };
    let report = Reporter::new(opts.progress);
    let (layout, image, mut tags) = open(opts).await?;
    if opts.by_digest {
        tags.clear();
    }
    let artifacts = artifacts(opts, &layout, &image).await?;
    let digest = image.top.descriptor.digest.clone();
    let name = opts.repository.to_string();
    let mut outcome = PushOutcome {
        image: format!("{name}@{digest}"),
        digest: digest.clone(),
        already_present: false,
        blobs_uploaded: 0,
        blobs_existing: 0,
        blobs_mounted: 0,
        tags_moved: Vec::new(),
        tags_unchanged: Vec::new(),
        sboms_pushed: 0,
        signatures_pushed: 0,
        signature_bundles_pushed: 0,
        attestations_pushed: 0,
    };

    // One round trip: whether the registry holds the index, and where each tag points. No
    // `/v2/` ping before it: its first answer (a 401 challenge, a refused connection, plain
    // http answered to https) tells what the ping would have.
    // The blobs are hashed meanwhile; nothing of them goes out before that is done.
    let verification = Verification::start(&layout, &image.blobs);
    let (present, current) = tokio::try_join!(
        client.manifest_digest(Target::Digest(&digest)),
        try_join_all(tags.iter().map(|t| client.manifest_digest(Target::Tag(t)))),
    )?;
    let (mut moving, mut before) = (Vec::new(), Vec::new());
    for (tag, at) in tags.into_iter().zip(current) {
        if at.as_ref() == Some(&digest) {
            report.line(format!("tag {tag} already points at {}", short(&digest)));
            outcome.tags_unchanged.push(tag);
        } else {
            before.extend(at.map(|d| (tag.clone(), d)));
            moving.push(tag);
        }
    }

    let verification = match present {
        Some(_) => {
            drop(verification);
            outcome.already_present = true;
            report.line(format!(
                "{name}@{digest} is already in the registry; no blob to send"
            ));
            None
        }
        None => Some(verification),
    };
    let base = super::blobs::base_repository(&image, &opts.repository);
    Ok(Checked {
        opts,
        client,
        layout,
        image,
        mount_from,
        base,
        report,
        verification,
        artifacts,
        moving,
        before,
        outcome,
    })
}

/// What this push sends after the index, decided before any request: the signatures (signed
/// now, or the layout's), the layout's attestations and its referrers of the image.
async fn artifacts(
    opts: &PushOptions,
    layout: &Layout,
    image: &ResolvedImage,
) -> Result<crate::artifact::push::Artifacts, PushError> {
    let (layout, image) = (layout.clone(), image.clone());
    let (repository, signer) = (opts.repository.clone(), opts.signer.clone());
    let (no_sign, no_sbom) = (opts.no_sign, opts.no_sbom);
    let provenance = !opts.no_sign && !opts.no_provenance;
    blocking(move || {
        use crate::artifact::{attest, push};
        let mut cosign = Vec::new();
        if !no_sign {
            let sigs = crate::sign::push::prepare(&layout, &image, &repository, signer.as_deref())?;
            cosign.extend(
                sigs.map(crate::sign::push::cosign_entries)
                    .unwrap_or_default(),
            );
        }
        if provenance {
            cosign.extend(attest::cosign_entries(&layout, &image)?);
        }
        let keep = |r: &crate::artifact::referrer::Referrer| match crate::sbom::is_sbom_type(
            &r.artifact_type,
        ) {
            true => !no_sbom,
            false if r.artifact_type != crate::artifact::BUNDLE => false,
            false => match crate::artifact::sigbundle::is_signature(&r.annotations) {
                true => !no_sign,
                false => provenance,
            },
        };
        let mut referrers = push::referrers_of(&layout, &image, keep)?;
        // Signing now: the bundles too (the layout's, if made with the same key, are the same).
        if let Some(signer) = signer.as_deref().filter(|_| !no_sign) {
            for r in crate::artifact::sigbundle::made(signer, &subject_refs(&image))? {
                if !referrers
                    .iter()
                    .any(|o| o.referrer.digest == r.referrer.digest)
                {
                    referrers.push(r);
                }
            }
        }
        Ok(push::Artifacts { cosign, referrers })
    })
    .await
}

/// The index and every platform manifest, as a referrer's `subject` names them.
fn subject_refs(image: &ResolvedImage) -> Vec<crate::image::BlobRef> {
    std::iter::once(&image.top)
        .chain(&image.manifests)
        .map(|m| crate::image::BlobRef {
            media_type: m.descriptor.media_type.as_str().into(),
            digest: m.descriptor.digest.clone(),
            size: m.descriptor.size,
        })
        .collect()
}

impl<'a> Checked<'a> {
    /// Everything but the tags: unless the registry holds the index, the blobs (verified before
    /// any byte goes out), the platform manifests, the index; then the SBOMs and the signatures
    /// (whose tags are read and blobs uploaded beside the image's). With `index_by_tag` and
    /// exactly one tag to move and nothing to send after the index, the index goes up under that
    /// tag directly (its `PUT` is then the last step, as a tag's is); a caller that moves the
    /// tags of several images together passes `false`.
    pub async fn upload(mut self, index_by_tag: bool) -> Result<Uploaded<'a>, PushError> {
        let artifacts = std::mem::take(&mut self.artifacts);
        // A reuse record goes after the index and before the tags: the index then goes by digest.
        let record = crate::reuse::layout_record(&self.layout).is_some();
        let direct = index_by_tag && artifacts.is_empty() && !record;
        let (client, layout) = (self.client.clone(), self.layout.clone());
        let staging = async {
            match artifacts.is_empty() {
                true => Ok(None),
                false => Ok::<_, PushError>(Some(
                    crate::artifact::push::stage(&client, Some(&layout), artifacts).await?,
                )),
            }
        };
        let top = self.image.top.descriptor.clone();
        let record = crate::reuse::stage_record(&client, &layout, &top);
        let (staged, record, ()) = tokio::try_join!(staging, record, self.send_image(direct))?;
        if let Some(staged) = staged {
            let line = |m: String| self.report.line(m);
            let written = staged.commit(&self.client, &line).await?;
            let o = &mut self.outcome;
            for (kind, n) in &written.referrers {
                match *kind {
                    "sbom" => o.sboms_pushed += n,
                    "signature bundle" => o.signature_bundles_pushed += n,
                    _ => o.attestations_pushed += n,
                }
            }
            o.signatures_pushed = written.cosign;
        }
        if let Some(record) = record {
            let line = |m: String| self.report.line(m);
            record.put(&self.client, &line).await?;
        }
        Ok(Uploaded { checked: self })
    }

    /// The blobs, the platform manifests and the index, unless the registry holds the index.
    async fn send_image(&mut self, index_by_tag: bool) -> Result<(), PushError> {
        let Some(verification) = self.verification.take() else {
            return Ok(());
        };
        // Not waited for on the no-op path: there nothing local is sent (the registry holds
        // every blob by digest already), and hashing hundreds of megabytes would make a
        // re-push as slow as a build.
        verification.finish().await?;
        let blobs = BlobPush {
            client: &self.client,
            layout: &self.layout,
            opts: self.opts,
            mount_from: self.mount_from.as_ref(),
            base: self.base.as_ref(),
            report: &self.report,
        };
        blobs.run(&self.image.blobs, &mut self.outcome).await?;
        put_all(&self.client, &self.image.manifests, None, &self.report).await?;
        let direct = (index_by_tag && self.moving.len() == 1)
            .then(|| self.moving.pop())
            .flatten();
        let top = std::slice::from_ref(&self.image.top);
        put_all(&self.client, top, direct.as_ref(), &self.report).await?;
        self.outcome.tags_moved.extend(direct);
        Ok(())
    }
}

impl Uploaded<'_> {
    /// Point the tags that differ at the index, together, all or none as far as the registry
    /// allows ([`super::tags`]); the push is done.
    pub async fn tag(self) -> Result<PushOutcome, PushError> {
        let moves = self.moves();
        let moved = tags::move_all(&moves).await;
        drop(moves);
        moved.map_err(|(_, e)| PushError::Tags(Box::new(e)))?;
        Ok(self.done())
    }

    /// The tags to move, each with what it named when the push began.
    pub(super) fn moves(&self) -> Vec<TagMove<'_>> {
        let c = &self.checked;
        let before = |t: &Tag| c.before.iter().find(|b| b.0 == *t).map(|b| &b.1);
        c.moving
            .iter()
            .map(|tag| TagMove {
                client: &c.client,
                top: &c.image.top,
                tag,
                before: before(tag),
                report: &c.report,
            })
            .collect()
    }

    /// The outcome, once [`moves`](Self::moves) all moved.
    pub(super) fn done(self) -> PushOutcome {
        let mut c = self.checked;
        c.outcome.tags_moved.append(&mut c.moving);
        c.outcome
    }
}

/// The client, its credential found and its TLS roots read off the async threads (a credential
/// helper is a process, the roots are files).
async fn connect(opts: &PushOptions) -> Result<Arc<Client>, PushError> {
    let mut one = connect_shared(&[opts]).await?;
    Ok(one.pop().expect("one client"))
}

/// Clients for the repositories of `all` (one registry, one scheme: the first's credential,
/// retries and chunking) over one session, so one token covers every repository.
pub async fn connect_shared(all: &[&PushOptions]) -> Result<Vec<Arc<Client>>, PushError> {
    let opts = all[0];
    let repositories: Vec<Repository> = all.iter().map(|o| o.repository.clone()).collect();
    let explicit = opts.credential.clone();
    let client_opts = ClientOptions {
        plain_http: opts.plain_http,
        chunk_size: opts.chunk_size,
        max_attempts: opts.max_attempts.max(1),
        credential: None,
        pull_only: false,
        quiet_retries: false,
    };
    blocking(move || {
        let credential = find_credential(&repositories[0], explicit)?;
        let opts = ClientOptions {
            credential,
            ..client_opts
        };
        let clients = Client::shared(&repositories, opts)?;
        Ok(clients.into_iter().map(Arc::new).collect())
    })
    .await
}

/// Each manifest of `manifests` by digest (or, for the one index, under `tag`), together,
/// each checked against the digest the registry answers.
async fn put_all(
    client: &Client,
    manifests: &[ManifestBlob],
    tag: Option<&Tag>,
    report: &Reporter,
) -> Result<(), PushError> {
    try_join_all(manifests.iter().map(|m| async move {
        let d = &m.descriptor;
        let target = tag.map_or(Target::Digest(&d.digest), Target::Tag);
        client
            .put_manifest(target, &d.media_type, &m.bytes, &d.digest)
            .await?;
        report.line(format!(
            "{} {} pushed{}",
            kind_of(&d.media_type),
            short(&d.digest),
            d.platform
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        ));
        if let Some(tag) = tag {
            report.line(format!("tag {tag} -> {}", short(&d.digest)));
        }
        Ok::<_, PushError>(())
    }))
    .await?;
    Ok(())
}

fn kind_of(media_type: &str) -> &'static str {
    if media_type.contains("index") || media_type.contains("list") {
        "index"
    } else {
        "manifest"
    }
}
