//! Reading profiles back: summarise a Chrome trace or a saved report, compare two runs, draw a
//! flame graph. What the `pipeline-prof` command does, as a library.
//!
//! - [`Profile::read`] streams a trace (or loads a report saved with
//!   [`Report::write_json`](crate::Report::write_json)) into per-stage and per-function figures;
//!   a trace cut short is read up to where it stops.
//! - [`ProfileDiff`] compares two profiles, largest impact first, marking changes within the
//!   noise.
//! - [`Profile::write_flamegraph`] and [`Report::write_flamegraph`](crate::Report::write_flamegraph)
//!   draw an SVG flame graph whose widths are total time.

mod chrome;
mod diff;
mod merge;
mod profile;
mod table;
mod tree;

#[cfg(feature = "flamegraph")]
use std::path::Path;

pub use chrome::{FlightWindow, TraceCut};
pub use diff::{ProfileDiff, RowChange, Shift, DEFAULT_NOISE_FLOOR, TINY_ROW_STEPS};
pub use profile::{
    EventFigures, FoldedStack, MergedFrom, Profile, ProfileInput, ProfileRow, ProfileSource,
    RowKind, TraceRead,
};
pub use tree::{CounterSummary, SliceCounts, TraceExtras};

#[cfg(feature = "flamegraph")]
use crate::error::Error;

impl Profile {
    /// Writes an SVG flame graph of this profile to `path`: stages at the bottom, the functions
    /// they called above, each frame as wide as its total time (its self time is the part with
    /// nothing above it).
    ///
    /// # Errors
    ///
    /// [`Error::Write`] naming the path when it cannot be written, or when there is nothing to
    /// draw (no stage or function recorded any time).
    ///
    /// Needs the `flamegraph` feature (on by default).
    #[cfg(feature = "flamegraph")]
    pub fn write_flamegraph(&self, path: impl AsRef<Path>, title: &str) -> Result<(), Error> {
        crate::flame::write_file(&self.stacks, title, path.as_ref())
    }

    /// The profile as pretty-printed JSON (times in nanoseconds).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("profiles serialise without failure")
    }

    /// The folded-stack lines (`Stage;function self_ns`) that other flame-graph tools read.
    pub fn folded(&self) -> Vec<String> {
        crate::flame::folded_lines(&self.stacks)
    }
}

impl ProfileDiff {
    /// The comparison as pretty-printed JSON (times in nanoseconds).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("diffs serialise without failure")
    }
}
