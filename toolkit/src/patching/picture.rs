//! Pictures of activation patching: a [`PatchResult`] or a family's residual sweep
//! ([`PatchingSweep`], from `residual_patching_sweep`) as a heatmap of how much of the clean
//! run's metric each patch restores.

use nnsight::{Error, Result};
use nnsight_models::patching::PatchingSweep;

use super::PatchResult;

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

/// One kind of site of a [`PatchResult`] (`site`, an index into its `sites`) as a heatmap: a row
/// per patched layer (the last on top), a column per patched position labelled with `tokens`
/// (the texts of every position of the prompt), each cell the share of the clean-vs-corrupted
/// metric difference the entry restores, on a diverging scale.
///
/// # Errors
/// [`Error::Input`] for a site past the result's, token texts not one per prompt position, or
/// equal clean and corrupted metrics.
pub fn result_heatmap(result: &PatchResult, site: usize, tokens: &[String], title: &str) -> Result<Heatmap> {
    let input = |problem: String| Err(Error::Input { problem });
    let Some(kind) = result.sites.get(site) else {
        return input(format!("site {site} of a result of {} kinds of site", result.sites.len()));
    };
    if let Some(&p) = result.positions.iter().flatten().find(|&&p| p >= tokens.len()) {
        return input(format!("position {p} patched, {} token texts given", tokens.len()));
    }
    if result.clean == result.corrupted {
        return input(format!(
            "the clean and corrupted metrics are both {}: nothing to restore",
            result.clean
        ));
    }
    let rows: Vec<String> = result.layers.iter().rev().map(|l| format!("layer {l}")).collect();
    let columns = result
        .positions
        .iter()
        .map(|group| group.iter().map(|&p| tokens[p].as_str()).collect::<Vec<_>>().join("+"))
        .collect();
    let values = (0..result.layers.len())
        .rev()
        .flat_map(|l| (0..result.positions.len()).map(move |p| result.recovered(site, l, p)))
        .collect();
    Ok(Heatmap::new(title, rows, columns, values)?
        .axes("patched position", &format!("patched {}", kind.label()))
        .scale(Scale::Diverging))
}
