//! Heatmaps and line plots written as PNG and SVG: the files decode, have the scale's colours and
//! the labels (escaped in SVG), and bad data or paths are typed errors.

use std::path::Path;

use nnsight::Error;
use nnsight_toolkit::plot::{Format, Heatmap, LinePlot, Scale};

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn heatmap() -> Heatmap {
    let rows = labels(&["layer 1", "layer 0"]);
    let columns = labels(&["<|endoftext|>", "␣Paris", "▁Rome\u{1b}"]);
    Heatmap::new("patching & co", rows, columns, vec![-2.0, 0.0, 1.0, 0.5, 2.0, -1.0])
        .unwrap()
        .axes("position", "layer")
        .scale(Scale::Diverging)
}

/// The RGB pixels of a PNG, and its size.
fn decode(path: &Path) -> (Vec<[u8; 3]>, (u32, u32)) {
    let image = image::open(path).unwrap().to_rgb8();
    let size = image.dimensions();
    (image.pixels().map(|p| p.0).collect(), size)
}

#[test]
fn a_heatmap_is_written_as_png_and_svg_with_its_colours_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("sweep.png");
    let with_texts = heatmap().cell_texts(labels(&["a", "b", "c", "d", "e", "f"])).unwrap();
    with_texts.save(&png).unwrap();
    let (pixels, (width, height)) = decode(&png);
    assert!(width >= 360 && height >= 240, "{width}×{height}");
    // The extremes of a diverging scale: −2 is the scale's blue, +2 its red, 0 white.
    for colour in [[33, 102, 172], [178, 24, 43]] {
        let count = pixels.iter().filter(|p| **p == colour).count();
        assert!(count > 200, "{colour:?} covers {count} pixels");
    }
    // Text and axes are drawn (dark pixels), not only cells.
    assert!(pixels.iter().filter(|p| p.iter().all(|&c| c < 60)).count() > 500);

    let svg = dir.path().join("sweep.SVG");
    with_texts.save(&svg).unwrap();
    let document = std::fs::read_to_string(&svg).unwrap();
    assert!(document.trim_start().starts_with("<svg") && document.trim_end().ends_with("</svg>"));
    // A control character (a token's text may hold one) is shown, and the SVG stays XML.
    assert!(!document.contains('\u{1b}'));
    for label in ["&lt;|endoftext|&gt;", "␣Paris", "▁Rome␛", "layer 0", "patching &amp; co", "\ne\n</text>"]
    {
        assert!(document.contains(label), "the SVG lacks {label}");
    }
    assert!(!document.contains("<|endoftext|>"), "a label is not escaped");
    assert!(document.matches("<rect").count() >= 6 + 64, "cells and colour bar");
    assert_eq!(Format::of(&svg).unwrap(), Format::Svg);
}

#[test]
fn a_line_plot_is_written_with_a_line_per_series() {
    let dir = tempfile::tempdir().unwrap();
    let plot = LinePlot::new("p(Paris) per layer", vec![0.0, 1.0, 2.0, 3.0])
        .unwrap()
        .axes("layer", "probability")
        .series("logit lens", vec![0.01, 0.05, 0.4, 0.9])
        .unwrap()
        .series("tuned lens", vec![0.1, 0.3, 0.6, 0.92])
        .unwrap();
    let png = dir.path().join("lines.png");
    plot.save(&png).unwrap();
    let (pixels, size) = decode(&png);
    assert_eq!(size, (720, 440));
    for colour in [[31, 119, 180], [214, 39, 40]] {
        assert!(pixels.iter().filter(|p| **p == colour).count() > 100, "series colour {colour:?}");
    }
    let svg = dir.path().join("lines.svg");
    plot.save(&svg).unwrap();
    let document = std::fs::read_to_string(&svg).unwrap();
    assert!(document.contains("tuned lens") && document.contains("<polyline"), "{}", &document[..200]);
}

#[test]
fn bad_data_and_paths_are_typed_errors() {
    let rows = labels(&["a", "b"]);
    let columns = labels(&["x"]);
    let input = |result: nnsight::Result<Heatmap>, message: &str| {
        let error = result.unwrap_err();
        assert!(matches!(error, Error::Input { .. }) && error.to_string().contains(message), "{error}");
    };
    input(Heatmap::new("t", rows.clone(), columns.clone(), vec![1.0]), "2 rows × 1 columns but 1 values");
    input(Heatmap::new("t", vec![], columns.clone(), vec![]), "0 rows");
    input(
        Heatmap::new("t", rows.clone(), columns.clone(), vec![1.0, f32::NAN]),
        "row 1 (b), column 0 (x) is NaN",
    );
    input(
        Heatmap::new("t", rows.clone(), columns.clone(), vec![1.0, 2.0]).unwrap().cell_texts(vec![]),
        "0 cell texts",
    );

    let dir = tempfile::tempdir().unwrap();
    let map = Heatmap::new("t", rows, columns, vec![1.0, 2.0]).unwrap();
    let error = map.save(dir.path().join("map.jpg")).unwrap_err();
    assert!(matches!(error, Error::Write { .. }) && error.to_string().contains(".png or .svg"), "{error}");
    for missing in ["no/such/dir/map.png", "no/such/dir/map.svg"] {
        let error = map.save(dir.path().join(missing)).unwrap_err();
        assert!(matches!(error, Error::Write { .. }) && error.to_string().contains("map."), "{error}");
    }

    // A grid too large to draw says so instead of allocating gigabytes.
    let huge =
        Heatmap::new("huge", labels(&["a"]), (0..5000).map(|i| i.to_string()).collect(), vec![0.0; 5000])
            .unwrap();
    let error = huge.save(dir.path().join("huge.png")).unwrap_err();
    assert!(matches!(error, Error::Input { .. }) && error.to_string().contains("draw a slice"), "{error}");

    let plot = LinePlot::new("p", vec![0.0, 1.0]).unwrap();
    assert!(plot.clone().series("s", vec![1.0]).unwrap_err().to_string().contains("1 values for 2"));
    assert!(plot.clone().series("s", vec![1.0, f32::INFINITY]).unwrap_err().to_string().contains("inf"));
    assert!(plot.save(dir.path().join("p.png")).unwrap_err().to_string().contains("no series"));
    assert!(LinePlot::new("p", vec![1.0, 1.0]).unwrap_err().to_string().contains("increasing"));
    assert!(LinePlot::new("p", vec![]).unwrap_err().to_string().contains("no x position"));
}
