//! Progress bars on long work — reading a checkpoint's tensors, generating, sweeping — drawn on
//! stderr when it is a terminal and hidden otherwise (a pipe, a file, CI), or when
//! `NNSIGHT_PROGRESS=0`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One progress bar; cleared from the terminal when dropped.
#[derive(Debug)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar of `total` steps labelled `what` (`loading model.safetensors`).
    pub fn new(total: u64, what: &str) -> Progress {
        if std::env::var_os("NNSIGHT_PROGRESS").is_some_and(|v| v == "0") {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} [{elapsed_precise} < {eta}]")
        {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        Progress(Some(bar))
    }

    /// Whether the bar is drawn (stderr is a terminal and progress is not switched off).
    pub fn is_drawn(&self) -> bool {
        self.0.as_ref().is_some_and(|bar| !bar.is_hidden())
    }

    /// Advances the bar by `steps`; a bar that reaches its end is cleared.
    pub fn advance(&self, steps: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(steps);
            if bar.length().is_some_and(|total| bar.position() >= total) {
                bar.finish_and_clear();
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_hidden_off_a_terminal() {
        // Tests run with stderr captured or piped: nothing is drawn, and advancing is harmless.
        let bar = Progress::new(3, "testing");
        bar.advance(2);
        assert!(!bar.is_drawn());
    }
}
