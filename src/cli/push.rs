//! Placeholder until the registry client lands.
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// Image definition file (supplies repository and tags).
    pub image_file: Option<PathBuf>,
    /// The OCI layout to push.
    #[arg(long)]
    pub layout: Option<PathBuf>,
}

pub fn run(_args: &PushArgs) -> anyhow::Result<()> {
    anyhow::bail!("push is not implemented yet")
}
