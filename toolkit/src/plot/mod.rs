//! Pictures of analyses: [`Heatmap`]s (a patching sweep, a logit lens) and [`LinePlot`]s (a
//! metric per layer), written as PNG or SVG — the file's extension chooses — with plotters.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (it has the characters tokenizers show:
//! `Ġ`, `▁`, `↵`), so pictures are the same on a machine without fonts. An SVG names the font
//! family `sans-serif`; its viewer draws the text.

mod heatmap;
mod lines;

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use nnsight::{Error, Result};

pub use heatmap::{Heatmap, Scale};
pub use lines::LinePlot;

/// The two formats a picture is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A PNG image (`.png`).
    Png,
    /// An SVG document (`.svg`).
    Svg,
}

impl Format {
    /// The format `path`'s extension names.
    ///
    /// # Errors
    /// [`Error::Write`] for another extension, or none.
    pub fn of(path: &Path) -> Result<Format> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("png") => Ok(Format::Png),
            Some("svg") => Ok(Format::Svg),
            _ => Err(write_error(path, "a picture is written as .png or .svg; the file's extension chooses")),
        }
    }
}

/// A token's text as a label: spaces and line breaks made visible (`␣`, `↵`), texts longer than
/// 12 characters cut with `…`.
pub fn token_label(text: &str) -> String {
    let shown = printable(&text.replace(' ', "␣").replace('\n', "↵"));
    if shown.chars().count() > 12 { shown.chars().take(11).chain(['…']).collect() } else { shown }
}

/// `text` with its control characters shown as Unicode's control pictures (`\u{1b}` → `␛`;
/// others `�`): they cannot be drawn, and XML (an SVG) does not allow them. Every text of a
/// picture goes through it.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c as u32 {
            code @ 0..=0x1f => char::from_u32(0x2400 + code).unwrap_or('\u{fffd}'),
            0x7f => '\u{2421}',
            _ if c.is_control() => '\u{fffd}',
            _ => c,
        })
        .collect()
}

/// The font family every picture's text uses.
pub(crate) const FONT: &str = "sans-serif";

/// Makes DejaVu Sans plotters' `sans-serif`. plotters keeps its fonts in a table of its own; the
/// entry is set again before each picture (the same bytes), so no state of ours is involved.
fn register_font(path: &Path) -> Result<()> {
    plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| write_error(path, "the embedded DejaVu Sans font could not be read"))
}

/// Draws a picture of `size` pixels into `path`, in the format its extension names; `draw` is
/// called with the whole drawing area, on whichever backend the format needs.
pub(crate) fn save(path: &Path, size: (u32, u32), draw: impl Draw) -> Result<()> {
    let format = Format::of(path)?;
    register_font(path)?;
    let failed = |e: &dyn std::fmt::Display| write_error(path, &e.to_string());
    match format {
        Format::Png => {
            let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
                draw.draw(&root).map_err(|e| failed(&e))?;
                root.present().map_err(|e| failed(&e))?;
            }
            image::save_buffer_with_format(
                path,
                &pixels,
                size.0,
                size.1,
                image::ColorType::Rgb8,
                image::ImageFormat::Png,
            )
            .map_err(|e| failed(&e))
        }
        Format::Svg => {
            let mut document = String::new();
            {
                let root = SVGBackend::with_string(&mut document, size).into_drawing_area();
                draw.draw(&root).map_err(|e| failed(&e))?;
                root.present().map_err(|e| failed(&e))?;
            }
            std::fs::write(path, document).map_err(|e| failed(&e))
        }
    }
}

/// What draws a picture, on any plotters backend.
pub(crate) trait Draw {
    /// Draws onto `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// The result of drawing on backend `DB`.
pub(crate) type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

pub(crate) fn write_error(path: &Path, problem: &str) -> Error {
    Error::Write { path: path.display().to_string(), problem: problem.to_owned() }
}

/// The error of a picture whose data cannot be drawn.
pub(crate) fn input_error(problem: String) -> Error {
    Error::Input { problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_labels_show_spaces_breaks_and_control_characters() {
        assert_eq!(token_label(" Paris\n"), "␣Paris↵");
        assert_eq!(token_label("\u{1b}\u{7f}\u{85}\t"), "␛␡\u{fffd}␉");
        assert_eq!(token_label(" a very long token"), "␣a␣very␣lon…");
        assert_eq!(Format::of(Path::new("a/b.PNG")).unwrap(), Format::Png);
        assert!(Format::of(Path::new("a/b")).is_err());
    }
}
