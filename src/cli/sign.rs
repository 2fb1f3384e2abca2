//! `--sign-key` (build, push, publish) and `ironstar verify`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use ironstar::registry::Reference;
use ironstar::sign::{KeySigner, PublicKey, Signer};

#[derive(Debug, Clone, clap::Args)]
pub struct SignArgs {
    /// Sign the index and every platform manifest, as cosign's recursive signing does, with this
    /// key: the file `cosign generate-key-pair` writes (its password in $COSIGN_PASSWORD, empty
    /// allowed), or a PKCS#8 PEM key. ECDSA P-256. `env://NAME` reads the key from the
    /// environment variable NAME, as cosign does.
    /// Empty (the action's unset input) means no signing.
    #[arg(long, value_name = "FILE|env://NAME", env = "IRONSTAR_SIGN_KEY", value_parser = clap::builder::ValueParser::os_string())]
    pub sign_key: Option<std::ffi::OsString>,
    /// With --sign-key: make (build) or send (push) no signed SLSA provenance attestation.
    #[arg(long, env = "IRONSTAR_NO_PROVENANCE", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_provenance: bool,
}

impl SignArgs {
    /// The key, read and decrypted now (before any request is made).
    pub fn signer(&self) -> anyhow::Result<Option<Arc<dyn Signer>>> {
        let Some(path) = self
            .sign_key
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(std::path::Path::new)
        else {
            return Ok(None);
        };
        let password = std::env::var_os("COSIGN_PASSWORD").map(|p| {
            use std::os::unix::ffi::OsStringExt as _;
            zeroize::Zeroizing::new(p.into_vec())
        });
        let signer = KeySigner::load(path, password.as_ref().map(|p| p.as_slice()))?;
        Ok(Some(Arc::new(signer)))
    }
}

/// The repository a build signs for: `repository` (publish's destination) or the image file's,
/// without its tag.
pub fn identity(repository: Option<&str>) -> anyhow::Result<String> {
    let Some(r) = repository.filter(|r| !r.is_empty()) else {
        bail!(
            "--sign-key: a signature names the repository the image is pulled from, and this build has none: set `repository` in the image file, or sign at push time (ironstar push --sign-key)"
        );
    };
    Ok(Reference::parse(r)?.repository.to_string())
}

/// `ironstar verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The pushed image: REGISTRY/REPO[:TAG|@DIGEST] (default tag: latest).
    #[arg(required_unless_present = "layout", value_name = "REFERENCE")]
    pub image: Option<String>,
    /// Verify the signatures kept in an OCI layout instead (DIR, or DIR:TAG for one of several
    /// images).
    #[arg(long, value_name = "DIR[:TAG]", conflicts_with = "image")]
    pub layout: Option<String>,
    /// The public key (cosign.pub: PEM `PUBLIC KEY`, ECDSA P-256), or `env://NAME`.
    #[arg(long, value_name = "PUB.pem")]
    pub key: PathBuf,
    /// Talk plain http to the registry.
    #[arg(long)]
    pub plain_http: bool,
    /// Also require a provenance attestation of the index that the key verifies (without it,
    /// attestations are checked when present, a bad one a warning).
    #[arg(long)]
    pub require_provenance: bool,
}

/// Check the index and every platform manifest; prints what was verified (stdout: the image).
pub fn verify(args: &VerifyArgs, quiet: bool) -> anyhow::Result<()> {
    let key = PublicKey::load(&args.key)?;
    let (verified, image) = match (&args.layout, &args.image) {
        (Some(l), _) => {
            let (dir, tag) = ironstar::push::split_layout_arg(l);
            let v = ironstar::sign::verify::layout(&dir, tag.as_deref(), &key)?;
            let top = v.first().map(|v| v.digest.to_string()).unwrap_or_default();
            (v, top)
        }
        (None, Some(r)) => {
            let reference = Reference::parse(r)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let v = runtime.block_on(ironstar::sign::verify::registry(
                &reference,
                args.plain_http,
                &key,
            ))?;
            let top = v.first().map(|v| v.digest.to_string()).unwrap_or_default();
            (v, format!("{}@{top}", reference.repository))
        }
        (None, None) => bail!("give REGISTRY/REPO[:TAG] or --layout DIR"),
    };
    let top = match verified.first() {
        Some(v) => v.digest.clone(),
        None => bail!("nothing verified"),
    };
    let (found, _) = match (&args.layout, &args.image) {
        (Some(l), _) => super::provenance::layout(l, Some(&key))?,
        (None, Some(r)) => {
            let r = format!("{}@{top}", Reference::parse(r)?.repository);
            super::provenance::registry(&r, args.plain_http, Some(&key))?
        }
        (None, None) => unreachable!("checked above"),
    };
    if !quiet {
        for v in &verified {
            eprintln!(
                "verified {} for {} (tag {})",
                ironstar::sign::describe_subject(&v.digest, v.platform.as_deref()),
                v.identity,
                ironstar::sign::signature_tag(&v.digest)
            );
        }
    }
    super::provenance::report(&found, &top, args.require_provenance, quiet)?;
    let subjects: Vec<_> = (verified.iter())
        .map(|v| (v.digest.clone(), v.platform.clone()))
        .collect();
    let bundles = super::provenance::signature_bundles(
        args.layout.as_deref(),
        args.image.as_deref(),
        args.plain_http,
        &subjects,
        found,
        &key,
    )?;
    super::provenance::report_bundles(&subjects, &bundles, quiet);
    println!("{image}");
    Ok(())
}
