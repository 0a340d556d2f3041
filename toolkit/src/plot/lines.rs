//! A line plot: one or more named series over a shared x axis (a metric per layer).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Draw, DrawResult, FONT, input_error, printable, save};
use nnsight::Result;

/// The colours of successive series.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Named series of values at shared x positions, drawn as lines with markers and a legend;
/// [`save`](Self::save) writes it as PNG or SVG.
///
/// ```no_run
/// # fn main() -> nnsight::Result<()> {
/// use nnsight_toolkit::plot::LinePlot;
/// LinePlot::new("probability of \" Paris\"", (0..4).map(|l| l as f32).collect())?
///     .axes("layer", "p")
///     .series("logit lens", vec![0.01, 0.02, 0.3, 0.8])?
///     .save("paris.svg")?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LinePlot {
    title: String,
    x: Vec<f32>,
    series: Vec<(String, Vec<f32>)>,
    axes: (String, String),
}

impl LinePlot {
    /// A plot over the x positions `x` (finite, increasing), with no series yet.
    ///
    /// # Errors
    /// [`Error::Input`](nnsight::Error::Input) for no position, or positions that are not finite
    /// and increasing.
    pub fn new(title: &str, x: Vec<f32>) -> Result<LinePlot> {
        if x.is_empty() {
            return Err(input_error(format!("`{title}` has no x position")));
        }
        if x.iter().any(|v| !v.is_finite()) || x.windows(2).any(|w| w[1] <= w[0]) {
            return Err(input_error(format!("`{title}`'s x positions must be finite and increasing: {x:?}")));
        }
        Ok(LinePlot { title: printable(title), x, series: Vec::new(), axes: (String::new(), String::new()) })
    }

    /// Names the axes.
    pub fn axes(mut self, x: &str, y: &str) -> LinePlot {
        self.axes = (printable(x), printable(y));
        self
    }

    /// Adds a series named `name`, one value per x position.
    ///
    /// # Errors
    /// [`Error::Input`](nnsight::Error::Input) when the number of values is not the number of x
    /// positions, or a value is not finite.
    pub fn series(mut self, name: &str, values: Vec<f32>) -> Result<LinePlot> {
        if values.len() != self.x.len() {
            return Err(input_error(format!(
                "series `{name}` of `{}` has {} values for {} x positions",
                self.title,
                values.len(),
                self.x.len()
            )));
        }
        if let Some(at) = values.iter().position(|v| !v.is_finite()) {
            return Err(input_error(format!("series `{name}`'s value {at} is {}", values[at])));
        }
        self.series.push((printable(name), values));
        Ok(self)
    }

    /// Writes the picture to `path`: PNG for `.png`, SVG for `.svg`.
    ///
    /// # Errors
    /// [`Error::Input`](nnsight::Error::Input) for a plot without series;
    /// [`Error::Write`](nnsight::Error::Write) for another extension or a file that cannot be
    /// written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        if self.series.is_empty() {
            return Err(input_error(format!("`{}` has no series to draw", self.title)));
        }
        save(path.as_ref(), (720, 440), self)
    }
}

impl Draw for &LinePlot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (x0, x1) = (self.x[0], self.x[self.x.len() - 1]);
        let (x0, x1) = if x1 > x0 { (x0, x1) } else { (x0 - 0.5, x0 + 0.5) };
        let values = self.series.iter().flat_map(|(_, v)| v.iter().copied());
        let (lo, hi) = values.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let pad = if hi > lo { (hi - lo) * 0.08 } else { 0.5 };
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc(self.axes.0.as_str())
            .y_desc(self.axes.1.as_str())
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 14))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (i, (name, values)) in self.series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let points: Vec<(f32, f32)> = self.x.iter().copied().zip(values.iter().copied()).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, 12))
            .draw()?;
        Ok(())
    }
}
