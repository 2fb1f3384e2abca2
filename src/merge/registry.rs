//! `ironstar merge REF... --repository R [--tag T]...`: the merge in a registry. Only manifests
//! are read (and, for a bare manifest of another tool, its config, for the platform). Round trips
//! one after another, for parts already in R: the sources together, the index (under its tag when
//! it has exactly one and nothing is signed), then the tags together. A part from another
//! repository of R's registry has its blobs mounted (no byte moves) and its manifest put by
//! digest first; a part from another registry has its blobs copied, each checked against its
//! digest on the way. The index is written by digest before any tag moves, and a refusal (or any
//! failure before the tags) moves none; the tags move together, all or none
//! ([`crate::push::tags`]).

use std::sync::Arc;

use futures_util::future::try_join_all;
use serde_json::Value;

use super::{plan, source_of, top, MergeError, Source, Top};
use crate::digest::Digest;
use crate::layout::{Descriptor, ManifestBlob};
use crate::oci::{Reference, Repository, Tag};
use crate::push::report::Reporter;
use crate::push::tags::{self, TagMove};
use crate::push::ProgressMode;
use crate::registry::client::short;
use crate::registry::credential::{find_credential, Credential};
use crate::registry::{Client, ClientOptions, Target};
use crate::sign::{ImageSignatures, Signer};

/// A config read at most (a bare manifest's, for its platform).
const MAX_CONFIG: usize = 4 << 20;

/// What to merge where.
#[derive(Debug, Clone)]
pub struct RegistryMergeOptions {
    pub sources: Vec<Reference>,
    pub repository: Repository,
    /// Tags to point at the merged index; none: it is written by digest only.
    pub tags: Vec<Tag>,
    pub plain_http: bool,
    pub credential: Option<Credential>,
    pub max_attempts: u32,
    /// Sign the merged index for `repository`.
    pub signer: Option<Arc<dyn Signer>>,
    pub progress: ProgressMode,
}

/// What a registry merge did.
#[derive(Debug, Clone)]
pub struct RegistryMergeReport {
    /// `REGISTRY/REPO@sha256:…`
    pub image: String,
    pub index: Digest,
    /// Each platform, its manifest, and the source it came from.
    pub platforms: Vec<(String, Digest, String)>,
    /// Platforms whose manifest was in R already.
    pub in_place: usize,
    /// Blobs mounted from another repository of the registry.
    pub mounted: usize,
    /// Blobs copied from another registry (or where a mount was refused), and their bytes.
    pub copied: usize,
    pub copied_bytes: u64,
    pub tags_moved: Vec<Tag>,
    pub signed: bool,
}

/// Where each source is read from: a client of its repository.
pub(super) struct Reader {
    pub(super) client: Arc<Client>,
    /// Same registry as R (a mount can move its blobs).
    pub(super) same_registry: bool,
}

pub(super) fn line(mode: ProgressMode, msg: String) {
    if mode != ProgressMode::Quiet {
        eprintln!("{msg}");
    }
}

/// Merge the sources into `opts.repository`.
pub async fn merge_in_registry(
    opts: &RegistryMergeOptions,
) -> Result<RegistryMergeReport, MergeError> {
    let (dest, readers) = connect(opts).await?;
    // The sources, and where each tag points now (to put it back if another tag fails).
    let (sources, before) = tokio::try_join!(
        try_join_all(
            opts.sources
                .iter()
                .zip(&readers)
                .enumerate()
                .map(|(i, (r, reader))| read_source(i, r, &reader.client)),
        ),
        async {
            let at = opts
                .tags
                .iter()
                .map(|t| dest.manifest_digest(Target::Tag(t)));
            Ok::<_, MergeError>(try_join_all(at).await?)
        },
    )?;
    let merged = plan(&sources)?;
    let digest = merged.index_ref.digest.clone();
    let mut report = RegistryMergeReport {
        image: format!("{}@{digest}", opts.repository),
        index: digest.clone(),
        platforms: Vec::new(),
        in_place: 0,
        mounted: 0,
        copied: 0,
        copied_bytes: 0,
        tags_moved: Vec::new(),
        signed: false,
    };
    for p in &merged.parts {
        let s = &sources[p.source];
        report.platforms.push((
            p.platform.to_string(),
            p.manifest.digest.clone(),
            s.name.clone(),
        ));
    }
    let signatures = match opts.signer.clone() {
        Some(signer) => {
            // The index, and the parts brought from elsewhere (their signatures stay where
            // they were, naming that repository); parts already here keep their own.
            let brought: Vec<&super::Part> = (merged.parts.iter())
                .filter(|p| readers[p.source].client.repository != opts.repository)
                .collect();
            let mut subjects = merged.index_subject();
            subjects.extend(
                (brought.iter()).map(|p| (p.manifest.digest.clone(), Some(p.platform.to_string()))),
            );
            // The bundle form for the index only: a brought part's referrers tag is written by
            // the carry of its SBOMs meanwhile, which a staged copy of that tag would undo.
            let refs = vec![merged.index_ref.clone()];
            let identity = opts.repository.to_string();
            let sigs = tokio::task::spawn_blocking(move || {
                let sigs = ImageSignatures::sign(signer.as_ref(), &identity, &subjects)?;
                let bundles = crate::artifact::sigbundle::made(signer.as_ref(), &refs)?;
                Ok::<_, crate::sign::SignError>((sigs, bundles))
            })
            .await
            .map_err(|e| MergeError::Internal(e.to_string()))??;
            Some(sigs)
        }
        None => None,
    };
    let staging = async {
        match &signatures {
            Some((s, bundles)) => {
                let artifacts = crate::artifact::push::Artifacts {
                    cosign: crate::sign::push::cosign_entries(s.clone()),
                    referrers: bundles.clone(),
                };
                let staged = crate::artifact::push::stage(&dest, None, artifacts).await?;
                Ok(Some(staged))
            }
            None => Ok::<_, MergeError>(None),
        }
    };
    // The parts, then the index (by digest: not visible yet), beside the signature's staging;
    // with exactly one tag and nothing signed, the index goes up under it directly.
    let index_mt = merged.index_ref.media_type.to_string();
    let direct = (opts.tags.len() == 1 && signatures.is_none()).then(|| &opts.tags[0]);
    let image = async {
        let counts = super::carry::bring_parts(opts, &dest, &readers, &merged, &sources).await?;
        let target = direct.map_or(Target::Digest(&digest), Target::Tag);
        dest.put_manifest(target, &index_mt, &merged.index, &digest)
            .await?;
        Ok::<_, MergeError>(counts)
    };
    let (staged, counts) = tokio::try_join!(staging, image)?;
    (
        report.in_place,
        report.mounted,
        report.copied,
        report.copied_bytes,
    ) = counts;
    line(opts.progress, format!("index {} pushed", short(&digest)));
    if let Some(staged) = staged {
        let say = |m: String| line(opts.progress, m);
        staged.commit(&dest, &say).await?;
        report.signed = true;
    }
    let top = ManifestBlob {
        descriptor: Descriptor {
            media_type: index_mt.clone(),
            digest: digest.clone(),
            size: merged.index.len() as u64,
            annotations: Default::default(),
            platform: None,
        },
        bytes: merged.index.clone(),
    };
    let reporter = Reporter::new(opts.progress);
    let moves: Vec<TagMove> = opts
        .tags
        .iter()
        .zip(&before)
        .filter(|(t, _)| Some(*t) != direct)
        .map(|(tag, before)| TagMove {
            client: &dest,
            top: &top,
            tag,
            before: before.as_ref(),
            report: &reporter,
        })
        .collect();
    tags::move_all(&moves)
        .await
        .map_err(|(_, e)| MergeError::Tags(Box::new(e)))?;
    if let Some(t) = direct {
        line(opts.progress, format!("tag {t} -> {}", short(&digest)));
    }
    report.tags_moved = opts.tags.clone();
    Ok(report)
}

/// The client of R and one reader a source: R's registry over one session (one token for every
/// repository), each other registry with the credentials the usual files hold for it.
async fn connect(opts: &RegistryMergeOptions) -> Result<(Arc<Client>, Vec<Reader>), MergeError> {
    let opts = opts.clone();
    tokio::task::spawn_blocking(move || {
        let r = &opts.repository;
        let mut repos = vec![r.clone()];
        for s in &opts.sources {
            let repo = &s.repository;
            if repo.api_host() == r.api_host() && !repos.contains(repo) {
                repos.push(repo.clone());
            }
        }
        let credential = find_credential(r, opts.credential.clone())
            .map_err(|e| crate::registry::RegistryError::Auth(format!("credentials: {e}")))?;
        let client_opts = ClientOptions {
            plain_http: opts.plain_http,
            max_attempts: opts.max_attempts.max(1),
            credential,
            ..Default::default()
        };
        let shared: Vec<Arc<Client>> = Client::shared(&repos, client_opts)?
            .into_iter()
            .map(Arc::new)
            .collect();
        let readers = opts
            .sources
            .iter()
            .map(
                |s| match shared.iter().find(|c| c.repository == s.repository) {
                    Some(c) => Ok(Reader {
                        client: c.clone(),
                        same_registry: true,
                    }),
                    None => Ok(Reader {
                        client: Arc::new(Client::reader(&s.repository, opts.plain_http)?),
                        same_registry: false,
                    }),
                },
            )
            .collect::<Result<Vec<_>, MergeError>>()?;
        Ok((shared[0].clone(), readers))
    })
    .await
    .map_err(|e| MergeError::Internal(e.to_string()))?
}

/// One source: its top manifest, and for a bare manifest its config's platform.
async fn read_source(
    position: usize,
    reference: &Reference,
    client: &Client,
) -> Result<Source, MergeError> {
    let name = reference.to_string();
    let fetched = client
        .get_manifest(Target::of(reference))
        .await?
        .ok_or_else(|| MergeError::Malformed {
            source_name: name.clone(),
            problem: "no such image in the registry".into(),
        })?;
    let t = top(&name, &fetched.media_type, &fetched.bytes)?;
    let platform = match &t {
        Top::Manifest { config } => Some(super::config_platform(
            &name,
            &client.get_blob(&config.digest, MAX_CONFIG).await?,
        )?),
        Top::Index { .. } => None,
    };
    let declared = serde_json::from_slice::<Value>(&fetched.bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(String::from));
    let media_type = declared.unwrap_or(fetched.media_type);
    let top_ref = crate::image::BlobRef {
        media_type: media_type.as_str().into(),
        digest: fetched.digest,
        size: fetched.bytes.len() as u64,
    };
    source_of(&name, position, t, top_ref, platform)
}
