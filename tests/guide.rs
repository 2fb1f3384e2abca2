//! The guide (docs/src, an mdBook) as a reader meets it: every ```sh block runs as written (twins:
//! a free port for 5000, a private /tmp, the fixture binaries for a release build of ironstar,
//! no arm64 `podman run` without binfmt), except the few fenced ```sh,no-run whose first line says
//! why; each command's reference page is what the CLI generates; the README stays short and its
//! blocks are run here or by tests/readme.rs; the man page, the bash completion and `--version`
//! work as the guide says.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::common::*;
use support::workdir::Workdir;

/// A fenced ```sh block of a markdown file.
#[derive(Debug)]
struct Block {
    /// `getting-started.md:42`: the file (under docs/src) and the fence's line.
    place: String,
    /// `sh` or `sh,no-run`.
    fence: String,
    /// The heading above it, without its `#`s.
    section: String,
    text: String,
}

/// The chapters, docs/src/**/*.md, in path order.
fn chapters() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            match path.is_dir() {
                true => walk(&path, out),
                false if path.extension().is_some_and(|e| e == "md") => out.push(path),
                false => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("docs/src"), &mut out);
    out.sort();
    out
}

fn sh_blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let name = file
        .strip_prefix(repo().join("docs/src"))
        .unwrap_or(file)
        .display()
        .to_string();
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line) {
            (None, l) if l.starts_with('#') => section = l.trim_start_matches('#').trim().into(),
            (None, l) if l == "```sh" || l.starts_with("```sh,") => {
                open = Some(Block {
                    place: format!("{name}:{}", i + 1),
                    fence: l[3..].to_string(),
                    section: section.clone(),
                    text: String::new(),
                })
            }
            (Some(_), "```") => blocks.push(open.take().unwrap()),
            (Some(b), l) => {
                b.text.push_str(l);
                b.text.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

fn guide_blocks() -> Vec<Block> {
    chapters().iter().flat_map(|f| sh_blocks(f)).collect()
}

/// Blocks another test runs as written (with its own twins and checks): chapter, section, test.
const RUN_ELSEWHERE: &[(&str, &str, &str)] = &[
    (
        "workspaces.md",
        "Workspaces and resolve",
        "tests/workspace.rs",
    ),
    ("getting-started.md", RUN_THE_IMAGE, "tests/guide.rs"),
];

const RUN_THE_IMAGE: &str = "Run ironstar's own image";

/// The first sh block under the heading `section` of a chapter.
fn chapter_block(chapter: &str, section: &str) -> String {
    let blocks = sh_blocks(&repo().join("docs/src").join(chapter));
    let b = blocks
        .into_iter()
        .find(|b| b.section == section && b.fence == "sh");
    b.unwrap_or_else(|| panic!("{chapter} has no sh block under `{section}`"))
        .text
}

#[test]
fn every_no_run_block_says_why_in_its_first_line() {
    let blocks = guide_blocks();
    assert!(blocks.len() > 10, "{blocks:?}");
    for b in blocks.iter().filter(|b| b.fence != "sh") {
        assert_eq!(b.fence, "sh,no-run", "{}: unknown fence", b.place);
        let first = b.text.lines().next().unwrap_or("");
        assert!(
            first.starts_with("# ") && first.len() > 12,
            "{}: a no-run block's first line is a `# reason`: {first:?}",
            b.place
        );
    }
}

/// The install block: the script .ci/run runs on a fresh machine (not run again by a test).
const INSTALL: &str = "sh scripts/install-deps.sh\ncargo install --locked --path .\n";

/// A block as it runs here: a free port for 5000; a release build of ironstar (`--cargo` on one
/// of the repository's image files) replaced by the fixture binaries; without binfmt_misc, no
/// `podman run` of an arm64 image (it cannot start: the guide says so).
fn twin(block: &str, port: u16) -> String {
    let f = fixtures();
    let binaries = format!(
        "--binary linux/amd64={} --binary linux/arm64={}",
        f.amd64.display(),
        f.arm64.display()
    );
    let mut out = String::new();
    let mut arm64_loaded = false;
    for line in block
        .replace("127.0.0.1:5000", &format!("127.0.0.1:{port}"))
        .lines()
    {
        let mut line = line.to_string();
        if line.contains("images/") && line.contains(" --cargo") {
            line = line.replacen(" --cargo", &format!(" {binaries}"), 1);
        }
        if !binfmt_arm64() {
            let runs = line.contains("podman run");
            if runs && (arm64_loaded || line.contains("linux/arm64")) {
                eprintln!("no qemu-aarch64 in binfmt_misc: skipped `{line}`");
                arm64_loaded = false;
                continue;
            }
            arm64_loaded = line.contains("load") && line.contains("linux/arm64") && !runs;
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Each runnable block in a fresh working directory (the repository's images/, a layout of the
/// fixture binaries, a private podman); every failure is reported, not only the first.
#[test]
fn every_sh_block_of_the_guide_runs() {
    require_tool("docker-registry", "docker-registry");
    require_tool("curl", "curl");
    require_tool("jq", "jq");
    let mut failed = Vec::new();
    let mut ran = 0;
    for b in guide_blocks().iter().filter(|b| b.fence == "sh") {
        let chapter = b.place.split(':').next().unwrap();
        if RUN_ELSEWHERE
            .iter()
            .any(|(f, s, _)| *f == chapter && *s == b.section)
        {
            continue;
        }
        if b.text == INSTALL {
            let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
            assert!(
                ci.contains(&format!("\n{INSTALL}")),
                ".ci/run does not run {}",
                b.place
            );
            continue;
        }
        let script = twin(&b.text, support::free_port());
        let result = std::panic::catch_unwind(|| Workdir::new().sh(&script));
        match result {
            Ok(_) => ran += 1,
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "panicked".into());
                failed.push(format!("{}:\n{msg}", b.place));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    assert!(ran >= 8, "only {ran} blocks ran");
}

#[test]
fn blocks_run_elsewhere_are_read_by_their_test() {
    for (chapter, section, test) in RUN_ELSEWHERE {
        let source = std::fs::read_to_string(repo().join(test)).unwrap();
        assert!(
            source.contains(chapter),
            "{test} does not read docs/src/{chapter}"
        );
        chapter_block(chapter, section);
    }
}

/// The visible commands, from `ironstar --help`.
fn commands() -> Vec<String> {
    let help = ok(ironstar().arg("--help"));
    let list = &help[help.find("Commands:\n").expect("a command list")..];
    list.lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A wrapped description goes on further indented.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

const BEGIN: &str = "<!-- generated by `ironstar help-markdown";
const END: &str = "<!-- end of the generated part -->";

/// Each command's page carries `ironstar help-markdown COMMAND` between the markers, and
/// SUMMARY.md lists it. `IRONSTAR_BLESS=1 cargo test --test guide reference` rewrites the
/// generated parts (and makes a page for a new command).
#[test]
fn reference_pages_are_generated_from_the_command_line() {
    let bless = std::env::var_os("IRONSTAR_BLESS").is_some();
    let summary = std::fs::read_to_string(repo().join("docs/src/SUMMARY.md")).unwrap();
    let commands = commands();
    assert!(commands.len() >= 11, "{commands:?}");
    for name in &commands {
        let generated = ok(ironstar().args(["help-markdown", name]));
        let begin = format!("{BEGIN} {name}`: edit src/cli, then IRONSTAR_BLESS=1 cargo test --test guide reference -->");
        let part = format!("{begin}\n\n{generated}\n{END}\n");
        let path = repo().join(format!("docs/src/reference/{name}.md"));
        let page = std::fs::read_to_string(&path).unwrap_or_default();
        let current = page
            .find(BEGIN)
            .map(|s| &page[s..page.find(END).map_or(page.len(), |e| e + END.len() + 1)]);
        if bless {
            let new = match current {
                Some(old) => page.replace(old, &part),
                None => format!("# ironstar {name}\n\n{part}"),
            };
            std::fs::write(&path, new).unwrap();
            continue;
        }
        assert_eq!(
            current,
            Some(part.as_str()),
            "docs/src/reference/{name}.md is not what `ironstar help-markdown {name}` prints: \
             IRONSTAR_BLESS=1 cargo test --test guide reference"
        );
        assert!(
            summary.contains(&format!("(reference/{name}.md)")),
            "SUMMARY.md does not list reference/{name}.md"
        );
    }
}

/// The README's ```sh blocks, each with the `## ` section it is in.
fn readme_blocks() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut section = String::new();
    let mut out = Vec::new();
    for b in sh_blocks(&repo().join("README.md")) {
        let line: usize = b.place.rsplit(':').next().unwrap().parse().unwrap();
        for l in text.lines().take(line) {
            if let Some(s) = l.strip_prefix("## ") {
                section = s.to_string();
            }
        }
        out.push((section.clone(), b.fence.clone() + "\n" + &b.text));
    }
    out
}

#[test]
fn the_readme_is_short_and_each_of_its_blocks_runs_somewhere() {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = text.lines().count();
    assert!(
        lines < 250,
        "README.md has {lines} lines: the guide is the place"
    );
    let guide: Vec<String> = guide_blocks()
        .into_iter()
        .map(|b| b.fence + "\n" + &b.text)
        .collect();
    for (section, block) in readme_blocks() {
        // tests/readme.rs runs these two sections' blocks (and .ci/run the install block).
        if section.starts_with("Quickstart") || section.starts_with("Pushing") {
            continue;
        }
        assert!(
            guide.contains(&block),
            "README `## {section}`: a block that is not the guide's (which the tests run):\n{block}"
        );
    }
}

#[test]
fn man_page_renders_with_every_command() {
    require_tool("man", "man-db");
    let o = run(Command::new("sh")
        .args([
            "-c",
            "\"$0\" man | man -l -",
            env!("CARGO_BIN_EXE_ironstar"),
        ])
        .env("MANWIDTH", "100")
        .env("LANG", "C.UTF-8"));
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success() && err.is_empty(), "{err}");
    for name in commands() {
        let heading = format!("\nIRONSTAR {}\n", name.to_uppercase());
        assert!(out.contains(&heading), "no {heading:?} in\n{out}");
    }
    assert!(out.contains("--compression-level <N>"), "{out}");
}

#[test]
fn bash_completion_completes_commands_and_flags() {
    require_tool("bash", "bash");
    let script = r#"source <("$IRONSTAR" completions bash)
COMP_WORDS=(ironstar pu); COMP_CWORD=1; _ironstar ironstar pu ironstar; echo "${COMPREPLY[*]}"
COMP_WORDS=(ironstar build --compr); COMP_CWORD=2; _ironstar ironstar --compr build; echo "${COMPREPLY[*]}"
COMP_WORDS=(ironstar completions ''); COMP_CWORD=2; _ironstar ironstar '' completions; echo "${COMPREPLY[*]}"
complete -p ironstar"#;
    let out = ok(Command::new("bash")
        .args(["-c", script])
        .env("IRONSTAR", env!("CARGO_BIN_EXE_ironstar")));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "push publish", "{out}");
    assert_eq!(lines[1], "--compression --compression-level", "{out}");
    for shell in ["bash", "elvish", "fish", "powershell", "zsh"] {
        assert!(lines[2].split(' ').any(|w| w == shell), "{out}");
    }
    assert!(
        lines[3].contains(" -F _ironstar ") && lines[3].ends_with(" ironstar"),
        "{out}"
    );
}

/// `ironstar --version` names the commit it was built from, dated in UTC; the packaged crate
/// (no repository) says the version alone, which .ci/run checks.
#[test]
fn version_names_the_commit_it_was_built_from() {
    require_tool("git", "git");
    let git = |args: &[&str]| ok(Command::new("git").current_dir(repo()).args(args));
    let head = git(&["rev-parse", "HEAD"]);
    let time: i64 = git(&["log", "-1", "--format=%ct"]).trim().parse().unwrap();
    let date = time::OffsetDateTime::from_unix_timestamp(time)
        .unwrap()
        .date();
    let line = ok(ironstar().arg("--version"));
    let inner = line
        .strip_prefix(&format!("ironstar {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|l| l.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("{line:?}"));
    let (hash, day) = inner.split_once(' ').unwrap();
    assert!(
        hash.len() >= 7 && head.starts_with(hash),
        "{line:?} for {head}"
    );
    assert_eq!(day, date.to_string(), "{line:?}");
}

#[test]
fn run_the_image_block_runs_as_written() {
    require_tool("podman", "podman");
    require_tool("skopeo", "skopeo");
    let w = Workdir::new();
    let mut block = chapter_block("getting-started.md", RUN_THE_IMAGE);
    if !binfmt_arm64() {
        // Without binfmt the guide says podman cannot run arm64: drop that one `podman run`.
        eprintln!("binfmt_misc has no qemu-aarch64: the arm64 `podman run` line is skipped");
        let arm = block
            .find("--platform linux/arm64\n")
            .expect("the arm64 load line");
        let run_at = arm + block[arm..].find("podman run").unwrap();
        let end = run_at + block[run_at..].find('\n').unwrap() + 1;
        block.replace_range(run_at..end, "");
    }
    let out = w.sh(&block);
    // The fixture binary stands in for ironstar: it says which machine it runs on.
    let expected = match binfmt_arm64() {
        true => vec!["hello from x86_64", "hello from aarch64"],
        false => vec!["hello from x86_64"],
    };
    let hellos: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("hello from"))
        .collect();
    assert_eq!(hellos, expected, "{out}");
    // skopeo reads the oci-archive as the layout's own index.
    let layout = w.path().join("target/oci/ironstar");
    let top = json(&std::fs::read(layout.join("index.json")).unwrap());
    let digest = top["manifests"][0]["digest"].as_str().unwrap();
    let index = String::from_utf8(blob(&layout, digest)).unwrap();
    assert!(out.contains(&index), "no index {index} in\n{out}");
}
