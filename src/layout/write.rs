//! Writing a layout: in a temporary directory beside its destination, locked while the build
//! lives, world-readable, and swapped into place whole.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{io_err, LayoutError, Result, OCI_LAYOUT_CONTENT, OCI_LAYOUT_FILE};
use crate::digest::{Digest, HashWriter};

/// A layout under construction in a temporary directory beside its destination.
pub struct LayoutWriter {
    tmp: Staging,
    output: PathBuf,
    /// Per digest, whether [`put_blob_file`](Self::put_blob_file) has placed it: held while it
    /// does, so two platforms sharing a layer never place it at once.
    placed: Mutex<HashMap<Digest, Arc<Mutex<bool>>>>,
}

/// Layout files are world-readable, as skopeo and umoci write them: a layout built by one user
/// (or by a CI step running as root) is read by another.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// A write of the layout under construction failed at `path`: said as the output's (an error a
/// [`BlobWriter`] already made so is passed on as it is).
fn out_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> LayoutError {
    let path = path.into();
    move |source| match source.get_ref().is_some_and(|e| e.is::<LayoutError>()) {
        true => *source
            .into_inner()
            .and_then(|e| e.downcast::<LayoutError>().ok())
            .expect("checked"),
        false => LayoutError::Write { path, source },
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(out_err(path))
}

/// The temporary directory `.NAME.tmp-XXXXXX` and its lock `.NAME.tmp-XXXXXX.lock`, created
/// first and held (`flock`) while the build lives. Dropped, it removes the directory (unless
/// kept) and then the lock. A temporary directory whose lock is missing or free belongs to a
/// build that was killed.
struct Staging {
    dir: PathBuf,
    lock: PathBuf,
    _held: File,
    keep_dir: bool,
    /// Removed on SIGINT, SIGTERM or SIGHUP too ([`crate::interrupt`]).
    _on_signal: crate::interrupt::Registered,
}

impl Staging {
    fn create(parent: &Path, prefix: &str) -> Result<Self> {
        let (held, lock) = tempfile::Builder::new()
            .prefix(prefix)
            .suffix(".lock")
            .tempfile_in(parent)
            .map_err(out_err(parent))?
            .keep()
            .map_err(|e| out_err(parent)(e.error))?;
        rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| out_err(&lock)(e.into()))?;
        let name = lock.to_string_lossy();
        let dir = PathBuf::from(name.strip_suffix(".lock").unwrap_or(&name));
        let on_signal = crate::interrupt::temp_dir(&dir, &lock);
        let mut staging = Staging {
            dir,
            lock,
            _held: held,
            keep_dir: true, // not ours until created
            _on_signal: on_signal,
        };
        fs::create_dir(&staging.dir).map_err(out_err(&staging.dir))?;
        staging.keep_dir = false;
        Ok(staging)
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
        let _ = fs::remove_file(&self.lock);
    }
}

impl LayoutWriter {
    /// Start a layout that [`commit`](Self::commit) will move to `output`. Refuses an `output`
    /// that exists, is not empty and is not a layout: replacing it would lose someone's files.
    pub fn create(output: &Path) -> Result<Self> {
        check_replaceable(output)?;
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "layout".into());
        let parent = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(out_err(&parent))?;
        let prefix = format!(".{name}.tmp-");
        remove_stale_temporaries(&parent, &prefix);
        let tmp = Staging::create(&parent, &prefix)?;
        let blobs = tmp.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(out_err(&blobs))?;
        for d in [tmp.path(), &tmp.path().join("blobs"), &blobs] {
            set_mode(d, DIR_MODE)?;
        }
        let marker = tmp.path().join(OCI_LAYOUT_FILE);
        fs::write(&marker, OCI_LAYOUT_CONTENT).map_err(out_err(&marker))?;
        set_mode(&marker, FILE_MODE)?;
        Ok(LayoutWriter {
            tmp,
            output: output.to_path_buf(),
            placed: Mutex::default(),
        })
    }

    /// A writer for one blob; it is named by its digest when finished.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let dir = self.tmp.path().join("blobs/sha256");
        let (file, tmp_path) = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&dir)
            .map_err(out_err(&dir))?
            .keep()
            .map_err(|e| LayoutError::Io {
                path: dir.clone(),
                source: e.error,
            })?;
        set_mode(&tmp_path, FILE_MODE)?;
        Ok(BlobWriter {
            inner: HashWriter::new(BufWriter::with_capacity(1 << 20, file)),
            tmp_path,
            dir,
        })
    }

    /// Store `bytes` as a blob and return its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(out_err(&w.tmp_path))?;
        Ok(w.finish()?.0)
    }

    /// Where the blob `digest` is (or will be) in the layout under construction.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.tmp.path().join("blobs/sha256").join(digest.hex())
    }

    /// Store a blob already on disk whose digest is known (a cached layer, a base's). Safe from
    /// any number of threads at once: each digest is placed once, by one of them, and always
    /// under a temporary name renamed over its own, so its path never names a missing or a
    /// half-written file (two platforms sharing a base layer once raced to `ENOENT` here).
    pub fn put_blob_file(&self, src: &Path, digest: &Digest) -> Result<()> {
        let once = {
            let mut placed = self.placed.lock().unwrap_or_else(|e| e.into_inner());
            placed.entry(digest.clone()).or_default().clone()
        };
        let mut done = once.lock().unwrap_or_else(|e| e.into_inner());
        if !*done {
            self.place(src, digest)?;
            *done = true;
        }
        Ok(())
    }

    fn place(&self, src: &Path, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        let want = fs::metadata(src).map_err(io_err(src))?.len();
        // Already written (by `put_blob`), or `src` itself (hard-linked): left alone, as
        // copying a file onto itself truncates it.
        if fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == want) {
            return Ok(());
        }
        let tmp = dest.with_file_name(format!(".partial-{}", digest.hex()));
        let _ = fs::remove_file(&tmp);
        // A hard link costs nothing when the cache is on the same file system; across file
        // systems, a copy. Either shares or sets the mode (a cache entry's may predate
        // world-readable layouts).
        if fs::hard_link(src, &tmp).is_err() {
            // A full disk is the copy's write side (the layout); anything else, its source.
            fs::copy(src, &tmp).map_err(|e| match crate::storage_full(&e) {
                true => out_err(&tmp)(e),
                false => io_err(src)(e),
            })?;
        }
        set_mode(&tmp, FILE_MODE)?;
        fs::rename(&tmp, &dest).map_err(out_err(&dest))?;
        // A rename onto another link to the same file does nothing, leaving `tmp`.
        let _ = fs::remove_file(&tmp);
        Ok(())
    }

    /// Write `index.json` and move the finished layout to its destination.
    pub fn commit(mut self, index_json: &[u8]) -> Result<PathBuf> {
        let index = self.tmp.path().join("index.json");
        fs::write(&index, index_json).map_err(out_err(&index))?;
        set_mode(&index, FILE_MODE)?;
        // Moved into place, or on failure removed (by the drop): either way under the lock, and
        // never cut in half by a signal's cleanup.
        let critical = crate::interrupt::critical();
        swap_into_place(self.tmp.path(), &self.output)?;
        drop(critical);
        self.tmp.keep_dir = true;
        Ok(std::mem::take(&mut self.output))
    }
}

fn check_replaceable(output: &Path) -> Result<()> {
    match fs::symlink_metadata(output) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(output)(e)),
        Ok(m) if m.is_dir() => {
            let empty = fs::read_dir(output)
                .map_err(io_err(output))?
                .next()
                .is_none();
            if empty || output.join(OCI_LAYOUT_FILE).is_file() {
                Ok(())
            } else {
                Err(LayoutError::WouldClobber(output.to_path_buf()))
            }
        }
        Ok(_) => Err(LayoutError::WouldClobber(output.to_path_buf())),
    }
}

/// Put `staged` at `output`. An existing layout is swapped with the new one in one step
/// (`renameat2` with `RENAME_EXCHANGE`) and then removed; where the system cannot exchange, it is
/// moved aside first and removed after. A kill at any point leaves either the old or the new
/// layout at `output` (in the fallback, for an instant between two renames, nothing), never a
/// mixture.
fn swap_into_place(staged: &Path, output: &Path) -> Result<()> {
    if fs::symlink_metadata(output).is_err() {
        return fs::rename(staged, output).map_err(out_err(output));
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        if renameat_with(CWD, staged, CWD, output, RenameFlags::EXCHANGE).is_ok() {
            let _ = fs::remove_dir_all(staged); // now the previous layout
            return Ok(());
        }
    }
    let aside = staged.with_extension("old");
    fs::rename(output, &aside).map_err(out_err(output))?;
    if let Err(e) = fs::rename(staged, output) {
        let _ = fs::rename(&aside, output);
        return Err(out_err(output)(e));
    }
    let _ = fs::remove_dir_all(&aside);
    Ok(())
}

/// Remove the temporaries (`PREFIX…` directories and their `.lock` files) of builds that were
/// killed: those whose lock is missing or not held. A live build holds its lock, whatever its
/// PID namespace or system (no `/proc` needed).
fn remove_stale_temporaries(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let (dir, lock) = match name.strip_suffix(".lock") {
            Some(d) => (parent.join(d), e.path()),
            None => (e.path(), parent.join(format!("{name}.lock"))),
        };
        let held = File::open(&lock).is_ok_and(|f| {
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
        });
        // A lock without its directory may be one being taken this instant: left alone
        // unless old.
        let old = || {
            fs::metadata(&lock)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default().as_secs() > 60)
        };
        if !held && (dir.exists() || old()) {
            let _ = fs::remove_dir_all(&dir);
            let _ = fs::remove_file(&lock);
        }
    }
}

/// A blob being written; hashed on the way to disk.
pub struct BlobWriter {
    inner: HashWriter<BufWriter<File>>,
    tmp_path: PathBuf,
    dir: PathBuf,
}

impl BlobWriter {
    /// Flush, name the blob by its digest, and return digest and size.
    pub fn finish(self) -> Result<(Digest, u64)> {
        let (buf, digest, size) = self.inner.finish();
        buf.into_inner()
            .map_err(|e| out_err(&self.tmp_path)(e.into_error()))?;
        let dest = self.dir.join(digest.hex());
        fs::rename(&self.tmp_path, &dest).map_err(out_err(&dest))?;
        Ok((digest, size))
    }
}

/// Its errors name the blob's file as the output's, for whoever writes into it (the layer's
/// tar and gzip know no path).
impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.annotate(e))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| self.annotate(e))
    }
}

impl BlobWriter {
    fn annotate(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), out_err(&self.tmp_path)(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_clobber_a_non_layout_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
        let err = LayoutWriter::create(dir.path()).err().unwrap();
        assert!(matches!(err, LayoutError::WouldClobber(_)), "{err}");
        assert!(dir.path().join("precious.txt").exists());
    }

    #[test]
    fn commit_replaces_a_previous_layout_and_drop_leaves_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("img");
        let w = LayoutWriter::create(&out).unwrap();
        let d = w.put_blob(b"one").unwrap();
        w.commit(b"{\"schemaVersion\":2,\"manifests\":[]}").unwrap();
        assert!(out.join("blobs/sha256").join(d.hex()).is_file());

        // A second writer dropped without commit leaves the first layout as it was.
        let w = LayoutWriter::create(&out).unwrap();
        w.put_blob(b"two").unwrap();
        drop(w);
        assert!(out.join("blobs/sha256").join(d.hex()).is_file());
        let names: Vec<_> = fs::read_dir(parent.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "temporaries left: {names:?}");

        let w = LayoutWriter::create(&out).unwrap();
        let d2 = w.put_blob(b"two").unwrap();
        w.commit(b"{\"schemaVersion\":2,\"manifests\":[]}").unwrap();
        assert!(!out.join("blobs/sha256").join(d.hex()).exists());
        assert!(out.join("blobs/sha256").join(d2.hex()).is_file());
        // The previous layout, swapped out, is gone too.
        let names: Vec<_> = fs::read_dir(parent.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "left beside the layout: {names:?}");
    }

    #[test]
    fn layout_files_are_world_readable() {
        use std::os::unix::fs::PermissionsExt as _;
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("img");
        let w = LayoutWriter::create(&out).unwrap();
        w.put_blob(b"one").unwrap();
        let cached = parent.path().join("cached");
        fs::write(&cached, b"two").unwrap();
        fs::set_permissions(&cached, fs::Permissions::from_mode(0o600)).unwrap();
        w.put_blob_file(&cached, &Digest::of(b"two")).unwrap();
        w.commit(b"{\"schemaVersion\":2,\"manifests\":[]}").unwrap();
        let mut seen = 0;
        let mut stack = vec![out.clone()];
        while let Some(p) = stack.pop() {
            let m = fs::metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o777;
            let want = if m.is_dir() { 0o755 } else { 0o644 };
            assert_eq!(mode, want, "{}", p.display());
            if m.is_dir() {
                stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
            seen += 1;
        }
        assert_eq!(
            seen, 7,
            "layout, oci-layout, index.json, blobs, sha256, two blobs"
        );
    }

    /// Issue 34, finding 3: platforms sharing a base's layers put the same blobs at once.
    #[test]
    fn blobs_shared_by_many_threads_are_placed_whole_without_a_race() {
        let parent = tempfile::tempdir().unwrap();
        let cache = parent.path().join("cache");
        fs::create_dir(&cache).unwrap();
        let blobs: Vec<(PathBuf, Digest)> = (0..300)
            .map(|i| {
                let bytes = format!("layer {i}").repeat(i % 7 + 1);
                let path = cache.join(i.to_string());
                fs::write(&path, &bytes).unwrap();
                (path, Digest::of(bytes.as_bytes()))
            })
            .collect();
        for round in 0..5 {
            let out = parent.path().join(format!("img{round}"));
            let w = LayoutWriter::create(&out).unwrap();
            let errors: Vec<String> = std::thread::scope(|s| {
                let threads: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            blobs
                                .iter()
                                .filter_map(|(p, d)| w.put_blob_file(p, d).err())
                                .map(|e| e.to_string())
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .flat_map(|t| t.join().unwrap())
                    .collect()
            });
            assert_eq!(errors, Vec::<String>::new(), "round {round}");
            w.commit(b"{\"schemaVersion\":2,\"manifests\":[]}").unwrap();
            let dir = out.join("blobs/sha256");
            for (p, d) in &blobs {
                assert_eq!(fs::read(dir.join(d.hex())).unwrap(), fs::read(p).unwrap());
            }
            let names = fs::read_dir(&dir).unwrap().count();
            assert_eq!(names, blobs.len(), "round {round}: temporaries left");
        }
    }

    #[test]
    fn stale_temporaries_are_told_by_their_lock_not_their_pid() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("img");
        // A live build whose PID is not ours to see (another PID namespace): its lock is held.
        let live = parent.path().join(".img.tmp-999999999.abc");
        fs::create_dir(&live).unwrap();
        let lock = File::create(parent.path().join(".img.tmp-999999999.abc.lock")).unwrap();
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
        // A killed build whose PID was reused by a live process (PID 1): no lock is held.
        let killed = parent.path().join(".img.tmp-1.def");
        fs::create_dir(&killed).unwrap();
        fs::write(parent.path().join(".img.tmp-1.def.lock"), b"").unwrap();
        let w = LayoutWriter::create(&out).unwrap();
        assert!(live.exists(), "a live build's temporary was removed");
        assert!(!killed.exists(), "a killed build's temporary stayed");
        w.commit(b"{\"schemaVersion\":2,\"manifests\":[]}").unwrap();
        drop(lock);
        let _ = LayoutWriter::create(&out).unwrap();
        let left: Vec<_> = fs::read_dir(parent.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["img"], "left beside the layout: {left:?}");
    }
}
