//! `ironstar publish`: build, then push what was built; with `--cargo`, the images whose
//! inputs the registry's reuse records match are not built, and only their tags move.

use anyhow::Context as _;
use ironstar::publish;
use ironstar::push::Plan;

use super::build::{build_images, BuildArgs, BuiltImage, PublishArgs};
use super::reuse::Image;

/// Build, then push what was built: the same definitions, tags and layouts. With several
/// images `--repository` is a prefix ([`publish::repository_for`]). With `--cargo`, every
/// image's record is looked up first (all together); a hit is not built, its tags move after
/// the built images are up.
pub fn publish(args: PublishArgs, quiet: bool) -> anyhow::Result<()> {
    let build = &args.build;
    let signer = build.sign.signer()?;
    let request = build.request();
    let repository = args.registry.repository.as_deref();
    // The destinations are checked before any record is looked up or cargo runs.
    let planned = request.plan()?;
    publish::one_repository_each(planned.iter().map(|p| &p.spec), repository)?;
    let mut images = super::reuse::keyed(build, &request, planned, signer.as_ref());
    let plans = plans_of(&images, &request, build, repository)?;
    let no_sbom = build.sbom.no_sbom;
    let signing = super::push::Signing::default();
    let pushes =
        super::push::named_pushes(plans, &args.registry, &build.cache, no_sbom, signing, quiet)?;
    let runtime = super::push::runtime()?;
    if build.cargo {
        super::reuse::find_records(build, &mut images, &pushes, &runtime, quiet);
    }
    let built = build_images(build, &request, &images, signer, repository, quiet)?;
    let check = build.reuse.check_reuse;
    for (i, b) in &built {
        if let (true, Some(r)) = (check, &images[*i].reused) {
            super::reuse::check(&b.spec.name, r, &b.report.index)?;
        }
    }
    let to_push: Vec<_> = built.iter().map(|(i, _)| pushes[*i].clone()).collect();
    let mut refs = super::push::push_named(&to_push)?;
    if !check {
        refs.extend(move_reused(&images, &pushes, &runtime, quiet)?);
    }
    let order = |n: &String| images.iter().position(|i| &i.planned.spec.name == n);
    refs.sort_by_key(|(n, _)| order(n));
    super::push::print_refs(&refs);
    super::push::write_refs(&refs, &args.registry)
}

/// Point the tags of every reused image at its recorded index (after the built images are up,
/// so a failed push moved none); `(name, REGISTRY/REPO@DIGEST)` of each.
fn move_reused(
    images: &[Image],
    pushes: &[ironstar::push::NamedPush],
    runtime: &tokio::runtime::Runtime,
    quiet: bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let several = images.len() > 1;
    let reused: Vec<_> = images
        .iter()
        .zip(pushes)
        .filter_map(|(img, p)| Some((img, p, img.reused.as_ref()?)))
        .collect();
    let hits: Vec<_> = reused
        .iter()
        .filter_map(|(_, _, r)| r.hit.as_ref())
        .collect();
    runtime
        .block_on(ironstar::reuse::lookup::move_all(&hits))
        .context("moving the tags of the reused images")?;
    let mut refs = Vec::new();
    for (img, push, r) in reused {
        let name = &img.planned.spec.name;
        if !quiet {
            eprintln!("{}", super::reuse::summary(name, r, several));
        }
        refs.push((
            name.clone(),
            format!("{}@{}", push.opts.repository, r.index),
        ));
    }
    if let ([(_, image)], [_]) = (refs.as_slice(), images) {
        super::push::github_output(&format!("digest={}\nimage={image}", reused_digest(image)))?;
    }
    Ok(refs)
}

fn reused_digest(reference: &str) -> &str {
    reference.rsplit_once('@').map_or("", |(_, d)| d)
}

/// Where each planned image goes, under its tags, its layout where the build writes it.
fn plans_of(
    images: &[Image],
    request: &ironstar::definition::Request,
    build: &BuildArgs,
    repository: Option<&str>,
) -> anyhow::Result<Vec<(String, Plan)>> {
    let several = images.len() > 1;
    images
        .iter()
        .map(|img| {
            let mut spec = img.planned.spec.clone();
            request.finish(&mut spec)?;
            let name = &spec.name;
            let repo =
                publish::repository_for(name, spec.repository.as_deref(), repository, several)?;
            let dir = publish::layout_dir(build.output.as_deref(), name, several);
            let mut plan = Plan::new(Some(&spec), Some("."), repo.as_deref(), &[])?;
            plan.layout = dir;
            Ok((name.clone(), plan))
        })
        .collect()
}

/// Push what was built, each image to its repository under its tags: (name, reference) in
/// order. Signed by the build (`--sign-key`) for these repositories, so the push only sends what
/// the layouts hold.
pub fn push_built(
    built: &[BuiltImage],
    build: &BuildArgs,
    registry: &super::push::RegistryArgs,
    quiet: bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let pushes = pushes_of(built, registry.repository.as_deref())?;
    let signing = super::push::Signing::default();
    let no_sbom = build.sbom.no_sbom;
    super::push::run_pushes(pushes, registry, &build.cache, no_sbom, signing, quiet)
}

/// Where each built image goes, under its tags.
pub fn pushes_of(
    built: &[BuiltImage],
    repository: Option<&str>,
) -> anyhow::Result<Vec<(String, Plan)>> {
    let several = built.len() > 1;
    built
        .iter()
        .map(|b| {
            let name = &b.spec.name;
            let repo =
                publish::repository_for(name, b.spec.repository.as_deref(), repository, several)?;
            let plan = Plan::built(&b.report, Some(&b.spec), repo.as_deref())?;
            Ok((name.clone(), plan))
        })
        .collect()
}
