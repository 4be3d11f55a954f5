//! Flame graphs: folded stacks rendered to SVG by `inferno` (feature `flamegraph`). Each
//! stack's count is its innermost frame's self time (or samples), so a frame's width is its
//! total: itself and everything it called; its self time is the part with nothing above it.
//! The folded lines themselves need no feature. Used by the report (its own and its CPU
//! samples' flame graphs) and by `analysis` (a profile read back).

#[cfg(feature = "flamegraph")]
use std::fs::File;
#[cfg(feature = "flamegraph")]
use std::io::{self, BufWriter, Write};
#[cfg(feature = "flamegraph")]
use std::path::Path;

#[cfg(feature = "flamegraph")]
use inferno::flamegraph::{self, Options};

use serde::{Deserialize, Serialize};

#[cfg(feature = "flamegraph")]
use crate::error::Error;

/// One flame-graph stack: frame names from the outermost, and the self time spent there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FoldedStack {
    /// Frames, outermost first.
    pub frames: Vec<String>,
    /// Time spent in the innermost frame itself, in nanoseconds.
    pub self_ns: u64,
}

/// Folded-stack lines (`outer;inner self_ns`), the input format of flame-graph tools.
pub(crate) fn folded_lines(stacks: &[FoldedStack]) -> Vec<String> {
    stacks
        .iter()
        .filter(|stack| stack.self_ns > 0 && !stack.frames.is_empty())
        .map(|stack| {
            // `;` separates frames in the format; a name containing one would split in two.
            let frames: Vec<String> = stack.frames.iter().map(|f| f.replace(';', ":")).collect();
            format!("{} {}", frames.join(";"), stack.self_ns)
        })
        .collect()
}

/// What a flame graph's widths mean, for its subtitle and tooltips.
#[cfg(feature = "flamegraph")]
#[derive(Clone, Copy)]
pub(crate) struct Widths {
    pub(crate) subtitle: &'static str,
    /// The unit of the counts (`ns`, `samples`).
    pub(crate) unit: &'static str,
    /// Why there can be nothing to draw.
    pub(crate) when_empty: &'static str,
}

/// Recorded calls: widths are total time (self time is the part with nothing above).
#[cfg(feature = "flamegraph")]
pub(crate) const SELF_TIME: Widths = Widths {
    subtitle: "Width: time in a function and what it called; the part with nothing above is \
               its self time. Stages at the bottom, functions above.",
    unit: "ns",
    when_empty: "nothing to draw: no stage or function recorded any time",
};

/// Sampled stacks: widths are CPU samples in a function and what it called.
#[cfg(feature = "flamegraph")]
pub(crate) const CPU_SAMPLES: Widths = Widths {
    subtitle: "Width: CPU samples in a function and what it called; the part with nothing \
               above is its own. Stages at the bottom, the call paths sampled inside them above.",
    unit: "samples",
    when_empty: "nothing to draw: no CPU sample was taken",
};

/// Renders `stacks` as an SVG flame graph into `out`.
///
/// Fails with `InvalidData` when there is nothing to draw (no stack with self time).
#[cfg(all(test, feature = "flamegraph"))]
fn write_svg(stacks: &[FoldedStack], title: &str, out: impl Write) -> io::Result<()> {
    write_svg_lines(&folded_lines(stacks), title, SELF_TIME, out)
}

/// Renders folded-stack `lines` as an SVG flame graph into `out`.
#[cfg(feature = "flamegraph")]
pub(crate) fn write_svg_lines(
    lines: &[String],
    title: &str,
    widths: Widths,
    out: impl Write,
) -> io::Result<()> {
    if lines.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, widths.when_empty));
    }
    let mut options = Options::default();
    options.title = title.to_owned();
    options.subtitle = Some(widths.subtitle.to_owned());
    options.count_name = widths.unit.to_owned();
    options.name_type = "Frame:".to_owned();
    // The same names get the same colours in every graph, so two runs' pictures compare.
    options.hash = true;
    options.deterministic = true;
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
}

/// Writes the SVG flame graph of `stacks` to `path`.
#[cfg(feature = "flamegraph")]
pub(crate) fn write_file(stacks: &[FoldedStack], title: &str, path: &Path) -> Result<(), Error> {
    write_lines_file(&folded_lines(stacks), title, SELF_TIME, path)
}

/// Writes the SVG flame graph of folded-stack `lines` to `path`.
#[cfg(feature = "flamegraph")]
pub(crate) fn write_lines_file(
    lines: &[String],
    title: &str,
    widths: Widths,
    path: &Path,
) -> Result<(), Error> {
    let write_error = |source| Error::Write { what: "flame graph", path: path.to_owned(), source };
    let mut svg = Vec::new();
    write_svg_lines(lines, title, widths, &mut svg).map_err(write_error)?;
    let mut file = BufWriter::new(File::create(path).map_err(write_error)?);
    file.write_all(&svg).and_then(|()| file.flush()).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(frames: &[&str], self_ns: u64) -> FoldedStack {
        FoldedStack { frames: frames.iter().map(|f| (*f).to_owned()).collect(), self_ns }
    }

    #[test]
    fn folded_lines_join_frames_and_drop_empty_stacks() {
        let lines = folded_lines(&[stack(&["Fraud", "a;b"], 5), stack(&["Idle"], 0)]);
        assert_eq!(lines, ["Fraud;a:b 5"]);
    }

    #[test]
    #[cfg(feature = "flamegraph")]
    fn svg_names_every_frame() {
        let mut svg = Vec::new();
        write_svg(&[stack(&["Fraud"], 10), stack(&["Fraud", "score"], 30)], "t", &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("Fraud") && svg.contains("score"));
    }

    #[test]
    #[cfg(feature = "flamegraph")]
    fn nothing_to_draw_is_an_error_not_an_empty_picture() {
        let error = write_svg(&[], "t", Vec::new()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
