//! `ironstar resolve`: the `ironstar://NAME` references in YAML files, and the files again with
//! each reference replaced by the image it names (`REPO@sha256:…`), every other byte kept.
//!
//! A YAML parser (saphyr-parser, YAML 1.2) finds the scalars, with their spans, in every
//! document of a file; a scalar whose value is exactly `ironstar://NAME` (plain, quoted or a
//! block scalar) is a reference. Only the reference's text inside the scalar's span is replaced,
//! so comments, order, quoting and layout stay as they were: the file is never re-serialised.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Parser};

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
            let mut found = Vec::new();
            yaml_files(input, &mut found)?;
            if found.is_empty() {
                return Err(ResolveError::Empty(input.clone()));
            }
            found.sort();
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

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ResolveError> {
    let io = |source| ResolveError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
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
        let Event::Scalar(value, ..) = event else {
            continue;
        };
        // Prose that happens to start with the scheme is not a reference.
        let Some(name) = value
            .strip_prefix(SCHEME)
            .filter(|n| !n.contains(char::is_whitespace))
        else {
            continue;
        };
        let (start, end) = (byte(span.start.index()), byte(span.end.index()));
        let literal = format!("{SCHEME}{name}");
        let line = span.start.line();
        if !is_image_name(name) {
            return Err(ResolveError::BadName {
                file: file.to_string(),
                line,
                name: name.to_string(),
            });
        }
        let Some(offset) = text[start..end].find(&literal) else {
            return Err(ResolveError::Escaped {
                file: file.to_string(),
                line,
                name: name.to_string(),
            });
        };
        // A block scalar's span starts at its indicator (`|`): count the lines before the text.
        let line = line + text[start..start + offset].matches('\n').count();
        found.push(Reference {
            name: name.to_string(),
            line,
            span: start + offset..start + offset + literal.len(),
        });
    }
    Ok(found)
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
        other: ironstar://only prose\n\
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
                ("api", 7),
                ("block", 9)
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

    #[test]
    fn several_files_are_one_stream() {
        let a = YamlFile::parse("a".into(), "a: ironstar://x".into()).unwrap();
        let b = YamlFile::parse("b".into(), "b: 1\n".into()).unwrap();
        let images = BTreeMap::from([("x".to_string(), "R".to_string())]);
        assert_eq!(render_all(&[a, b], &images), "a: R\n---\nb: 1\n");
    }
}
