//! Pulling a base: resolve the reference (a tag needs the registry, a digest does not), read its
//! index or manifest, choose each platform's manifest, and fetch configs and layers into a blob
//! store, each checked against its digest. Blobs already stored are used without a request.
//!
//! Whatever the registry sends is bounded: manifests and configs by size (4 MiB) and by what
//! their JSON holds ([`crate::untrusted`]), a platform's layers by [`MAX_LAYERS`], and the
//! downloads by `jobs` at once over all platforms, each blob once however many platforms share it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::future::try_join_all;
use serde_json::Value;
use tokio::sync::{OnceCell, Semaphore};

use super::{
    layer_media_type, Base, BaseError, BaseOptions, PlatformBase, Scratch, DEFAULT_JOBS,
    MAX_CONFIG, MAX_LAYERS,
};
use crate::cache::BlobStore;
use crate::digest::Digest;
use crate::image::BlobRef;
use crate::oci::{media_type, platform_name, Reference, Tag};
use crate::platform::Platform;
use crate::registry::manifest::MAX_MANIFEST;
use crate::registry::{find_credential, Client, ClientOptions, RegistryError, Target};
use crate::untrusted::{BoundError, Limits};

/// What a manifest or index may hold: an array as long as a base's layers may be, and values
/// enough for each layer's descriptor with a few annotations. A `Value` of the most this allows
/// takes about 10 MB, whatever the JSON.
const MANIFEST_LIMITS: Limits = Limits {
    array: MAX_LAYERS,
    values: 32 << 10,
};

/// What a config may hold: a history entry for every layer and for many steps without one
/// (`ENV`, `CMD`).
const CONFIG_LIMITS: Limits = Limits {
    array: 10 * MAX_LAYERS,
    values: 32 << 10,
};

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
            // Registered before anything is written into it: a signal mid-pull removes it.
            let on_signal = crate::interrupt::dir(dir.path());
            let store = BlobStore::open(dir.path()).map_err(io(dir.path()))?;
            let scratch = Scratch {
                _dir: dir,
                _on_signal: on_signal,
            };
            (store, Some(Arc::new(scratch)))
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
        downloads: Semaphore::new(match opts.jobs {
            0 => DEFAULT_JOBS,
            n => n,
        }),
        blobs: Mutex::default(),
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
    /// A permit a request for a manifest or a blob: `jobs` at once.
    downloads: Semaphore,
    /// Each blob's path once it is stored: a layer two platforms share is fetched (or checked)
    /// once, and never written by two downloads at once.
    blobs: Mutex<HashMap<Digest, Arc<OnceCell<PathBuf>>>>,
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

    /// Untrusted JSON `what` (a manifest, a config) as a `Value`, within `limits`.
    fn parse(&self, what: &str, bytes: &[u8], limits: Limits) -> Result<Value> {
        crate::untrusted::parse(bytes, limits).map_err(|e| match e {
            BoundError::Array { .. } | BoundError::Values { .. }
                if what.starts_with("manifest") =>
            {
                self.malformed(format!(
                    "{what}: {e}; a base may have at most {MAX_LAYERS} layers (overlayfs \
                     stacks at most 500)"
                ))
            }
            e => self.malformed(format!("{what}: {e}")),
        })
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
                    // A layer's failure is one line; its retries are said with -v.
                    quiet_retries: true,
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
        // Every layer's descriptor is checked before anything is downloaded.
        let layers = m["layers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let layers: Vec<BlobRef> = layers
            .iter()
            .map(|l| {
                let mt = l["mediaType"].as_str().unwrap_or_default();
                let media_type = layer_media_type(mt).ok_or_else(|| {
                    self.malformed(format!(
                        "{platform}: layer media type `{}` is not one a runtime unpacks (a tar, \
                         gzip- or zstd-compressed)",
                        mt.escape_debug()
                    ))
                })?;
                Ok(BlobRef {
                    media_type,
                    digest: self.digest_at(l)?,
                    size: size_at(l),
                })
            })
            .collect::<Result<_>>()?;
        let config = self.config_of(&m).await?;
        let diff_ids = config["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len);
        if diff_ids != layers.len() {
            return Err(self.malformed(format!(
                "{platform}: {} layers but {diff_ids} diff_ids in its config",
                layers.len()
            )));
        }
        let paths = try_join_all(layers.iter().map(|l| self.blob(&l.digest, l.size))).await?;
        Ok(PlatformBase {
            platform,
            manifest,
            config,
            layers: layers.into_iter().zip(paths).collect(),
        })
    }

    async fn config_of(&self, manifest: &Value) -> Result<Value> {
        let c = &manifest["config"];
        let digest = self.digest_at(c)?;
        let too_large = |size: u64| {
            self.malformed(format!(
                "config {digest} is {}, more than the {} a config may be (as a manifest)",
                crate::human_bytes(size),
                crate::human_bytes(MAX_CONFIG)
            ))
        };
        if size_at(c) > MAX_CONFIG {
            return Err(too_large(size_at(c)));
        }
        let path = self.blob(&digest, size_at(c)).await?;
        let io = |source| BaseError::Io {
            reference: self.named.to_string(),
            path: path.clone(),
            source,
        };
        // A stored one is checked too: another build may have stored it under no limit.
        let size = std::fs::metadata(&path).map_err(io)?.len();
        if size > MAX_CONFIG {
            return Err(too_large(size));
        }
        let bytes = std::fs::read(&path).map_err(io)?;
        self.parse(&format!("config {digest}"), &bytes, CONFIG_LIMITS)
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
                let _permit = self.downloads.acquire().await.expect("never closed");
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
        let v = self.parse(&format!("manifest {digest}"), &bytes, MANIFEST_LIMITS)?;
        let mt = v["mediaType"].as_str().unwrap_or(media_type::MANIFEST);
        if mt.contains("v1+prettyjws") || v["schemaVersion"].as_u64() != Some(2) {
            return Err(self.malformed(format!("manifest {digest}: schema 1 is not supported")));
        }
        Ok(v)
    }

    /// A config or layer on disk: stored, else downloaded into the store (`jobs` at a time).
    async fn blob(&self, digest: &Digest, size: u64) -> Result<PathBuf> {
        let once = {
            let mut blobs = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
            blobs.entry(digest.clone()).or_default().clone()
        };
        let path = once
            .get_or_try_init(|| async {
                if let Some(path) = self.store.get(digest) {
                    return Ok(path);
                }
                let path = self.store.path(digest);
                let client = self.client().await?;
                let _permit = self.downloads.acquire().await.expect("never closed");
                client
                    .download_blob(digest, size, &path)
                    .await
                    .map_err(|e| self.registry_err(e))?;
                Ok::<_, BaseError>(path)
            })
            .await?;
        Ok(path.clone())
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
