//! Flame graphs: folded stacks rendered to SVG by `inferno` (feature `flamegraph`), widths
//! showing self time. The folded lines themselves need no feature.

#[cfg(feature = "flamegraph")]
use std::fs::File;
#[cfg(feature = "flamegraph")]
use std::io::{self, BufWriter, Write};
#[cfg(feature = "flamegraph")]
use std::path::Path;

#[cfg(feature = "flamegraph")]
use inferno::flamegraph::{self, Options};

use super::profile::FoldedStack;
#[cfg(feature = "flamegraph")]
use crate::error::Error;

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

/// Renders `stacks` as an SVG flame graph into `out`.
#[cfg(feature = "flamegraph")]
///
/// Fails with `InvalidData` when there is nothing to draw (no stack with self time).
pub(crate) fn write_svg(stacks: &[FoldedStack], title: &str, out: impl Write) -> io::Result<()> {
    let lines = folded_lines(stacks);
    if lines.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "nothing to draw: no stage or function recorded any time",
        ));
    }
    let mut options = Options::default();
    options.title = title.to_owned();
    options.subtitle = Some("Width: self time. Stages at the bottom, functions above.".to_owned());
    options.count_name = "ns".to_owned();
    options.name_type = "Frame:".to_owned();
    // The same names get the same colours in every graph, so two runs' pictures compare.
    options.hash = true;
    options.deterministic = true;
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
}

/// Writes the SVG flame graph of `stacks` to `path`.
#[cfg(feature = "flamegraph")]
pub(crate) fn write_file(stacks: &[FoldedStack], title: &str, path: &Path) -> Result<(), Error> {
    let write_error = |source| Error::Write { what: "flame graph", path: path.to_owned(), source };
    let mut svg = Vec::new();
    write_svg(stacks, title, &mut svg).map_err(write_error)?;
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
