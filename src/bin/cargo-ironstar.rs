//! `cargo ironstar …`: ironstar as a cargo subcommand (cargo runs `cargo-ironstar ironstar …`,
//! as it runs cargo-zigbuild), with ironstar's flags. The same command line as `ironstar`: its
//! module, compiled into this binary too.

use std::process::ExitCode;

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> ExitCode {
    let mut args: Vec<_> = std::env::args_os().collect();
    // Run by cargo, the subcommand's name comes first; run directly, it does not.
    if args.get(1).is_some_and(|a| a == "ironstar") {
        args.remove(1);
    }
    cli::main("cargo ironstar", args)
}
