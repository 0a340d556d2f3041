//! Pictures of activation patching: a residual patching sweep
//! ([`PatchingSweep`], from `residual_patching_sweep`) as a heatmap of how much of the clean
//! run's metric each patch restores.

use nnsight::{Error, Result};
use nnsight_models::patching::PatchingSweep;

use crate::plot::{Heatmap, Scale};

/// The sweep as a heatmap: a row per layer (the last on top), a column per position labelled
/// with `tokens` (the prompt's token texts), each cell the fraction of the clean-vs-corrupted
/// metric difference the patch restores (1: fully restored, 0: no effect), on a diverging scale.
///
/// # Errors
/// [`Error::Input`] when there is not one token text per position, or the clean and corrupted
/// metrics are equal (nothing to restore: every fraction would be 0/0).
pub fn sweep_heatmap(sweep: &PatchingSweep, tokens: &[String], title: &str) -> Result<Heatmap> {
    if tokens.len() != sweep.positions {
        return Err(Error::Input {
            problem: format!("{} token texts for a sweep over {} positions", tokens.len(), sweep.positions),
        });
    }
    if sweep.clean == sweep.corrupted {
        return Err(Error::Input {
            problem: format!(
                "the clean and corrupted metrics are both {}: no patch has anything to restore",
                sweep.clean
            ),
        });
    }
    let rows: Vec<String> = (0..sweep.layers).rev().map(|l| format!("layer {l}")).collect();
    let values = (0..sweep.layers)
        .rev()
        .flat_map(|layer| (0..sweep.positions).map(move |position| sweep.recovered(layer, position)))
        .collect();
    Ok(Heatmap::new(title, rows, tokens.to_vec(), values)?
        .axes("patched position", "patched layer")
        .scale(Scale::Diverging))
}
