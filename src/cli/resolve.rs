//! `ironstar resolve` flags and the glue from them to [`ironstar::resolve`], the build and the
//! push (or, with `--local`, [`ironstar::load`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Context;
use ironstar::resolve;

use super::build::{self, BuildArgs};
use super::push::RegistryArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct ResolveArgs {
    /// A YAML file, a directory (every *.yaml and *.yml under it) or `-` (standard input)
    /// whose `ironstar://NAME` references are replaced (repeatable).
    #[arg(
        id = "yaml_files",
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true
    )]
    pub files: Vec<PathBuf>,
    /// Load each image into podman (else docker) for this machine's platform instead of
    /// pushing it; references become NAME:TAG.
    #[arg(long)]
    pub local: bool,
    #[command(flatten)]
    pub build: BuildArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Read the YAML, build and publish exactly the images it references, print it resolved.
pub fn run(mut args: ResolveArgs, quiet: bool) -> anyhow::Result<()> {
    let files = resolve::read_inputs(&args.files)?;
    let wanted = resolve::names(&files);
    let cargo = &mut args.build.cargo_args;
    // No package named: any member of the workspace may be referenced.
    if cargo.packages.is_empty() && cargo.bins.is_empty() {
        cargo.workspace = true;
    }
    let request = args.build.request();
    let planned = request.plan()?;
    let known: BTreeSet<String> = planned.iter().map(|p| p.spec.name.clone()).collect();
    resolve::check_known(&files, &known)?;
    let planned = planned
        .into_iter()
        .filter(|p| wanted.contains(&p.spec.name))
        .collect::<Vec<_>>();
    if !args.local {
        let specs = planned.iter().map(|p| &p.spec);
        ironstar::publish::one_repository_each(specs, args.registry.repository.as_deref())?;
    }
    let images = match planned.is_empty() {
        true => BTreeMap::new(),
        false => {
            let resolved = request.build(planned)?;
            let signer = args.build.sign.signer()?;
            let repository = args.registry.repository.as_deref();
            let built =
                build::build_resolved(&args.build, &request, resolved, signer, repository, quiet)?;
            match args.local {
                true => load_local(&built)?,
                false => publish(&built, &args, quiet)?,
            }
        }
    };
    print!("{}", resolve::render_all(&files, &images));
    Ok(())
}

/// Push every image; its reference is `REGISTRY/REPO@DIGEST`.
fn publish(
    built: &[build::BuiltImage],
    args: &ResolveArgs,
    quiet: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    let refs = super::publish::push_built(built, &args.build, &args.registry, quiet)?;
    // The references go into the YAML on stdout, not a line each before it.
    super::push::write_refs(&refs, &args.registry)?;
    Ok(refs.into_iter().collect())
}

/// Load every image into the local engine; its reference is `NAME:TAG`.
fn load_local(built: &[build::BuiltImage]) -> anyhow::Result<BTreeMap<String, String>> {
    let engine = ironstar::load::find_engine().ok_or(ironstar::load::LoadError::NoEngine)?;
    let platform = ironstar::archive::host_platform()
        .context("this machine's architecture is not one ironstar packs for")?;
    let mut refs = BTreeMap::new();
    for b in built {
        let tag = b.report.tags.first().map_or("latest", String::as_str);
        let name = format!("{}:{tag}", b.spec.name);
        tracing::info!("loading {platform} of {} into {engine}", b.spec.name);
        ironstar::load::load_layout(engine, &b.report.output, platform, &name)?;
        refs.insert(b.spec.name.clone(), name);
    }
    Ok(refs)
}
