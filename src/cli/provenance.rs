//! `ironstar provenance` and the attestation part of `ironstar verify`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use ironstar::artifact::verify::{self, Found, Kind};
use ironstar::registry::{Client, Reference, Target};
use ironstar::sign::PublicKey;
use ironstar::Digest;

/// `ironstar provenance`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProvenanceArgs {
    /// The pushed image: REGISTRY/REPO[:TAG|@DIGEST] (default tag: latest).
    #[arg(required_unless_present = "layout")]
    pub image: Option<String>,
    /// Read the layout's attestation instead (DIR, or DIR:TAG for one of several images).
    #[arg(long, value_name = "DIR[:TAG]", conflicts_with = "image")]
    pub layout: Option<String>,
    /// Print only a statement whose envelope this public key verifies (cosign.pub); without it
    /// the statement is printed as stored, unverified.
    #[arg(long, value_name = "PUB.pem")]
    pub key: Option<PathBuf>,
    /// Talk plain http to the registry.
    #[arg(long)]
    pub plain_http: bool,
}

/// Print the provenance statement of an image as JSON (stdout), the first one that verifies (or
/// parses, without --key).
pub fn run(args: &ProvenanceArgs) -> anyhow::Result<()> {
    let key = args.key.as_deref().map(PublicKey::load).transpose()?;
    let (found, digest) = match (&args.layout, &args.image) {
        (Some(l), _) => layout(l, key.as_ref())?,
        (None, Some(r)) => registry(r, args.plain_http, key.as_ref())?,
        (None, None) => bail!("give REGISTRY/REPO[:TAG] or --layout DIR"),
    };
    let mut why = Vec::new();
    for f in found.into_iter().filter(|f| f.kind == Kind::Provenance) {
        match f.result {
            Ok(statement) => {
                use std::io::Write as _;
                let mut text = serde_json::to_vec_pretty(&statement)?;
                text.push(b'\n');
                // A reader that stops early (`| head`) is no error.
                return match std::io::stdout().write_all(&text) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                    other => Ok(other?),
                };
            }
            Err(e) => why.push(e),
        }
    }
    match why.is_empty() {
        true => bail!("{digest}: no provenance attestation (built without --sign-key, or with --no-provenance)"),
        false => bail!("{digest}: no provenance attestation {}: {}", match key { Some(_) => "verifies", None => "reads" }, why.join("; ")),
    }
}

/// The attestations of a layout's image, and its index digest.
pub fn layout(arg: &str, key: Option<&PublicKey>) -> anyhow::Result<(Vec<Found>, Digest)> {
    let (dir, tag) = ironstar::push::split_layout_arg(arg);
    let layout = ironstar::layout::Layout::open(&dir)?;
    let image = layout.resolve(tag.as_deref())?;
    let digest = image.top.descriptor.digest.clone();
    Ok((verify::layout(&layout, &digest, key)?, digest))
}

/// The attestations of a pushed image, and its index digest.
pub fn registry(
    r: &str,
    plain_http: bool,
    key: Option<&PublicKey>,
) -> anyhow::Result<(Vec<Found>, Digest)> {
    let reference = Reference::parse(r)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = Client::reader(&reference.repository, plain_http)?;
        let digest = client
            .manifest_digest(Target::of(&reference))
            .await?
            .with_context(|| format!("{reference}: no such image"))?;
        let found = verify::registry(&client, &digest, key).await?;
        Ok((found, digest))
    })
}

/// What `verify` says of the attestations: each store's finding on stderr (a failed envelope as
/// a warning); with `require`, an error unless one verified.
pub fn report(found: &[Found], digest: &Digest, require: bool, quiet: bool) -> anyhow::Result<()> {
    let found: Vec<&Found> = found
        .iter()
        .filter(|f| f.kind == Kind::Provenance)
        .collect();
    let mut good = 0;
    for f in &found {
        match &f.result {
            Ok(_) => {
                good += 1;
                if !quiet {
                    eprintln!("verified provenance of {digest} ({})", f.store);
                }
            }
            Err(e) => tracing::warn!("provenance ({}): {e}", f.store),
        }
    }
    if found.is_empty() && !quiet {
        eprintln!("no provenance attestation of {digest}");
    }
    if require && good == 0 {
        let why: Vec<&str> = found
            .iter()
            .filter_map(|f| f.result.as_ref().err())
            .map(String::as_str)
            .collect();
        match why.is_empty() {
            true => bail!("--require-provenance: {digest} has no provenance attestation"),
            false => bail!("--require-provenance: no provenance of {digest} verifies with the key ({} checked: {})", why.len(), why.join("; ")),
        }
    }
    Ok(())
}

/// The signature bundles (cosign 3's form) of each of `subjects` (the index first, then the
/// platform manifests), from `layout` (DIR[:TAG]) or the registry of `image`; the index's are
/// among `index_found` already.
pub fn signature_bundles(
    layout: Option<&str>,
    image: Option<&str>,
    plain_http: bool,
    subjects: &[(Digest, Option<String>)],
    index_found: Vec<Found>,
    key: &PublicKey,
) -> anyhow::Result<Vec<Vec<Found>>> {
    let platforms = subjects.iter().skip(1).map(|(d, _)| d);
    let mut rest = match (layout, image) {
        (Some(l), _) => {
            let (dir, _) = ironstar::push::split_layout_arg(l);
            let layout = ironstar::layout::Layout::open(&dir)?;
            platforms
                .map(|d| verify::layout_bundles(&layout, d, Some(key)))
                .collect::<Result<Vec<_>, _>>()?
        }
        (None, Some(r)) => {
            let reference = Reference::parse(r)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async {
                let client = Client::reader(&reference.repository, plain_http)?;
                let client = &client;
                let all = platforms.map(|d| verify::registry_bundles(client, d, Some(key)));
                anyhow::Ok(futures_util::future::try_join_all(all).await?)
            })?
        }
        (None, None) => Vec::new(),
    };
    let index = index_found
        .into_iter()
        .filter(|f| f.kind == Kind::Signature)
        .collect();
    rest.insert(0, index);
    Ok(rest)
}

/// What `verify` says of the signature bundles: each subject's finding on stderr (a bundle that
/// fails, a warning). The `.sig` tags decide whether the image verifies.
pub fn report_bundles(subjects: &[(Digest, Option<String>)], found: &[Vec<Found>], quiet: bool) {
    for ((digest, platform), fs) in subjects.iter().zip(found) {
        let subject = ironstar::sign::describe_subject(digest, platform.as_deref());
        if fs.is_empty() && !quiet {
            eprintln!("no signature bundle of {subject}");
        }
        for f in fs {
            match &f.result {
                Ok(_) if !quiet => {
                    eprintln!("verified signature bundle of {subject} ({})", f.store)
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("signature bundle of {subject} ({}): {e}", f.store),
            }
        }
    }
}
