//! The command line describing itself: shell completions, the man page and the guide's reference
//! tables, all generated from the clap definition, so none of them can drift from `--help`.

use std::io::Write;

use anyhow::{bail, Context};
use clap::{Arg, ArgAction, Command};

/// The commands a user runs: every visible subcommand (not clap's `help`).
pub fn commands(root: &Command) -> impl Iterator<Item = &Command> {
    root.get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
}

/// The visible flags and positionals of a command (not `--help`/`--version`).
pub fn args(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|a| {
        !a.is_hide_set() && !matches!(a.get_action(), ArgAction::Help | ArgAction::Version)
    })
}

/// The command line as it is parsed, with the global flags propagated to every subcommand.
fn built(mut root: Command) -> Command {
    root.build();
    root
}

/// `ironstar completions SHELL`: the completion script for `bin_name`.
pub fn completions(
    root: Command,
    shell: clap_complete::Shell,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut root = root;
    let bin = root.get_bin_name().unwrap_or("ironstar").to_string();
    clap_complete::generate(shell, &mut root, bin, out);
    Ok(())
}

/// `ironstar man`: one page, ironstar(1), with a section per command (its usage, what it does and
/// every flag), so `ironstar man | man -l -` is the whole reference.
pub fn man(root: Command, out: &mut dyn Write) -> anyhow::Result<()> {
    let root = built(root);
    let top = clap_mangen::Man::new(root.clone());
    top.render_title(out)?;
    top.render_name_section(out)?;
    top.render_synopsis_section(out)?;
    top.render_description_section(out)?;
    top.render_options_section(out)?;
    // clap_mangen's own list names a page per command (ironstar-build(1)); here they are sections.
    writeln!(out, ".SH COMMANDS")?;
    for cmd in commands(&root) {
        let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
        writeln!(
            out,
            ".TP\n\\fBironstar {}\\fR\n{}",
            cmd.get_name(),
            roff_text(&about)
        )?;
    }
    for cmd in commands(&root) {
        let name = format!("ironstar {}", cmd.get_name());
        let page = clap_mangen::Man::new(cmd.clone());
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        let mut part = Vec::new();
        page.render_synopsis_section(&mut part)?;
        page.render_description_section(&mut part)?;
        page.render_options_section(&mut part)?;
        // The command's own sections become subsections of its section.
        let part = String::from_utf8(part)?.replace(".SH ", ".SS ");
        out.write_all(part.as_bytes())?;
    }
    top.render_version_section(out)?;
    Ok(())
}

/// Plain text as a roff line: backslashes and dashes escaped, no request at its start.
fn roff_text(text: &str) -> String {
    let text = one_paragraph(text).replace('\\', "\\e").replace('-', "\\-");
    match text.starts_with(['.', '\'']) {
        true => format!("\\&{text}"),
        false => text,
    }
}

/// `ironstar help-markdown COMMAND`: the guide's reference block of one command (usage and a table
/// of its arguments), as docs/src/reference/COMMAND.md carries it between its markers.
pub fn markdown(root: Command, name: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let root = built(root);
    let Some(cmd) = commands(&root).find(|c| c.get_name() == name) else {
        let names: Vec<_> = commands(&root).map(|c| c.get_name()).collect();
        bail!("no command `{name}` (commands: {})", names.join(", "));
    };
    let mut cmd = cmd.clone().bin_name(format!("ironstar {name}"));
    let usage = cmd.render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    writeln!(out, "```text\n{usage}\n```\n")?;
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        writeln!(out, "{}\n", one_paragraph(&about.to_string()))?;
    }
    writeln!(out, "| argument | environment | default | what it does |")?;
    writeln!(out, "|---|---|---|---|")?;
    // -v and -q belong to every command: the reference's index page has them.
    for arg in args(&cmd).filter(|a| !a.is_global_set()) {
        writeln!(
            out,
            "| {} | {} | {} | {} |",
            cell(&spelling(arg)),
            arg.get_env()
                .map(|e| format!("`{}`", e.to_string_lossy()))
                .unwrap_or_default(),
            cell(&defaults(arg)),
            cell(&escape(&one_paragraph(&help(arg))))
        )
        .context("writing the reference")?;
    }
    Ok(())
}

/// How an argument is written: `-t, --tag <TAG>`, `[IMAGE_FILE]`.
fn spelling(arg: &Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|v| {
            v.iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()));
    if arg.is_positional() {
        let name = value.trim_start_matches('<').trim_end_matches('>');
        return match arg.is_required_set() {
            true => format!("`{name}`"),
            false => format!("`[{name}]`"),
        };
    }
    let mut names = Vec::new();
    if let Some(s) = arg.get_short() {
        names.push(format!("-{s}"));
    }
    if let Some(l) = arg.get_long() {
        names.push(format!("--{l}"));
    }
    let takes_value = arg.get_action().takes_values();
    match takes_value {
        true => format!("`{} {value}`", names.join(", ")),
        false => format!("`{}`", names.join(", ")),
    }
}

fn defaults(arg: &Arg) -> String {
    let values: Vec<_> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    match values.is_empty() || !arg.get_action().takes_values() {
        true => String::new(),
        false => format!("`{}`", values.join(",")),
    }
}

fn help(arg: &Arg) -> String {
    arg.get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default()
}

/// Help text as one paragraph (clap wraps long help at the source's line breaks).
fn one_paragraph(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prose that markdown shows as written: `<name>` is not an HTML tag, `*` not emphasis.
/// Code spans (between backticks) are left as they are.
fn escape(text: &str) -> String {
    let parts = text.split('`').enumerate().map(|(i, part)| match i % 2 {
        0 => part
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('*', "\\*"),
        _ => part.to_string(),
    });
    parts.collect::<Vec<_>>().join("`")
}

/// Text that is safe in a markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Every command and every flag of each (`--cargo`, `-t`), as the user types them.
    fn words() -> Vec<String> {
        let root = super::built(super::super::Cli::command());
        let mut words = Vec::new();
        for arg in super::args(&root) {
            words.extend(arg.get_long().map(|l| format!("--{l}")));
        }
        for cmd in super::commands(&root) {
            words.push(cmd.get_name().to_string());
            for arg in super::args(cmd) {
                words.extend(arg.get_long().map(|l| format!("--{l}")));
                words.extend(arg.get_short().map(|s| format!("-{s}")));
            }
        }
        words
    }

    fn missing(text: &str, words: &[String]) -> Vec<String> {
        words
            .iter()
            .filter(|w| !text.contains(w.as_str()))
            .cloned()
            .collect()
    }

    #[test]
    fn every_command_and_flag_is_in_the_man_page() {
        let mut page = Vec::new();
        super::man(super::super::Cli::command(), &mut page).unwrap();
        // roff writes a dash as `\-`.
        let text = String::from_utf8(page).unwrap().replace("\\-", "-");
        let words = words();
        assert!(words.contains(&"--cargo".to_string()) && words.contains(&"completions".into()));
        assert_eq!(missing(&text, &words), Vec::<String>::new());
        assert!(text.contains(".SH \"IRONSTAR BUILD\""), "{text}");
    }

    #[test]
    fn every_command_and_flag_is_in_each_completion_script() {
        use clap_complete::Shell;
        let words = words();
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let mut script = Vec::new();
            super::completions(super::super::Cli::command(), shell, &mut script).unwrap();
            let text = String::from_utf8(script).unwrap();
            // fish spells a flag without its dashes (`-l cargo`, `-s t`).
            let text = match shell {
                Shell::Fish => text.replace("-l ", "--").replace("-s ", "-"),
                _ => text,
            };
            assert_eq!(missing(&text, &words), Vec::<String>::new(), "{shell}");
        }
    }
}
