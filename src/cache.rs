//! The local cache, two things that save work on the next run:
//!
//! - [`LayerCache`]: a compressed layer kept by its tar's digest (the diff id) and its encoding,
//!   so an unchanged binary is never compressed twice. On disk:
//!   `DIR/layers/<encoding>/<diff id hex>/<layer digest hex>`, one file a directory. A file
//!   appears under its final name in one step (a hard link or a rename), so two builds that share
//!   the cache see a whole entry or none; a hit is hashed against its name before use, so a
//!   damaged entry is dropped and the layer compressed again, never served.
//! - [`PushedBlobs`]: which repository of a registry a blob was last pushed to, so a push to
//!   another repository of that registry can mount it instead of uploading it (as ko does). On
//!   disk: `DIR/pushed/<registry>/<digest hex>` holding the repository name. Only a hint: a mount
//!   the registry refuses becomes an upload.
//! - [`BlobStore`]: blobs pulled from a registry (a base image's index, manifests, configs and
//!   layers), by digest, so a rebuild on the same base digest needs no network. On disk:
//!   `DIR/blobs/sha256/<digest hex>`, verified on every use like the layers.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::{digest_reader, Digest};

/// Entries not used for this long are removed.
const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often a build looks for old entries.
const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// `$XDG_CACHE_HOME/ironstar`, else `~/.cache/ironstar`.
pub fn default_dir() -> Option<PathBuf> {
    let abs = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(abs)
        .or_else(|| Some(std::env::var_os("HOME").and_then(abs)?.join(".cache")))
        .map(|d| d.join("ironstar"))
}

/// A layer cache for one encoding (format, level, deflate fingerprint).
#[derive(Debug, Clone)]
pub struct LayerCache {
    dir: PathBuf,
}

/// A cached layer, verified.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

impl LayerCache {
    /// Open (creating it) the cache under `root` for layers of `encoding`
    /// ([`crate::compress::Compression::encoding`]).
    pub fn open(root: &Path, encoding: &str) -> io::Result<Self> {
        let layers = root.join("layers");
        let dir = layers.join(encoding);
        prune(&layers); // before creating `dir`: pruning removes empty directories
        fs::create_dir_all(&dir)?;
        Ok(LayerCache { dir })
    }

    fn entry_dir(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    /// The layer cached for `diff_id`, if there is a sound one.
    pub fn get(&self, diff_id: &Digest) -> Option<Hit> {
        let dir = self.entry_dir(diff_id);
        for e in fs::read_dir(&dir).ok()?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else {
                continue; // a temporary of a concurrent store
            };
            let path = e.path();
            match File::open(&path).and_then(digest_reader) {
                Ok((actual, size)) if actual == digest => {
                    // Used: keep it from being pruned.
                    let _ = File::options()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_modified(SystemTime::now()));
                    return Some(Hit { path, digest, size });
                }
                _ => {
                    tracing::warn!(
                        "layer cache entry {} is damaged; removing it",
                        path.display()
                    );
                    let _ = fs::remove_file(&path);
                }
            }
        }
        None
    }

    /// Keep `layer` (a finished blob whose digest is `digest`) as the layer of `diff_id`.
    /// Failures only cost a later cache miss, so they are logged, not returned.
    /// A full disk is worth a warning naming the cache's path (the build goes on).
    pub fn put(&self, diff_id: &Digest, layer: &Path, digest: &Digest) {
        let dir = self.entry_dir(diff_id);
        match self.try_put(&dir, layer, digest) {
            Err(e) if crate::storage_full(&e) => tracing::warn!(
                "layer cache: writing {}: {e}; the layer is not cached (free space there, or \
                 use --no-cache or another --cache-dir)",
                dir.display()
            ),
            Err(e) => tracing::debug!("not cached: {} in {}: {e}", layer.display(), dir.display()),
            Ok(()) => {}
        }
    }

    fn try_put(&self, dir: &Path, layer: &Path, digest: &Digest) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let dest = dir.join(digest.hex());
        if dest.exists() {
            return Ok(());
        }
        // A hard link shares the layout's bytes; across file systems, a copy renamed into place.
        match fs::hard_link(layer, &dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(_) => {
                let tmp = tempfile::Builder::new()
                    .prefix(".partial-")
                    .tempfile_in(dir)?;
                let _on_signal = crate::interrupt::temp_file(tmp.path());
                fs::copy(layer, tmp.path())?;
                tmp.persist(&dest).map_err(|e| e.error)?;
                Ok(())
            }
        }
    }
}

/// Blobs by digest (what a base image is made of).
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// The store under `root` (the cache directory), created if need be.
    pub fn open(root: &Path) -> io::Result<Self> {
        let top = root.join("blobs");
        prune(&top); // before creating the directory: pruning removes empty directories
        let dir = top.join("sha256");
        fs::create_dir_all(&dir)?;
        Ok(BlobStore { dir })
    }

    /// Where the blob `digest` is kept (or will be): a [`Digest`] is only hex, so this is safe.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// The kept blob `digest`, if it is there and hashes to its name; a damaged one is removed.
    pub fn get(&self, digest: &Digest) -> Option<PathBuf> {
        let path = self.path(digest);
        match File::open(&path).and_then(digest_reader) {
            Ok((actual, _)) if actual == *digest => {
                let _ = File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                Some(path)
            }
            Ok(_) => {
                tracing::warn!("blob {} is damaged; removing it", path.display());
                let _ = fs::remove_file(&path);
                None
            }
            Err(_) => None,
        }
    }

    /// Keep `bytes` as the blob `digest` (the caller checked the digest).
    pub fn put(&self, digest: &Digest, bytes: &[u8]) -> io::Result<PathBuf> {
        let dest = self.path(digest);
        let mut tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&self.dir)?;
        io::Write::write_all(&mut tmp, bytes)?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        Ok(dest)
    }
}

/// Where blobs were pushed in one registry.
#[derive(Debug, Clone)]
pub struct PushedBlobs {
    dir: PathBuf,
}

impl PushedBlobs {
    /// The records for `registry` (its API host, e.g. `ghcr.io` or `127.0.0.1:5000`) under `root`.
    pub fn open(root: &Path, registry: &str) -> io::Result<Self> {
        if registry.is_empty() || registry.contains(['/', '\\']) || registry.starts_with('.') {
            return Err(io::Error::other(format!("registry name `{registry}`")));
        }
        let dir = root.join("pushed").join(registry);
        prune(&root.join("pushed")); // before creating `dir`: pruning removes empty directories
        fs::create_dir_all(&dir)?;
        Ok(PushedBlobs { dir })
    }

    /// A repository other than `except` that `digest` was pushed to, if one is recorded.
    pub fn source(&self, digest: &Digest, except: &str) -> Option<String> {
        let repo = fs::read_to_string(self.dir.join(digest.hex())).ok()?;
        let repo = repo.trim();
        // A repository name as the distribution grammar has it; anything else is ignored.
        let valid = !repo.is_empty()
            && repo.len() <= 255
            && repo
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/'));
        (valid && repo != except).then(|| repo.to_string())
    }

    /// Record that `digest` is in `repository`. Failures cost only a later upload.
    pub fn record(&self, digest: &Digest, repository: &str) {
        let write = || -> io::Result<()> {
            let mut tmp = tempfile::Builder::new()
                .prefix(".partial-")
                .tempfile_in(&self.dir)?;
            io::Write::write_all(&mut tmp, repository.as_bytes())?;
            tmp.persist(self.dir.join(digest.hex()))
                .map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::debug!("not recorded: {digest} in {repository}: {e}");
        }
    }
}

/// Remove the entries of `top` (`top/<group>/<entry>`, an entry a file or a directory of files)
/// unused for [`MAX_AGE`], and temporaries of killed runs, at most once every [`PRUNE_EVERY`].
pub(crate) fn prune(top: &Path) {
    let stamp = top.join(".pruned");
    let _ = fs::create_dir_all(top);
    let now = SystemTime::now();
    let old = |t: SystemTime| now.duration_since(t).unwrap_or_default() > MAX_AGE;
    let recent = fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .is_ok_and(|t| now.duration_since(t).unwrap_or_default() < PRUNE_EVERY);
    if recent || fs::write(&stamp, b"").is_err() {
        return;
    }
    let children = |p: &Path| -> Vec<PathBuf> {
        fs::read_dir(p)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    // A temporary a day old belongs to a run that was killed (a copy takes minutes at most).
    let killed = |p: &Path| {
        let partial = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".partial-"));
        let day_old = |t: SystemTime| now.duration_since(t).unwrap_or_default() > PRUNE_EVERY;
        partial && modified(p).is_some_and(day_old)
    };
    for group in children(top).into_iter().filter(|p| p.is_dir()) {
        for entry in children(&group) {
            if entry.is_dir() {
                for f in children(&entry).iter().filter(|f| killed(f)) {
                    let _ = fs::remove_file(f);
                }
                let used = children(&entry).iter().filter_map(|f| modified(f)).max();
                if used.is_none_or(old) {
                    let _ = fs::remove_dir_all(&entry);
                }
            } else if killed(&entry) || modified(&entry).is_some_and(old) {
                let _ = fs::remove_file(&entry);
            }
        }
        let _ = fs::remove_dir(&group); // only if now empty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_serves_and_drops_damaged_entries() {
        let root = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(root.path(), "gzip-6-test").unwrap();
        let diff_id = Digest::of(b"tar");
        assert!(cache.get(&diff_id).is_none());

        let src = root.path().join("layer");
        fs::write(&src, b"compressed").unwrap();
        let digest = Digest::of(b"compressed");
        cache.put(&diff_id, &src, &digest);
        cache.put(&diff_id, &src, &digest); // twice is fine
        let hit = cache.get(&diff_id).expect("a hit");
        assert_eq!((hit.digest.clone(), hit.size), (digest.clone(), 10));
        assert_eq!(fs::read(&hit.path).unwrap(), b"compressed");

        // Damaged: the bytes no longer hash to the name. Write a new file (not through the
        // hard link, which would change `src` too).
        fs::remove_file(&hit.path).unwrap();
        fs::write(&hit.path, b"compressex").unwrap();
        assert!(cache.get(&diff_id).is_none());
        assert!(!hit.path.exists(), "the damaged entry stays");
    }

    #[test]
    fn pushed_blobs_name_another_repository_of_the_same_registry() {
        let root = tempfile::tempdir().unwrap();
        let d = Digest::of(b"layer");
        let ghcr = PushedBlobs::open(root.path(), "ghcr.io").unwrap();
        assert_eq!(ghcr.source(&d, "org/b"), None);
        ghcr.record(&d, "org/a");
        assert_eq!(ghcr.source(&d, "org/b").as_deref(), Some("org/a"));
        assert_eq!(ghcr.source(&d, "org/a"), None, "not from itself");
        let other = PushedBlobs::open(root.path(), "127.0.0.1:5000").unwrap();
        assert_eq!(other.source(&d, "org/b"), None, "another registry");
        // A record that is not a repository name is ignored.
        fs::write(root.path().join("pushed/ghcr.io").join(d.hex()), "a&b=c").unwrap();
        assert_eq!(ghcr.source(&d, "org/b"), None);
        assert!(PushedBlobs::open(root.path(), "../x").is_err());
    }

    #[test]
    fn prunes_old_entries_only() {
        let root = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(root.path(), "gzip-6-test").unwrap();
        let src = root.path().join("layer");
        fs::write(&src, b"x").unwrap();
        let (old, new) = (Digest::of(b"old"), Digest::of(b"new"));
        cache.put(&old, &src, &Digest::of(b"x"));
        let copy = root.path().join("layer2");
        fs::write(&copy, b"y").unwrap();
        cache.put(&new, &copy, &Digest::of(b"y"));
        let long_ago = SystemTime::now() - MAX_AGE - Duration::from_secs(60);
        let backdate = |p: &Path| {
            let f = File::options().write(true).open(p).unwrap();
            f.set_modified(long_ago).unwrap();
        };
        backdate(&cache.entry_dir(&old).join(Digest::of(b"x").hex()));
        // A killed run's temporary beside a live entry: removed, the entry kept.
        let partial = cache.entry_dir(&new).join(".partial-killed");
        fs::write(&partial, b"half").unwrap();
        let day_ago = SystemTime::now() - PRUNE_EVERY - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&partial)
            .unwrap()
            .set_modified(day_ago)
            .unwrap();
        fs::remove_file(root.path().join("layers/.pruned")).unwrap();
        let cache = LayerCache::open(root.path(), "gzip-6-test").unwrap();
        assert!(cache.get(&old).is_none());
        assert!(cache.get(&new).is_some());
        assert!(!partial.exists(), "a killed run's temporary stayed");

        // Records of pushed blobs too.
        let pushed = PushedBlobs::open(root.path(), "ghcr.io").unwrap();
        pushed.record(&old, "org/a");
        pushed.record(&new, "org/a");
        backdate(&root.path().join("pushed/ghcr.io").join(old.hex()));
        fs::remove_file(root.path().join("pushed/.pruned")).unwrap();
        let pushed = PushedBlobs::open(root.path(), "ghcr.io").unwrap();
        assert_eq!(pushed.source(&old, "org/b"), None);
        assert_eq!(pushed.source(&new, "org/b").as_deref(), Some("org/a"));
    }
}
