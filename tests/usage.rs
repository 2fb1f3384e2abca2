//! The command line as a user meets it: a usage error is one line that names what is missing,
//! `resolve` takes the `--cargo` its help talks about, and `resolve` refuses YAML it would leave
//! an `ironstar://` in, before anything is built.

mod support;

use support::common::{ironstar, run, stderr, stdout};

/// The one stderr line of a refused command line (exit 2).
fn usage_error(args: &[&str]) -> String {
    let o = run(ironstar().args(args));
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line:\n{err}");
    err.trim_end().to_string()
}

#[test]
fn a_missing_required_argument_is_named_on_the_one_line() {
    let cases: [(&[&str], &str); 4] = [
        (&["verify"], "--key <PUB.pem>, <REFERENCE>"),
        (&["verify", "--key", "k.pub"], "<REFERENCE>"),
        (&["check-binary"], "--platform <PLATFORM>, <BINARY>..."),
        (&["resolve"], "--filename <FILE|DIR|->"),
    ];
    for (args, missing) in cases {
        assert_eq!(
            usage_error(args),
            format!(
                "ironstar: error: the following required arguments were not provided: \
                 {missing} (see --help)"
            )
        );
    }
}

#[test]
fn resolve_accepts_the_cargo_flag_its_help_describes() {
    let o = run(ironstar().args(["resolve", "--cargo", "--help"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let help = stdout(&o);
    assert!(help.contains("--cargo"), "{help}");
    assert!(help.contains("Implied"), "{help}");
}

/// A block scalar with the reference inside a longer text: one line naming the file and the
/// reference's line, before cargo runs (no workspace here for it to find).
#[test]
fn resolve_refuses_a_reference_inside_a_block_of_text() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("job.yaml");
    std::fs::write(
        &yaml,
        "kind: Job\nargs: |\n  --image\n  ironstar://api\nimage: >\n  ironstar://api\n",
    )
    .unwrap();
    let o = run(ironstar()
        .current_dir(dir.path())
        .args(["resolve", "-f"])
        .arg(&yaml));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "ironstar: error: {}:4: `ironstar://` inside a longer text is not replaced; a \
             reference is a value of its own (`image: ironstar://NAME`)",
            yaml.display()
        )
    );
    assert_eq!(stdout(&o), "");
}
