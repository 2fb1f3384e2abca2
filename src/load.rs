//! Loading an image into the local container engine: `podman load` or `docker load`, fed a
//! docker-archive stream on standard input, so the image runs by its name.

use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::archive::{self, ArchiveError, PlatformImage};
use crate::layout::Layout;

/// The engines `ironstar load` knows, in the order it looks for them.
pub const ENGINES: [&str; 2] = ["podman", "docker"];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("neither podman nor docker is on PATH; install one, or write a file with --output FILE.tar and load it yourself")]
    NoEngine,
    #[error("cannot start `{engine} load`: {source}")]
    Spawn {
        engine: String,
        #[source]
        source: io::Error,
    },
    #[error("`{engine} load` failed ({status}); its message is above")]
    Failed { engine: String, status: String },
}

/// The first of [`ENGINES`] on `PATH`.
pub fn find_engine() -> Option<&'static str> {
    let path = std::env::var_os("PATH")?;
    ENGINES
        .into_iter()
        .find(|e| std::env::split_paths(&path).any(|d| is_executable(&d.join(e))))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Pipe `image`, named `repo_tag`, into `engine load`; returns the names the engine reports
/// (`Loaded image: …`), or `repo_tag` when it reports none. The engine's stderr is the user's.
pub fn load(
    engine: &str,
    layout: &Layout,
    image: &PlatformImage,
    repo_tag: &str,
) -> Result<Vec<String>, LoadError> {
    let spawn_err = |source| LoadError::Spawn {
        engine: engine.to_string(),
        source,
    };
    let mut child = Command::new(engine)
        .args(["load", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let stdin = BufWriter::with_capacity(1 << 20, child.stdin.take().expect("piped stdin"));
    let written = archive::write_docker_archive(layout, image, &[repo_tag.to_string()], stdin)
        .and_then(|w| {
            w.into_inner()
                .map_err(|e| ArchiveError::Write(e.into_error()))
        })
        .map(drop); // closes stdin: the end of the stream
                    // An engine that stopped reading early reports why, and that comes first.
    let output = child.wait_with_output().map_err(spawn_err)?;
    if !output.status.success() {
        return Err(LoadError::Failed {
            engine: engine.to_string(),
            status: output.status.to_string(),
        });
    }
    written?;
    let names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_once("Loaded image").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(": ").map(|(_, n)| n.trim().to_string()))
        .flat_map(|n| n.split(", ").map(str::to_string).collect::<Vec<_>>())
        .collect();
    Ok(match names.is_empty() {
        true => vec![repo_tag.to_string()],
        false => names,
    })
}

/// Load `platform` of the layout at `dir` (its only image) into `engine` as `repo_tag`, as
/// `ironstar resolve --local` does for each image; the names the engine reports.
pub fn load_layout(
    engine: &str,
    dir: &Path,
    platform: &'static crate::platform::Platform,
    repo_tag: &str,
) -> Result<Vec<String>, LoadError> {
    let layout = Layout::open(dir).map_err(ArchiveError::from)?;
    let resolved = layout.resolve(None).map_err(ArchiveError::from)?;
    let image = archive::select(&layout, &resolved, platform)?;
    load(engine, &layout, &image, repo_tag)
}

/// Write an archive to `path` atomically: a temporary file beside it, renamed into place only when
/// complete, so a failure never leaves half an archive under the name.
pub fn write_file<F>(path: &Path, write: F) -> Result<PathBuf, LoadError>
where
    F: FnOnce(BufWriter<std::fs::File>) -> Result<BufWriter<std::fs::File>, ArchiveError>,
{
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let io_err = |e: io::Error| {
        ArchiveError::Write(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    };
    let tmp = tempfile::Builder::new()
        .prefix(".ironstar-archive-")
        .tempfile_in(&dir)
        .map_err(io_err)?;
    let (file, tmp_path) = tmp.into_parts();
    let w = write(BufWriter::with_capacity(1 << 20, file))?;
    let file = w.into_inner().map_err(|e| io_err(e.into_error()))?;
    // A tempfile is private (0600); an archive is as readable as any other output.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    tmp_path.persist(path).map_err(|e| io_err(e.error))?;
    Ok(path.to_path_buf())
}
