//! The platform table: one row per OCI platform ironstar can pack, with the Rust target that builds
//! for it and the ELF identity its binaries must carry. The ELF check, the cargo path and the Nix
//! target table (`nix/targets.nix`, checked against this one by a test) all read these rows.

use std::fmt;
use std::str::FromStr;

use goblin::elf::header::{EM_386, EM_AARCH64, EM_ARM, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64};

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    pub os: &'static str,
    pub architecture: &'static str,
    pub variant: Option<&'static str>,
    /// The Rust target that builds a fully static binary for this platform.
    pub rust_target: &'static str,
    /// ELF `e_machine`.
    pub elf_machine: u16,
    /// ELF class: 32 or 64 bits.
    pub elf_bits: u8,
    pub little_endian: bool,
}

const fn row(
    architecture: &'static str,
    variant: Option<&'static str>,
    rust_target: &'static str,
    elf_machine: u16,
    elf_bits: u8,
    little_endian: bool,
) -> Platform {
    Platform {
        os: "linux",
        architecture,
        variant,
        rust_target,
        elf_machine,
        elf_bits,
        little_endian,
    }
}

/// Every platform ironstar knows, amd64 and arm64 first.
pub const PLATFORMS: &[Platform] = &[
    row(
        "amd64",
        None,
        "x86_64-unknown-linux-musl",
        EM_X86_64,
        64,
        true,
    ),
    row(
        "arm64",
        None,
        "aarch64-unknown-linux-musl",
        EM_AARCH64,
        64,
        true,
    ),
    row("386", None, "i686-unknown-linux-musl", EM_386, 32, true),
    row(
        "arm",
        Some("v6"),
        "arm-unknown-linux-musleabihf",
        EM_ARM,
        32,
        true,
    ),
    row(
        "arm",
        Some("v7"),
        "armv7-unknown-linux-musleabihf",
        EM_ARM,
        32,
        true,
    ),
    row(
        "riscv64",
        None,
        "riscv64gc-unknown-linux-musl",
        EM_RISCV,
        64,
        true,
    ),
    row(
        "ppc64le",
        None,
        "powerpc64le-unknown-linux-musl",
        EM_PPC64,
        64,
        true,
    ),
    row(
        "s390x",
        None,
        "s390x-unknown-linux-musl",
        EM_S390,
        64,
        false,
    ),
];

/// The platforms built when an image definition names none.
pub const DEFAULT_PLATFORMS: &[&str] = &["linux/amd64", "linux/arm64"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown platform `{given}`: expected one of {}", known_list())]
pub struct UnknownPlatform {
    pub given: String,
}

fn known_list() -> String {
    PLATFORMS
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Platform {
    /// The row for `os/arch[/variant]`. `linux/arm64/v8` is accepted as `linux/arm64`, and
    /// `linux/arm` as `linux/arm/v7`, as containerd normalises them.
    pub fn parse(s: &str) -> Result<&'static Platform, UnknownPlatform> {
        let normal = match s {
            "linux/arm64/v8" => "linux/arm64",
            "linux/arm" => "linux/arm/v7",
            other => other,
        };
        PLATFORMS
            .iter()
            .find(|p| p.to_string() == normal)
            .ok_or_else(|| UnknownPlatform {
                given: s.to_string(),
            })
    }

    /// The row whose Rust target is `triple`.
    pub fn for_rust_target(triple: &str) -> Option<&'static Platform> {
        PLATFORMS.iter().find(|p| p.rust_target == triple)
    }

    /// The human name of the ELF machine this platform expects.
    pub fn elf_machine_name(&self) -> &'static str {
        machine_name(self.elf_machine)
    }
}

/// A readable name for an ELF `e_machine` value.
pub fn machine_name(machine: u16) -> &'static str {
    match machine {
        EM_X86_64 => "x86-64",
        EM_AARCH64 => "AArch64",
        EM_386 => "i386",
        EM_ARM => "ARM",
        EM_RISCV => "RISC-V",
        EM_PPC64 => "PowerPC64",
        EM_S390 => "S/390",
        _ => "an unsupported machine",
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for &'static Platform {
    type Err = UnknownPlatform;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_row_back() {
        for p in PLATFORMS {
            assert_eq!(Platform::parse(&p.to_string()).unwrap(), p);
            assert_eq!(Platform::for_rust_target(p.rust_target).unwrap(), p);
        }
    }

    #[test]
    fn normalises_aliases_and_refuses_unknown() {
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().architecture,
            "arm64"
        );
        assert_eq!(Platform::parse("linux/arm").unwrap().variant, Some("v7"));
        let err = Platform::parse("linux/mips").unwrap_err();
        assert!(err.to_string().contains("linux/amd64"), "{err}");
    }

    #[test]
    fn rust_targets_are_unique() {
        let mut t: Vec<_> = PLATFORMS.iter().map(|p| p.rust_target).collect();
        t.sort();
        t.dedup();
        assert_eq!(t.len(), PLATFORMS.len());
    }
}
