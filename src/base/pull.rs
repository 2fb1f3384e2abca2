//! Pulling a base: resolve the reference (a tag needs the registry, a digest does not), read its
//! index or manifest, choose each platform's manifest, and fetch configs and layers into a blob
//! store, each checked against its digest. Blobs already stored are used without a request.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::try_join_all;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::{layer_media_type, Base, BaseError, BaseOptions, PlatformBase};
use crate::cache::BlobStore;
use crate::digest::Digest;
use crate::image::BlobRef;
use crate::oci::{media_type, platform_name, Reference, Tag};
use crate::platform::Platform;
use crate::registry::manifest::MAX_MANIFEST;
use crate::registry::{find_credential, Client, ClientOptions, RegistryError, Target};

type Result<T, E = BaseError> = std::result::Result<T, E>;

/// Resolve `reference` for `platforms`, its blobs in the store under `cache_dir` (else a
/// temporary one that lives as long as the [`Base`]).
pub fn resolve(
    reference: &Reference,
    platforms: &[&'static Platform],
    opts: &BaseOptions,
    cache_dir: Option<&Path>,
) -> Result<Base> {
    let named = reference.to_string();
    let io = |path: &Path| {
        let (reference, path) = (named.clone(), path.to_path_buf());
        move |source| BaseError::Io {
            reference,
            path,
            source,
        }
    };
    let stored = cache_dir.and_then(|d| {
        BlobStore::open(d)
            .map_err(|e| tracing::debug!("no blob store: {}: {e}", d.display()))
            .ok()
    });
    let (store, scratch) = match stored {
        Some(s) => (s, None),
        None => {
            let dir = tempfile::tempdir().map_err(io(&std::env::temp_dir()))?;
            let store = BlobStore::open(dir.path()).map_err(io(dir.path()))?;
            (store, Some(Arc::new(dir)))
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io(Path::new("tokio runtime")))?;
    let puller = Puller {
        reference,
        named: &named,
        opts,
        store,
        client: OnceCell::new(),
    };
    let (digest, platforms) = runtime.block_on(puller.resolve(platforms))?;
    Ok(Base {
        reference: reference.clone(),
        digest,
        platforms,
        _scratch: scratch,
    })
}

struct Puller<'a> {
    reference: &'a Reference,
    named: &'a str,
    opts: &'a BaseOptions,
    store: BlobStore,
    /// Made on the first request: a pinned, stored base makes none (and reads no credential).
    client: OnceCell<Client>,
}

impl Puller<'_> {
    fn registry_err(&self, source: RegistryError) -> BaseError {
        BaseError::Registry {
            reference: self.named.to_string(),
            source,
        }
    }

    fn malformed(&self, message: impl Into<String>) -> BaseError {
        BaseError::Malformed {
            reference: self.named.to_string(),
            message: message.into(),
        }
    }

    async fn client(&self) -> Result<&Client> {
        self.client
            .get_or_try_init(|| async {
                let repo = &self.reference.repository;
                let credential = find_credential(repo, None)
                    .map_err(|e| self.malformed(format!("credentials: {e}")))?;
                let mut opts = ClientOptions {
                    plain_http: self.opts.plain_http,
                    credential,
                    pull_only: true,
                    ..Default::default()
                };
                if self.opts.max_attempts > 0 {
                    opts.max_attempts = self.opts.max_attempts;
                }
                Client::new(repo, opts).map_err(|e| self.registry_err(e))
            })
            .await
    }

    async fn resolve(
        &self,
        platforms: &[&'static Platform],
    ) -> Result<(Digest, Vec<PlatformBase>)> {
        let top = match &self.reference.digest {
            Some(d) => d.clone(),
            None => {
                let tag = self.reference.tag.as_ref().unwrap_or(Tag::latest());
                let client = self.client().await?;
                client
                    .manifest_digest(Target::Tag(tag))
                    .await
                    .map_err(|e| self.registry_err(e))?
                    .ok_or_else(|| BaseError::NotFound {
                        reference: self.named.to_string(),
                    })?
            }
        };
        let top_json = self.manifest(&top).await?;
        let chosen: Vec<(&'static Platform, Digest)> = match top_json.get("manifests") {
            Some(list) => self.choose(list, platforms)?,
            None => {
                let config = self.config_of(&top_json).await?;
                let has = platform_string(&config);
                match platforms.iter().find(|p| !same_platform(p, &config)) {
                    Some(p) => {
                        return Err(BaseError::NoPlatform {
                            reference: self.named.to_string(),
                            platform: p.to_string(),
                            has,
                        })
                    }
                    None => platforms.iter().map(|p| (*p, top.clone())).collect(),
                }
            }
        };
        let bases = try_join_all(chosen.into_iter().map(|(p, d)| self.platform(p, d))).await?;
        Ok((top, bases))
    }

    /// Each platform's manifest in an index, or the error naming what the index has.
    fn choose(
        &self,
        list: &Value,
        platforms: &[&'static Platform],
    ) -> Result<Vec<(&'static Platform, Digest)>> {
        let entries = list
            .as_array()
            .ok_or_else(|| self.malformed("its index's `manifests` is not a list"))?;
        let images: Vec<&Value> = entries
            .iter()
            .filter(|e| {
                e["platform"]["os"]
                    .as_str()
                    .is_some_and(|os| os != "unknown")
            })
            .collect();
        platforms
            .iter()
            .map(|p| {
                let entry = images
                    .iter()
                    .find(|e| same_platform(p, &e["platform"]))
                    .ok_or_else(|| BaseError::NoPlatform {
                        reference: self.named.to_string(),
                        platform: p.to_string(),
                        has: images
                            .iter()
                            .map(|e| platform_string(&e["platform"]))
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?;
                Ok((*p, self.digest_at(entry)?))
            })
            .collect()
    }

    fn digest_at(&self, descriptor: &Value) -> Result<Digest> {
        let d = descriptor["digest"].as_str().unwrap_or_default();
        Digest::parse(d).map_err(|e| self.malformed(format!("digest `{d}`: {e}")))
    }

    async fn platform(
        &self,
        platform: &'static Platform,
        manifest: Digest,
    ) -> Result<PlatformBase> {
        let m = self.manifest(&manifest).await?;
        if m.get("manifests").is_some() {
            return Err(self.malformed(format!("{manifest} is an index inside an index")));
        }
        let config = self.config_of(&m).await?;
        let layers = m["layers"].as_array().cloned().unwrap_or_default();
        let layers = try_join_all(layers.iter().map(|l| async move {
            let mt = l["mediaType"].as_str().unwrap_or_default();
            let media_type = layer_media_type(mt).ok_or_else(|| {
                self.malformed(format!("layer media type `{mt}` is not supported"))
            })?;
            let (digest, size) = (self.digest_at(l)?, size_at(l));
            let path = self.blob(&digest, size).await?;
            Ok::<_, BaseError>((
                BlobRef {
                    media_type,
                    digest,
                    size,
                },
                path,
            ))
        }))
        .await?;
        let diff_ids = config["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len);
        if diff_ids != layers.len() {
            return Err(self.malformed(format!(
                "{platform}: {} layers but {diff_ids} diff_ids in its config",
                layers.len()
            )));
        }
        Ok(PlatformBase {
            platform,
            manifest,
            config,
            layers,
        })
    }

    async fn config_of(&self, manifest: &Value) -> Result<Value> {
        let c = &manifest["config"];
        let digest = self.digest_at(c)?;
        let path = self.blob(&digest, size_at(c)).await?;
        let bytes = std::fs::read(&path).map_err(|source| BaseError::Io {
            reference: self.named.to_string(),
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| self.malformed(format!("config {digest}: {e}")))
    }

    /// A manifest or index by digest: stored, else fetched (checked) and stored.
    async fn manifest(&self, digest: &Digest) -> Result<Value> {
        let bytes = match self.store.get(digest) {
            Some(path) => std::fs::read(&path).map_err(|source| BaseError::Io {
                reference: self.named.to_string(),
                path,
                source,
            })?,
            None => {
                let client = self.client().await?;
                let fetched = client
                    .get_manifest(Target::Digest(digest))
                    .await
                    .map_err(|e| self.registry_err(e))?
                    .ok_or_else(|| BaseError::NotFound {
                        reference: self.named.to_string(),
                    })?;
                if fetched.bytes.len() > MAX_MANIFEST {
                    return Err(self.malformed(format!("manifest {digest} is too large")));
                }
                self.store
                    .put(digest, &fetched.bytes)
                    .map_err(|source| BaseError::Io {
                        reference: self.named.to_string(),
                        path: self.store.path(digest),
                        source,
                    })?;
                fetched.bytes.to_vec()
            }
        };
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.malformed(format!("manifest {digest}: {e}")))?;
        let mt = v["mediaType"].as_str().unwrap_or(media_type::MANIFEST);
        if mt.contains("v1+prettyjws") || v["schemaVersion"].as_u64() != Some(2) {
            return Err(self.malformed(format!("manifest {digest}: schema 1 is not supported")));
        }
        Ok(v)
    }

    /// A config or layer on disk: stored, else downloaded into the store.
    async fn blob(&self, digest: &Digest, size: u64) -> Result<PathBuf> {
        if let Some(path) = self.store.get(digest) {
            return Ok(path);
        }
        let path = self.store.path(digest);
        let client = self.client().await?;
        client
            .download_blob(digest, size, &path)
            .await
            .map_err(|e| self.registry_err(e))?;
        Ok(path)
    }
}

fn size_at(descriptor: &Value) -> u64 {
    descriptor["size"].as_u64().unwrap_or(0)
}

/// `os/arch[/variant]` of a platform object (an index entry's, or a config's top level) for
/// messages: `?` without `os` or `architecture`.
fn platform_string(p: &Value) -> String {
    platform_name(p).unwrap_or_else(|| "?".to_string())
}

/// Whether a platform object is `platform`; arm64's `v8` is arm64.
fn same_platform(platform: &Platform, p: &Value) -> bool {
    let theirs = platform_string(p);
    Platform::parse(&theirs).is_ok_and(|q| q == platform)
}
