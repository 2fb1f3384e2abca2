//! `ironstar resolve`: the `ironstar://NAME` references in YAML files, and the files again with
//! each reference replaced by the image it names (`REPO@sha256:…`), every other byte kept.
//!
//! A YAML parser (saphyr-parser, YAML 1.2) finds the scalars, with their spans, in every
//! document of a file; a scalar whose value is exactly `ironstar://NAME` (plain, quoted or a
//! block scalar, whose closing line breaks do not count) is a reference. A scalar holding the
//! scheme in any other way is refused, naming its line: no `ironstar://` is left in the data of
//! what is printed (comments are not data, and stay as written). Only the reference's text
//! inside the scalar's span is replaced, so comments, order, quoting and layout stay as they
//! were: the file is never re-serialised.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Parser, ScalarStyle};

/// What a reference starts with.
pub const SCHEME: &str = "ironstar://";

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: not YAML: {message}")]
    Yaml {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}:{line}: `{SCHEME}{name}` is written with escapes; write it as plain text")]
    Escaped {
        file: String,
        line: usize,
        name: String,
    },
    #[error("{file}:{line}: `{SCHEME}{name}`: an image name is lowercase letters, digits, `.`, `_` and `-`")]
    BadName {
        file: String,
        line: usize,
        name: String,
    },
    #[error("{file}:{line}: `{SCHEME}` inside a longer text is not replaced; a reference is a value of its own (`image: {SCHEME}NAME`)")]
    Embedded { file: String, line: usize },
    #[error("{file}:{line}: no image named `{name}` (images: {known})")]
    Unknown {
        file: String,
        line: usize,
        name: String,
        known: String,
    },
    #[error("{}: no *.yaml or *.yml file in it", .0.display())]
    Empty(PathBuf),
}

/// One `ironstar://NAME` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    /// 1-based.
    pub line: usize,
    /// The bytes of `ironstar://NAME` in the file's text.
    pub span: Range<usize>,
}

/// One YAML file (or standard input), read, and its references.
#[derive(Debug, Clone)]
pub struct YamlFile {
    /// `-` for standard input.
    pub name: String,
    pub text: String,
    pub references: Vec<Reference>,
}

/// Read every input: `-` is standard input, a directory every `*.yaml`/`*.yml` under it
/// (recursively, in path order), anything else a file. Each file's references are found.
pub fn read_inputs(inputs: &[PathBuf]) -> Result<Vec<YamlFile>, ResolveError> {
    let mut files = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| ResolveError::Io {
                    path: input.clone(),
                    source,
                })?;
            files.push(YamlFile::parse("-".into(), text)?);
            continue;
        }
        let paths = if input.is_dir() {
            let found = yaml_files(input)?;
            if found.is_empty() {
                return Err(ResolveError::Empty(input.clone()));
            }
            found
        } else {
            vec![input.clone()]
        };
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| ResolveError::Io {
                path: path.clone(),
                source,
            })?;
            files.push(YamlFile::parse(path.display().to_string(), text)?);
        }
    }
    Ok(files)
}

/// Every `*.yaml`/`*.yml` under `dir`, in path order, each real file once: a directory or file
/// reached again through a symbolic link (a loop, or two links to one place) is skipped where
/// it comes later in path order, so a loop costs one visit of each directory and is no error.
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, ResolveError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    walk(dir, &mut seen, &mut out)?;
    Ok(out)
}

fn walk(
    dir: &Path,
    seen: &mut BTreeSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<(), ResolveError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ResolveError::Io { path, source }
    };
    if !seen.insert(dir.canonicalize().map_err(io(dir))?) {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io(dir))?;
    // Depth first in name order is path order, so the first path to a real file is the one kept.
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, seen, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            // A dangling link is read (and named) as it is.
            let real = path.canonicalize().unwrap_or_else(|_| path.clone());
            if seen.insert(real) {
                out.push(path);
            }
        }
    }
    Ok(())
}

impl YamlFile {
    /// Find the references of `text`, named `name` in errors.
    pub fn parse(name: String, text: String) -> Result<Self, ResolveError> {
        let references = find(&name, &text)?;
        Ok(YamlFile {
            name,
            text,
            references,
        })
    }

    /// The text with each reference replaced by `images[NAME]`.
    pub fn render(&self, images: &BTreeMap<String, String>) -> String {
        let mut out = String::with_capacity(self.text.len());
        let mut at = 0;
        for r in &self.references {
            out.push_str(&self.text[at..r.span.start]);
            out.push_str(&images[&r.name]);
            at = r.span.end;
        }
        out.push_str(&self.text[at..]);
        out
    }
}

/// The references of one file's text.
pub fn find(file: &str, text: &str) -> Result<Vec<Reference>, ResolveError> {
    // The parser counts characters; the text is sliced by bytes.
    let bytes_at: Vec<usize> = text
        .char_indices()
        .map(|(b, _)| b)
        .chain([text.len()])
        .collect();
    let byte = |chars: usize| bytes_at[chars.min(bytes_at.len() - 1)];
    let mut found = Vec::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| ResolveError::Yaml {
            file: file.to_string(),
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let Event::Scalar(value, style, ..) = event else {
            continue;
        };
        if value.contains(SCHEME) {
            let scalar = Scalar {
                text,
                bytes: byte(span.start.index())..byte(span.end.index()),
                line: span.start.line(),
                value: &value,
                block: matches!(style, ScalarStyle::Literal | ScalarStyle::Folded),
            };
            found.push(scalar.reference(file)?);
        }
    }
    Ok(found)
}

/// A scalar whose value holds the scheme.
struct Scalar<'a> {
    text: &'a str,
    /// Its span in `text` (a block scalar's starts at its text, after the indicator's line).
    bytes: Range<usize>,
    /// Of its first byte, 1-based.
    line: usize,
    value: &'a str,
    /// `|` or `>`: the value ends with its line breaks, which are not part of a reference.
    block: bool,
}

impl Scalar<'_> {
    /// The reference this scalar is, or why it is none.
    fn reference(&self, file: &str) -> Result<Reference, ResolveError> {
        let source = &self.text[self.bytes.clone()];
        let line = |offset: usize| self.line + source[..offset].matches('\n').count();
        let exact = match self.block {
            true => self.value.trim_end_matches('\n'),
            false => self.value,
        };
        let file = file.to_string();
        let Some(name) = exact
            .strip_prefix(SCHEME)
            .filter(|n| !n.contains(char::is_whitespace))
        else {
            let line = line(source.find(SCHEME).unwrap_or(0));
            return Err(ResolveError::Embedded { file, line });
        };
        let literal = format!("{SCHEME}{name}");
        let at = source.find(&literal);
        let name = name.to_string();
        if !is_image_name(&name) {
            let line = line(at.unwrap_or(0));
            return Err(ResolveError::BadName { file, line, name });
        }
        let Some(offset) = at else {
            let line = self.line;
            return Err(ResolveError::Escaped { file, line, name });
        };
        let start = self.bytes.start + offset;
        Ok(Reference {
            name,
            line: line(offset),
            span: start..start + literal.len(),
        })
    }
}

/// The image name grammar of definitions (a repository path component).
fn is_image_name(n: &str) -> bool {
    n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Every image name the files reference.
pub fn names(files: &[YamlFile]) -> BTreeSet<String> {
    files
        .iter()
        .flat_map(|f| f.references.iter().map(|r| r.name.clone()))
        .collect()
}

/// The first reference to a name not in `known`, as an error naming its file and line.
pub fn check_known(files: &[YamlFile], known: &BTreeSet<String>) -> Result<(), ResolveError> {
    for f in files {
        if let Some(r) = f.references.iter().find(|r| !known.contains(&r.name)) {
            let list: Vec<&str> = known.iter().map(String::as_str).collect();
            return Err(ResolveError::Unknown {
                file: f.name.clone(),
                line: r.line,
                name: r.name.clone(),
                known: if list.is_empty() {
                    "none".into()
                } else {
                    list.join(", ")
                },
            });
        }
    }
    Ok(())
}

/// Every file rendered, in order, as one YAML stream: each file as it is, a `---` line between
/// two files (after a newline if the first lacks one).
pub fn render_all(files: &[YamlFile], images: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("---\n");
        }
        out.push_str(&f.render(images));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# ironstar://not-a-reference (a comment), café ☕\n\
        image: ironstar://api   # plain, naïve\n\
        q: \"ironstar://worker\"\n\
        s: 'ironstar://api'\n\
        ---\n\
        - {a: ironstar://api, b: \"x\"}\n\
        - |-\n  ironstar://block\n";

    #[test]
    fn finds_scalars_and_replaces_only_their_text() {
        let f = YamlFile::parse("deploy/x.yaml".into(), TEXT.into()).unwrap();
        let names: Vec<(&str, usize)> = f
            .references
            .iter()
            .map(|r| (r.name.as_str(), r.line))
            .collect();
        assert_eq!(
            names,
            [
                ("api", 2),
                ("worker", 3),
                ("api", 4),
                ("api", 6),
                ("block", 8)
            ]
        );
        let images: BTreeMap<String, String> = [
            ("api", "r/a@sha256:1"),
            ("worker", "r/w@sha256:2"),
            ("block", "B"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let out = f.render(&images);
        let want = TEXT
            .replace("\"ironstar://worker\"", "\"r/w@sha256:2\"")
            .replace("image: ironstar://api", "image: r/a@sha256:1")
            .replace("'ironstar://api'", "'r/a@sha256:1'")
            .replace("a: ironstar://api", "a: r/a@sha256:1")
            .replace("  ironstar://block", "  B");
        assert_eq!(out, want);
        assert!(out.starts_with("# ironstar://not-a-reference"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let f = YamlFile::parse("a.yaml".into(), "x: 1\ny: ironstar://nope\n".into()).unwrap();
        let known = BTreeSet::from(["api".to_string()]);
        let e = check_known(&[f], &known).unwrap_err().to_string();
        assert_eq!(e, "a.yaml:2: no image named `nope` (images: api)");
        let e = YamlFile::parse("b.yaml".into(), "a: [\n".into())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("b.yaml:"), "{e}");
        let e = YamlFile::parse("c.yaml".into(), "a: \"ironstar:\\x2f/api\"\n".into())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.yaml:1:") && e.contains("escapes"), "{e}");
        let e = YamlFile::parse("d.yaml".into(), "a: b\nc: ironstar://Api\n".into())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("d.yaml:2:") && e.contains("lowercase"), "{e}");
    }

    /// Every block scalar style, the reference on its own line (a comment after the indicator
    /// naming another): replaced, the line breaks and the comment kept.
    #[test]
    fn block_scalars_are_references_whatever_their_chomping() {
        let text = "a: |\n  ironstar://api\nb: >\n  ironstar://api\n\n\
            c: |+\n  ironstar://api\n\nd: >- # ironstar://x in a comment\n    ironstar://api\n";
        let f = YamlFile::parse("b.yaml".into(), text.into()).unwrap();
        let lines: Vec<usize> = f.references.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 4, 7, 10]);
        let images = BTreeMap::from([("api".to_string(), "R@sha256:1".to_string())]);
        let out = f.render(&images);
        assert_eq!(out, text.replace("  ironstar://api", "  R@sha256:1"));
        assert!(out.contains("# ironstar://x in a comment"));
    }

    fn embedded() -> String {
        "`ironstar://` inside a longer text is not replaced; a reference is a value of its own \
         (`image: ironstar://NAME`)"
            .into()
    }

    /// A scalar holding the scheme other than as a whole value is refused at its line: never a
    /// printed file with an `ironstar://` left in its data.
    #[test]
    fn the_scheme_inside_text_is_refused_at_its_line() {
        let cases = [
            "a: 1\nb: |\n  run\n  ironstar://api\n",
            "a: 1\nb: >\n  x\n  ironstar://api\n",
            "a: 1\nb: >\n  ironstar://\n  api\n",
            "a: 1\nb: x\n\n  ironstar://api\n",
            "a: 1\nb: \"see\n  ironstar://api\"\n",
            "a: 1\nc: 2\nb: ironstar://only prose\n",
            "a: 1\nb: |2\n    ironstar://api\n",
        ];
        for (i, text) in cases.into_iter().enumerate() {
            let line = text
                .lines()
                .position(|l| l.contains("ironstar://"))
                .unwrap()
                + 1;
            let e = YamlFile::parse("t.yaml".into(), text.into()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("t.yaml:{line}: {}", embedded()),
                "case {i}"
            );
        }
    }

    /// Two symbolic-link loops and a second link to one file: each real file once, in path
    /// order, under its first path.
    #[test]
    fn a_directory_with_link_loops_reads_each_file_once() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("x/y")).unwrap();
        std::fs::write(d.join("a.yaml"), "a: 1\n").unwrap();
        std::fs::write(d.join("x/y/b.yml"), "b: 2\n").unwrap();
        symlink(d, d.join("x/y/top")).unwrap();
        symlink("..", d.join("x/up")).unwrap();
        symlink(d.join("a.yaml"), d.join("z.yaml")).unwrap();
        // Bounded: a walk that follows the loops would not end.
        let (tx, rx) = std::sync::mpsc::channel();
        let top = d.to_path_buf();
        std::thread::spawn(move || tx.send(read_inputs(&[top]).map_err(|e| e.to_string())));
        let files = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the walk ends")
            .unwrap();
        let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
        let want = [d.join("a.yaml"), d.join("x/y/b.yml")];
        assert_eq!(names, want.map(|p| p.display().to_string()));
    }

    #[test]
    fn several_files_are_one_stream() {
        let a = YamlFile::parse("a".into(), "a: ironstar://x".into()).unwrap();
        let b = YamlFile::parse("b".into(), "b: 1\n".into()).unwrap();
        let images = BTreeMap::from([("x".to_string(), "R".to_string())]);
        assert_eq!(render_all(&[a, b], &images), "a: R\n---\nb: 1\n");
    }
}
