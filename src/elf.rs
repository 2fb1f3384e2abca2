//! The check that a binary can start in a `FROM scratch` image of its platform: an ELF executable,
//! fully static (no `PT_INTERP`, no `DT_NEEDED`; static-PIE is fine), of the platform's machine
//! and class. Read from the program headers and the dynamic segment, which stripped binaries
//! keep, not from section headers, which they may lack.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use goblin::elf::dynamic::DT_NEEDED;
use goblin::elf::header::{ET_DYN, ET_EXEC};
use goblin::elf::program_header::{PT_DYNAMIC, PT_INTERP};

use crate::platform::{machine_name, Platform};

const STATIC_FIX: &str =
    "build a static binary: a *-unknown-linux-musl target with RUSTFLAGS=\"-C target-feature=+crt-static\" (or use `ironstar build --cargo`)";

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{path}: cannot read binary: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no such file; it is cargo's output for {target}: build it first (`cargo build --release --target {target}`), or let ironstar build it with `ironstar build --cargo`")]
    NotBuilt { path: PathBuf, target: &'static str },
    #[error("{0}: not a regular file; give the path of a compiled binary")]
    NotAFile(PathBuf),
    #[error("{0}: not an ELF binary; give a Linux executable built for the image's platform")]
    NotElf(PathBuf),
    #[error("{path}: not an executable ({what}); give the program itself, not an object file or a library")]
    NotExecutable { path: PathBuf, what: &'static str },
    #[error(
        "{path}: dynamically linked ({why}), so it cannot start in a scratch image; {STATIC_FIX}"
    )]
    Dynamic { path: PathBuf, why: String },
    #[error("{path}: built for {found}, but given as {platform} ({expected}); pass it as the platform it was built for or rebuild with --target {target}")]
    WrongMachine {
        path: PathBuf,
        found: String,
        platform: String,
        expected: String,
        target: &'static str,
    },
}

/// What the check learned about a binary that passed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryInfo {
    pub size: u64,
    /// Position-independent (static-PIE).
    pub pie: bool,
}

/// Whether `path` lies in a cargo target directory: `…/target/…`, or `…/<rust target>/<profile>/…`.
fn in_cargo_target_dir(path: &Path, platform: &Platform) -> bool {
    path.components().any(|c| {
        let c = c.as_os_str();
        c == "target" || c == platform.rust_target
    })
}

/// Check that `path` is a static executable for `platform`.
pub fn check(path: &Path, platform: &Platform) -> Result<BinaryInfo, ElfError> {
    let io = |source| ElfError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound if in_cargo_target_dir(path, platform) => ElfError::NotBuilt {
            path: path.to_path_buf(),
            target: platform.rust_target,
        },
        _ => io(e),
    })?;
    if !meta.is_file() {
        return Err(ElfError::NotAFile(path.to_path_buf()));
    }
    let file = File::open(path).map_err(io)?;
    if meta.len() < 64 {
        return Err(ElfError::NotElf(path.to_path_buf()));
    }
    // SAFETY: read-only map of a file we opened; only its headers are touched. A file truncated by
    // someone else meanwhile would fault, as any mapped read would.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    check_bytes(path, &map, platform).map(|pie| BinaryInfo {
        size: meta.len(),
        pie,
    })
}

fn check_bytes(path: &Path, bytes: &[u8], platform: &Platform) -> Result<bool, ElfError> {
    let p = || path.to_path_buf();
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err(ElfError::NotElf(p()));
    }
    let header = goblin::elf::Elf::parse_header(bytes).map_err(|_| ElfError::NotElf(p()))?;
    let bits = if header.e_ident[4] == 2 { 64 } else { 32 };
    let little = header.e_ident[5] == 1;
    if header.e_machine != platform.elf_machine
        || bits != platform.elf_bits
        || little != platform.little_endian
    {
        let endian = if little { "little" } else { "big" };
        return Err(ElfError::WrongMachine {
            path: p(),
            found: format!(
                "{} ({bits}-bit, {endian}-endian)",
                machine_name(header.e_machine)
            ),
            platform: platform.to_string(),
            expected: format!("{} {}-bit", platform.elf_machine_name(), platform.elf_bits),
            target: platform.rust_target,
        });
    }
    let pie = match header.e_type {
        ET_EXEC => false,
        ET_DYN => true,
        1 => {
            return Err(ElfError::NotExecutable {
                path: p(),
                what: "a relocatable object file",
            })
        }
        4 => {
            return Err(ElfError::NotExecutable {
                path: p(),
                what: "a core dump",
            })
        }
        _ => {
            return Err(ElfError::NotExecutable {
                path: p(),
                what: "an unknown ELF type",
            })
        }
    };
    // Program headers and the dynamic segment only; goblin's full parse also walks sections.
    let mut elf = goblin::elf::Elf::lazy_parse(header).map_err(|_| ElfError::NotElf(p()))?;
    let ctx = goblin::container::Ctx::new(
        if bits == 64 {
            goblin::container::Container::Big
        } else {
            goblin::container::Container::Little
        },
        if little {
            goblin::container::Endian::Little
        } else {
            goblin::container::Endian::Big
        },
    );
    elf.program_headers = goblin::elf::ProgramHeader::parse(
        bytes,
        header.e_phoff as usize,
        header.e_phnum as usize,
        ctx,
    )
    .map_err(|_| ElfError::NotElf(p()))?;
    if let Some(interp) = elf.program_headers.iter().find(|h| h.p_type == PT_INTERP) {
        let start = interp.p_offset as usize;
        let end = start
            .saturating_add(interp.p_filesz as usize)
            .min(bytes.len());
        let name = bytes
            .get(start..end)
            .map(|b| {
                String::from_utf8_lossy(b)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .unwrap_or_default();
        return Err(ElfError::Dynamic {
            path: p(),
            why: format!("it asks for the loader {name}"),
        });
    }
    if elf.program_headers.iter().any(|h| h.p_type == PT_DYNAMIC) {
        let dynamic = goblin::elf::dynamic::Dynamic::parse(bytes, &elf.program_headers, ctx)
            .map_err(|_| ElfError::NotElf(p()))?;
        if let Some(d) = dynamic {
            let needed = d.dyns.iter().filter(|d| d.d_tag == DT_NEEDED).count();
            if needed > 0 {
                return Err(ElfError::Dynamic {
                    path: p(),
                    why: format!(
                        "it needs {needed} shared librar{}",
                        if needed == 1 { "y" } else { "ies" }
                    ),
                });
            }
        }
    }
    if pie && header.e_entry == 0 {
        return Err(ElfError::NotExecutable {
            path: p(),
            what: "a shared library with no entry point",
        });
    }
    Ok(pie)
}
