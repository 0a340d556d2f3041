//! A heatmap: a labelled grid of values (a patching sweep's layers × positions, a logit lens'
//! layers × positions), coloured by a [`Scale`], optionally with a text in each cell.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Draw, DrawResult, FONT, input_error, printable, save};
use nnsight::Result;

/// The longest side of a picture, in pixels.
const MAX_SIDE: u32 = 16_384;

/// How values map to colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// From the smallest value (light) to the largest (dark blue): probabilities, norms.
    Sequential,
    /// Around zero: negative blue, zero white, positive red, symmetric in the largest magnitude
    /// (a logit difference, an attribution).
    Diverging,
}

/// A grid of `rows × columns` values with their labels, drawn as coloured cells with a colour bar;
/// [`save`](Self::save) writes it as PNG or SVG.
///
/// ```no_run
/// # fn main() -> nnsight::Result<()> {
/// use nnsight_toolkit::plot::{Heatmap, Scale};
/// let layers = vec!["0".to_owned(), "1".to_owned()];
/// let tokens = vec!["The".to_owned(), " cat".to_owned(), " sat".to_owned()];
/// Heatmap::new("patching", layers, tokens, vec![0.1, 0.5, 0.9, -0.2, 0.0, 0.4])?
///     .axes("position", "layer")
///     .scale(Scale::Diverging)
///     .save("patching.png")?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    title: String,
    rows: Vec<String>,
    columns: Vec<String>,
    values: Vec<f32>,
    cells: Option<Vec<String>>,
    axes: (String, String),
    scale: Scale,
    /// The value range the colours span, when fixed (probabilities: `0..=1`).
    fixed: Option<(f32, f32)>,
}

impl Heatmap {
    /// A heatmap of `values`, row-major `[rows.len(), columns.len()]`; row 0 is drawn on top.
    ///
    /// # Errors
    /// [`Error::Input`](nnsight::Error::Input) when there are no rows or no columns, the number of
    /// values is not rows × columns, or a value is not finite (naming its row and column).
    pub fn new(title: &str, rows: Vec<String>, columns: Vec<String>, values: Vec<f32>) -> Result<Heatmap> {
        if rows.is_empty() || columns.is_empty() {
            return Err(input_error(format!(
                "a heatmap needs rows and columns; `{title}` has {} rows and {} columns",
                rows.len(),
                columns.len()
            )));
        }
        if values.len() != rows.len() * columns.len() {
            return Err(input_error(format!(
                "`{title}` has {} rows × {} columns but {} values",
                rows.len(),
                columns.len(),
                values.len()
            )));
        }
        if let Some(at) = values.iter().position(|v| !v.is_finite()) {
            return Err(input_error(format!(
                "`{title}`'s value at row {} ({}), column {} ({}) is {}",
                at / columns.len(),
                rows[at / columns.len()],
                at % columns.len(),
                columns[at % columns.len()],
                values[at]
            )));
        }
        Ok(Heatmap {
            title: printable(title),
            rows: rows.iter().map(|r| printable(r)).collect(),
            columns: columns.iter().map(|c| printable(c)).collect(),
            values,
            cells: None,
            axes: (String::new(), String::new()),
            scale: Scale::Sequential,
            fixed: None,
        })
    }

    /// Names the axes: `x` under the columns, `y` beside the rows.
    pub fn axes(mut self, x: &str, y: &str) -> Heatmap {
        self.axes = (printable(x), printable(y));
        self
    }

    /// How values map to colours (default [`Scale::Sequential`]).
    pub fn scale(mut self, scale: Scale) -> Heatmap {
        self.scale = scale;
        self
    }

    /// Fixes the range the colours span to `lo..=hi` (e.g. `0..=1` for probabilities) instead of
    /// the values' own; values outside take the end colours.
    ///
    /// # Errors
    /// [`Error::Input`](nnsight::Error::Input) unless `lo < hi`, both finite.
    pub fn range(mut self, lo: f32, hi: f32) -> Result<Heatmap> {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(input_error(format!(
                "`{}`'s colour range {lo}..{hi} is not a finite, increasing range",
                self.title
            )));
        }
        self.fixed = Some((lo, hi));
        Ok(self)
    }

    /// A text in every cell (row-major, as the values): the logit lens' top token.
    ///
    /// # Errors
    /// [`Error::Input`](nnsight::Error::Input) when there is not one text per value.
    pub fn cell_texts(mut self, texts: Vec<String>) -> Result<Heatmap> {
        if texts.len() != self.values.len() {
            return Err(input_error(format!(
                "`{}` has {} cells but {} cell texts",
                self.title,
                self.values.len(),
                texts.len()
            )));
        }
        self.cells = Some(texts.iter().map(|t| printable(t)).collect());
        Ok(self)
    }

    /// The value at `row`, `column`.
    pub fn value(&self, row: usize, column: usize) -> f32 {
        self.values[row * self.columns.len() + column]
    }

    /// Writes the picture to `path`: PNG for `.png`, SVG for `.svg`.
    ///
    /// # Errors
    /// [`Error::Write`](nnsight::Error::Write) for another extension or a file that cannot be
    /// written; [`Error::Input`](nnsight::Error::Input) for a grid too large to draw.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let (width, height) = self.size();
        if width.max(height) > MAX_SIDE {
            return Err(input_error(format!(
                "`{}` would be {width} × {height} pixels for {} rows × {} columns (at most {MAX_SIDE} a side): \
                 draw a slice of the grid",
                self.title,
                self.rows.len(),
                self.columns.len()
            )));
        }
        save(path.as_ref(), (width, height), self)
    }

    /// The picture's size in pixels: cells wide enough for their texts and labels.
    fn size(&self) -> (u32, u32) {
        let longest = |labels: &[String]| labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
        let cell_chars = self.cells.as_deref().map_or(0, longest).max(3);
        let cell_w = (cell_chars * 8 + 10).clamp(28, 120);
        let cell_h = if self.cells.is_some() { 26 } else { 22 };
        let left = 60 + longest(&self.rows).min(24) * 8;
        let bottom = 70 + longest(&self.columns).min(24) * 7;
        let title = self.title.chars().count() as u32 * 11 + 140;
        let width = (left + self.columns.len() as u32 * cell_w + 110).max(title);
        let height = 50 + self.rows.len() as u32 * cell_h + bottom;
        (width.max(360), height.max(240))
    }

    /// The value range the colours span.
    fn span(&self) -> (f32, f32) {
        if let Some(range) = self.fixed {
            return range;
        }
        let (lo, hi) = self
            .values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        match self.scale {
            Scale::Sequential if hi > lo => (lo, hi),
            Scale::Sequential => (lo - 0.5, hi + 0.5),
            Scale::Diverging => {
                let m = lo.abs().max(hi.abs()).max(f32::MIN_POSITIVE);
                (-m, m)
            }
        }
    }
}

/// The colour of `v` in `lo..=hi` under `scale`.
fn colour(scale: Scale, v: f32, (lo, hi): (f32, f32)) -> RGBColor {
    let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
    let mix = |a: (f32, f32, f32), b: (f32, f32, f32), t: f32| {
        let c = |x: f32, y: f32| (x + (y - x) * t).round() as u8;
        RGBColor(c(a.0, b.0), c(a.1, b.1), c(a.2, b.2))
    };
    match scale {
        // Light yellow → teal → dark blue.
        Scale::Sequential => {
            let (light, mid, dark) = ((255.0, 255.0, 217.0), (65.0, 182.0, 196.0), (8.0, 29.0, 88.0));
            if t < 0.5 { mix(light, mid, t * 2.0) } else { mix(mid, dark, t * 2.0 - 1.0) }
        }
        Scale::Diverging => {
            let (blue, white, red) = ((33.0, 102.0, 172.0), (247.0, 247.0, 247.0), (178.0, 24.0, 43.0));
            if t < 0.5 { mix(blue, white, t * 2.0) } else { mix(white, red, t * 2.0 - 1.0) }
        }
    }
}

/// Black or white, whichever reads on `background`.
fn ink(background: RGBColor) -> RGBColor {
    let RGBColor(r, g, b) = background;
    let luma = 0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b);
    if luma > 140.0 { BLACK } else { WHITE }
}

impl Draw for &Heatmap {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (width, _) = root.dim_in_pixel();
        let (grid, bar) = root.split_horizontally(width.saturating_sub(100));
        let (rows, columns) = (self.rows.len() as i32, self.columns.len() as i32);
        let longest_row = self.rows.iter().map(|l| l.chars().count()).max().unwrap_or(0).min(24) as u32;
        let longest_column = self.columns.iter().map(|l| l.chars().count()).max().unwrap_or(0).min(24) as u32;
        // Column labels lie flat when they fit their cells, else they are turned upright.
        let row_area = 30 + longest_row * 8;
        let cell_px = grid.dim_in_pixel().0.saturating_sub(row_area + 20) / columns.max(1) as u32;
        let upright = longest_column * 7 + 6 > cell_px;
        let column_area = if upright { 40 + longest_column * 7 } else { 45 };
        // Each cell is 2 units wide and tall, its label at its centre (an odd coordinate).
        let mut chart = ChartBuilder::on(&grid)
            .caption(&self.title, (FONT, 20))
            .margin(10)
            .x_label_area_size(column_area)
            .y_label_area_size(row_area)
            .build_cartesian_2d(
                (0..2 * columns).with_key_points((0..columns).map(|c| 2 * c + 1).collect()),
                (0..2 * rows).with_key_points((0..rows).map(|r| 2 * r + 1).collect()),
            )?;
        let column_label = |x: &i32| self.columns.get((*x / 2) as usize).cloned().unwrap_or_default();
        let row_label = |y: &i32| self.rows.get((rows - 1 - *y / 2) as usize).cloned().unwrap_or_default();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_label_formatter(&column_label)
            .y_label_formatter(&row_label)
            .x_label_style(if upright {
                (FONT, 12).into_font().transform(FontTransform::Rotate90)
            } else {
                (FONT, 12).into_font()
            })
            .y_label_style((FONT, 12))
            .x_desc(self.axes.0.as_str())
            .y_desc(self.axes.1.as_str())
            .axis_desc_style((FONT, 14))
            .draw()?;
        let range = self.span();
        let cells = (0..self.rows.len()).flat_map(|r| (0..self.columns.len()).map(move |c| (r, c)));
        chart.draw_series(cells.clone().map(|(r, c)| {
            let (x, y) = (2 * c as i32, 2 * (rows - 1 - r as i32));
            Rectangle::new([(x, y), (x + 2, y + 2)], colour(self.scale, self.value(r, c), range).filled())
        }))?;
        if let Some(texts) = &self.cells {
            let centre = Pos::new(HPos::Center, VPos::Center);
            chart.draw_series(cells.map(|(r, c)| {
                let (x, y) = (2 * c as i32 + 1, 2 * (rows - 1 - r as i32) + 1);
                let fill = ink(colour(self.scale, self.value(r, c), range));
                let text = texts[r * self.columns.len() + c].clone();
                Text::new(text, (x, y), (FONT, 11).into_font().color(&fill).pos(centre))
            }))?;
        }
        // The colour bar: the scale's range, bottom to top.
        let steps = 64;
        let (lo, hi) = range;
        let mut legend = ChartBuilder::on(&bar)
            .margin_top(40)
            .margin_bottom(60)
            .margin_right(10)
            .y_label_area_size(55)
            .build_cartesian_2d(0f32..1f32, lo..hi)?;
        legend
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(5)
            .y_label_style((FONT, 11))
            .y_label_formatter(&|v: &f32| format!("{v:.2}"))
            .draw()?;
        let step = (hi - lo) / steps as f32;
        legend.draw_series((0..steps).map(|i| {
            let v = lo + step * i as f32;
            Rectangle::new([(0.0, v), (1.0, v + step)], colour(self.scale, v + step / 2.0, range).filled())
        }))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_span_the_scale_and_text_reads_on_them() {
        let range = (-2.0, 2.0);
        assert_eq!(colour(Scale::Diverging, 0.0, range), RGBColor(247, 247, 247));
        assert_eq!(colour(Scale::Diverging, -2.0, range), RGBColor(33, 102, 172));
        assert_eq!(colour(Scale::Diverging, 9.0, range), RGBColor(178, 24, 43));
        assert_eq!(ink(colour(Scale::Sequential, 1.0, (0.0, 1.0))), WHITE);
        assert_eq!(ink(colour(Scale::Sequential, 0.0, (0.0, 1.0))), BLACK);
    }
}
