//! The rootfs items an image definition may ask for (`rootfs = ["ca-certificates", …]`, or
//! `--rootfs`): what a `FROM scratch` service usually lacks, from data pinned in ironstar's
//! Cargo.lock, never from the build machine. Their files are made by [`crate::rootfs`].

use std::fmt;

/// One rootfs item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RootfsItem {
    /// `/etc/ssl/certs/ca-certificates.crt`: Mozilla's roots, PEM; `SSL_CERT_FILE` points at it.
    CaCertificates,
    /// `/usr/share/zoneinfo`: the compiled IANA time zones (TZif) and `zone1970.tab`.
    Tzdata,
    /// `/etc/passwd` and `/etc/group` (root 0, nobody 65534, nonroot 65532), `/home/nonroot`
    /// owned by 65532, and the image's user 65532:65532 unless `user` is set.
    Nonroot,
    /// `/tmp`, mode 1777.
    Tmp,
}

impl RootfsItem {
    /// Every item, in the order they are listed and labelled.
    pub const ALL: [RootfsItem; 4] = [
        RootfsItem::CaCertificates,
        RootfsItem::Tzdata,
        RootfsItem::Nonroot,
        RootfsItem::Tmp,
    ];

    /// The item's name in a definition and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RootfsItem::CaCertificates => "ca-certificates",
            RootfsItem::Tzdata => "tzdata",
            RootfsItem::Nonroot => "nonroot",
            RootfsItem::Tmp => "tmp",
        }
    }

    /// What the item puts in the image, in a few words.
    pub fn holds(self) -> &'static str {
        match self {
            RootfsItem::CaCertificates => {
                "Mozilla's CA roots as PEM at /etc/ssl/certs/ca-certificates.crt, SSL_CERT_FILE set to it unless env sets it"
            }
            RootfsItem::Tzdata => {
                "the IANA time zones, compiled (TZif), under /usr/share/zoneinfo, with zone1970.tab"
            }
            RootfsItem::Nonroot => {
                "/etc/passwd and /etc/group with root (0), nobody (65534) and nonroot (65532), /home/nonroot owned by 65532, user 65532:65532 unless `user` is set"
            }
            RootfsItem::Tmp => "/tmp, mode 1777",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|i| i.name()).collect();
                format!(
                    "unknown rootfs item `{s}`: the items are {}",
                    names.join(", ")
                )
            })
    }

    /// Items as a definition lists them: in [`ALL`](Self::ALL)'s order, each once.
    pub fn normalise(mut items: Vec<RootfsItem>) -> Vec<RootfsItem> {
        items.sort();
        items.dedup();
        items
    }
}

impl fmt::Display for RootfsItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--rootfs ITEM[,ITEM…]`, one item at a time (clap splits on commas).
pub fn parse_rootfs_flag(s: &str) -> Result<RootfsItem, String> {
    RootfsItem::parse(s.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_items() {
        for i in RootfsItem::ALL {
            assert_eq!(RootfsItem::parse(i.name()), Ok(i));
        }
        let e = RootfsItem::parse("certs").unwrap_err();
        assert!(e.contains("ca-certificates, tzdata, nonroot, tmp"), "{e}");
        let n = RootfsItem::normalise(vec![RootfsItem::Tmp, RootfsItem::Nonroot, RootfsItem::Tmp]);
        assert_eq!(n, [RootfsItem::Nonroot, RootfsItem::Tmp]);
    }
}
