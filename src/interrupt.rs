//! Stopping cleanly when told to: SIGINT, SIGTERM (CI runners, `timeout`) and SIGHUP (a closed
//! terminal) remove what a build had under way, as its destructors would, then end the process
//! by that signal.
//!
//! What a build leaves while it runs registers here: temporary directories, with their locks
//! (the layout being written) or without (a base's blobs pulled with `--no-cache`), temporary files (a cache entry being copied) and child process
//! groups (cargo and the compilers it runs). [`install`] starts a thread that waits for the
//! signals; on the first, it takes the registry's lock for good (so no further step starts and
//! no critical section is cut in half), kills the process groups and reaps their leaders,
//! removes the files and directories, and re-raises the signal with its default action.
//! Without [`install`] (a library caller with its own handling) registering costs a lock and a
//! `Vec` push, and nothing else changes.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

enum Item {
    /// A directory and the lock file that marks it as live, if it has one.
    Dir {
        dir: PathBuf,
        lock: Option<PathBuf>,
    },
    File(PathBuf),
    /// A child that leads its own process group.
    Group(u32),
}

struct Registry {
    next: u64,
    items: Vec<(u64, Item)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    items: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Something to clean up on a signal, while this lives.
#[derive(Debug)]
#[must_use = "dropping it unregisters at once"]
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        registry().items.retain(|(id, _)| *id != self.0);
    }
}

fn register(item: Item) -> Registered {
    let mut r = registry();
    r.next += 1;
    let id = r.next;
    r.items.push((id, item));
    Registered(id)
}

/// Remove `dir` (and then `lock`) on a signal.
pub fn temp_dir(dir: &Path, lock: &Path) -> Registered {
    register(Item::Dir {
        dir: dir.to_path_buf(),
        lock: Some(lock.to_path_buf()),
    })
}

/// Remove `dir`, which has no lock, on a signal.
pub fn dir(dir: &Path) -> Registered {
    register(Item::Dir {
        dir: dir.to_path_buf(),
        lock: None,
    })
}

/// Remove `file` on a signal.
pub fn temp_file(file: &Path) -> Registered {
    register(Item::File(file.to_path_buf()))
}

/// Kill the process group led by `pid` (a child spawned with `process_group(0)`) on a signal,
/// and reap its leader.
pub fn process_group(pid: u32) -> Registered {
    register(Item::Group(pid))
}

/// Held, no cleanup runs until it is dropped: for a step that must not stop half-way (moving a
/// layout into place). Never register or unregister while holding it.
pub struct Critical(#[allow(dead_code)] MutexGuard<'static, Registry>);

pub fn critical() -> Critical {
    Critical(registry())
}

const SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Handle SIGINT, SIGTERM and SIGHUP as described above, from a thread of their own. A signal
/// the process inherited as ignored (`nohup`, a background job of a script) stays ignored.
pub fn install() -> std::io::Result<()> {
    let wanted: Vec<i32> = SIGNALS.into_iter().filter(|s| !ignored(*s)).collect();
    let mut signals = signal_hook::iterator::Signals::new(&wanted)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let held = registry();
                clean_up(&held);
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                // Not reached for these signals; should it be, end anyway.
                std::process::exit(128 + signal);
            }
        })?;
    Ok(())
}

fn ignored(signal: i32) -> bool {
    // SAFETY: a query only (a null new action); `old` is plain data filled in by the call.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

fn clean_up(registry: &Registry) {
    use rustix::process::{kill_process_group, waitpid, Pid, Signal, WaitOptions};
    // Children first: they may still be writing where the rest is removed.
    for (_, item) in &registry.items {
        if let Item::Group(pid) = item {
            if let Some(pid) = Pid::from_raw(*pid as i32) {
                let _ = kill_process_group(pid, Signal::KILL);
                let _ = waitpid(Some(pid), WaitOptions::empty());
            }
        }
    }
    for (_, item) in &registry.items {
        match item {
            Item::Dir { dir, lock } => {
                // Renamed first, so nothing the build's threads still create lands in it (their
                // paths no longer exist) and the removal cannot race them; the new name keeps
                // the prefix a later build clears, should this removal not finish.
                let mut dead = dir.clone().into_os_string();
                dead.push(".dead");
                let dead = PathBuf::from(dead);
                let gone = match std::fs::rename(dir, &dead) {
                    Ok(()) => &dead,
                    Err(_) => dir,
                };
                let _ = std::fs::remove_dir_all(gone);
                if let Some(lock) = lock {
                    let _ = std::fs::remove_file(lock);
                }
            }
            Item::File(f) => {
                let _ = std::fs::remove_file(f);
            }
            Item::Group(_) => {}
        }
    }
}
