//! What a push tells the user on stderr: a line per step, and progress bars on a terminal.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::digest::Digest;
use crate::registry::client::short;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Progress bars when stderr is a person's terminal ([`crate::stderr_is_styled`]), and a
    /// line per step.
    Auto,
    Quiet,
}

pub(crate) struct Reporter {
    bars: Option<MultiProgress>,
    quiet: bool,
}

impl Reporter {
    pub(crate) fn new(mode: ProgressMode) -> Self {
        Reporter {
            bars: (mode == ProgressMode::Auto && crate::stderr_is_styled())
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            quiet: mode == ProgressMode::Quiet,
        }
    }

    pub(crate) fn line(&self, msg: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(m) => {
                let _ = m.println(msg.as_ref());
            }
            None => eprintln!("{}", msg.as_ref()),
        }
    }

    pub(crate) fn bar(&self, digest: &Digest, size: u64) -> Option<ProgressBar> {
        let m = self.bars.as_ref()?;
        let bar = m.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(short(digest));
        Some(bar)
    }
}
