//! Hashing a push's blobs against their digests before any of their bytes goes out, while the
//! first round trip (does the registry hold the index?) is in flight. A re-push the registry
//! holds already needs no hashing: dropping the [`Verification`] stops it within a megabyte.

use std::io::{self, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::PushError;
use crate::layout::{Descriptor, Layout, LayoutError};

/// Blobs being hashed in parallel off the async threads; stopped when dropped.
pub(super) struct Verification {
    cancel: Arc<AtomicBool>,
    task: Option<JoinHandle<Result<(), LayoutError>>>,
}

impl Verification {
    pub(super) fn start(layout: &Layout, blobs: &[Descriptor]) -> Self {
        let cancel = Arc::new(AtomicBool::new(false));
        let (layout, blobs, flag) = (layout.clone(), blobs.to_vec(), cancel.clone());
        let task = tokio::task::spawn_blocking(move || {
            use rayon::prelude::*;
            blobs.par_iter().try_for_each(|d| verify(&layout, d, &flag))
        });
        Verification {
            cancel,
            task: Some(task),
        }
    }

    /// Every blob's verdict: the first blob that does not match its descriptor fails it.
    pub(super) async fn finish(mut self) -> Result<(), PushError> {
        let task = self.task.take().expect("finished once");
        task.await
            .map_err(|e| PushError::Internal(e.to_string()))??;
        Ok(())
    }
}

impl Drop for Verification {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// One blob: its size, then its digest, read a megabyte at a time until `cancel`. Any doubt
/// is settled by [`Layout::verify_blob`], whose error names what is wrong.
fn verify(layout: &Layout, d: &Descriptor, cancel: &AtomicBool) -> Result<(), LayoutError> {
    let file = layout.open_blob(d)?;
    let reader = BufReader::with_capacity(
        1 << 20,
        Cancellable {
            inner: file,
            cancel,
        },
    );
    match crate::digest::digest_reader(reader) {
        Ok((digest, _)) if digest == d.digest => Ok(()),
        _ if cancel.load(Ordering::Relaxed) => Ok(()),
        _ => layout.verify_blob(d),
    }
}

/// A reader that fails once `cancel` is set.
struct Cancellable<'a, R> {
    inner: R,
    cancel: &'a AtomicBool,
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("cancelled"));
        }
        self.inner.read(buf)
    }
}
