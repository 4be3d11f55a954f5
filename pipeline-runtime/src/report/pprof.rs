//! The sampled CPU profile in pprof's format (`profile.proto`, uncompressed), which
//! `go tool pprof`, speedscope and most profile viewers read.
//!
//! Each distinct call path is one sample with two values (`samples/count`, `cpu/nanoseconds`),
//! its stage as the outermost frame and as a `stage` label (`go tool pprof -tagfocus
//! stage=FraudStage`). Functions are already named (as the report names them) with their
//! source files, and locations carry their lines, so the file needs no binary to symbolise.

use std::collections::HashMap;
use std::path::Path;

use super::cpu::{CpuProfile, SourceLine};
use crate::error::Error;

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire_type));
    }

    /// A varint field; zero is the default and is left out, as proto3 does.
    fn uint(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, 0);
            self.varint(value);
        }
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn message(&mut self, field: u32, write: impl FnOnce(&mut Message)) {
        let mut inner = Message::default();
        write(&mut inner);
        self.bytes(field, &inner.0);
    }

    /// A packed repeated varint field.
    fn packed(&mut self, field: u32, values: impl IntoIterator<Item = u64>) {
        let mut inner = Message::default();
        for value in values {
            inner.varint(value);
        }
        self.bytes(field, &inner.0);
    }
}

/// The string table: index 0 is the empty string.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, u64>,
}

impl Strings {
    fn new() -> Self {
        Strings { table: vec![String::new()], index: HashMap::from([(String::new(), 0)]) }
    }

    fn id(&mut self, text: &str) -> u64 {
        if let Some(&id) = self.index.get(text) {
            return id;
        }
        let id = self.table.len() as u64;
        self.table.push(text.to_owned());
        self.index.insert(text.to_owned(), id);
        id
    }
}

// profile.proto field numbers.
const PROFILE_SAMPLE_TYPE: u32 = 1;
const PROFILE_SAMPLE: u32 = 2;
const PROFILE_MAPPING: u32 = 3;
const PROFILE_LOCATION: u32 = 4;
const PROFILE_FUNCTION: u32 = 5;
const PROFILE_STRING_TABLE: u32 = 6;
const PROFILE_PERIOD_TYPE: u32 = 11;
const PROFILE_PERIOD: u32 = 12;
const PROFILE_COMMENT: u32 = 13;
const VALUE_TYPE_TYPE: u32 = 1;
const VALUE_TYPE_UNIT: u32 = 2;
const SAMPLE_LOCATION_ID: u32 = 1;
const SAMPLE_VALUE: u32 = 2;
const SAMPLE_LABEL: u32 = 3;
const LABEL_KEY: u32 = 1;
const LABEL_STR: u32 = 2;
const MAPPING_ID: u32 = 1;
const MAPPING_FILENAME: u32 = 5;
const MAPPING_HAS_FUNCTIONS: u32 = 7;
const MAPPING_HAS_FILENAMES: u32 = 8;
const MAPPING_HAS_LINE_NUMBERS: u32 = 9;
const LOCATION_ID: u32 = 1;
const LOCATION_MAPPING_ID: u32 = 2;
const LOCATION_ADDRESS: u32 = 3;
const LOCATION_LINE: u32 = 4;
const LINE_FUNCTION_ID: u32 = 1;
const LINE_LINE: u32 = 2;
const FUNCTION_ID: u32 = 1;
const FUNCTION_NAME: u32 = 2;
const FUNCTION_SYSTEM_NAME: u32 = 3;
const FUNCTION_FILENAME: u32 = 4;
const PROFILE_TIME_NANOS: u32 = 9;
const PROFILE_DURATION_NANOS: u32 = 10;

/// The profile's functions (by name and file) and locations (by function, address and line),
/// each numbered from 1 in the order first seen.
#[derive(Default)]
struct Locations {
    functions: Vec<(String, Option<String>)>,
    function_ids: HashMap<(String, Option<String>), u64>,
    /// (function id, address, line)
    locations: Vec<(u64, u64, u32)>,
    location_ids: HashMap<(u64, u64, u32), u64>,
}

impl Locations {
    /// The id of the location of `name` at `at`.
    fn id(&mut self, name: &str, at: &SourceLine) -> u64 {
        let key = (name.to_owned(), at.file.clone());
        let function = match self.function_ids.get(&key) {
            Some(&id) => id,
            None => {
                self.functions.push(key.clone());
                let id = self.functions.len() as u64;
                self.function_ids.insert(key, id);
                id
            }
        };
        let key = (function, at.address, at.line);
        *self.location_ids.entry(key).or_insert_with(|| {
            self.locations.push(key);
            self.locations.len() as u64
        })
    }
}

impl CpuProfile {
    /// CPU time one sample stands for: the process's CPU time over the samples taken (the
    /// kernel's timer tick can make the delivered rate lower than the one asked for), or the
    /// asked-for period when nothing was measured.
    pub fn cpu_ns_per_sample(&self) -> u64 {
        match (self.samples_taken, self.process_cpu_ns) {
            (0, _) | (_, 0) => 1_000_000_000 / u64::from(self.hz.max(1)),
            (taken, cpu) => cpu / taken,
        }
    }

    /// The profile in pprof's protobuf format (uncompressed): for `go tool pprof`, speedscope
    /// and other viewers. Each stage is the outermost frame of its paths and a `stage` label.
    /// Functions carry their source file and locations their line (and the sampled address
    /// where a function was not inlined), so `go tool pprof -list run_model` shows the lines.
    pub fn to_pprof(&self) -> Vec<u8> {
        let mut strings = Strings::new();
        let mut table = Locations::default();
        let mut profile = Message::default();
        let period = self.cpu_ns_per_sample();
        for (kind, unit) in [("samples", "count"), ("cpu", "nanoseconds")] {
            let (kind, unit) = (strings.id(kind), strings.id(unit));
            profile.message(PROFILE_SAMPLE_TYPE, |value_type| {
                value_type.uint(VALUE_TYPE_TYPE, kind);
                value_type.uint(VALUE_TYPE_UNIT, unit);
            });
        }
        let stage_key = strings.id("stage");
        let no_line = SourceLine::default();
        for stack in &self.stacks {
            // Innermost first, the stage last.
            let mut locations: Vec<u64> = stack
                .frames
                .iter()
                .enumerate()
                .rev()
                .map(|(at, name)| table.id(name, stack.lines.get(at).unwrap_or(&no_line)))
                .collect();
            locations.push(table.id(&stack.stage, &no_line));
            let stage = strings.id(&stack.stage);
            profile.message(PROFILE_SAMPLE, |sample| {
                sample.packed(SAMPLE_LOCATION_ID, locations);
                sample.packed(SAMPLE_VALUE, [stack.samples, stack.samples * period]);
                sample.message(SAMPLE_LABEL, |label| {
                    label.uint(LABEL_KEY, stage_key);
                    label.uint(LABEL_STR, stage);
                });
            });
        }
        // One mapping: the program, already symbolised (viewers need not look for its binary).
        let program = std::env::current_exe()
            .map(|exe| exe.display().to_string())
            .unwrap_or_else(|_| "program".to_owned());
        let program = strings.id(&program);
        let has_lines = table.locations.iter().any(|location| location.2 != 0);
        profile.message(PROFILE_MAPPING, |mapping| {
            mapping.uint(MAPPING_ID, 1);
            mapping.uint(MAPPING_FILENAME, program);
            mapping.uint(MAPPING_HAS_FUNCTIONS, 1);
            mapping.uint(MAPPING_HAS_FILENAMES, u64::from(has_lines));
            mapping.uint(MAPPING_HAS_LINE_NUMBERS, u64::from(has_lines));
        });
        for (id, &(function, address, line)) in table.locations.iter().enumerate() {
            profile.message(PROFILE_LOCATION, |location| {
                location.uint(LOCATION_ID, id as u64 + 1);
                location.uint(LOCATION_MAPPING_ID, 1);
                location.uint(LOCATION_ADDRESS, address);
                location.message(LOCATION_LINE, |entry| {
                    entry.uint(LINE_FUNCTION_ID, function);
                    entry.uint(LINE_LINE, u64::from(line));
                });
            });
        }
        for (id, (name, file)) in table.functions.iter().enumerate() {
            let (name, file) = (strings.id(name), strings.id(file.as_deref().unwrap_or("")));
            profile.message(PROFILE_FUNCTION, |function| {
                function.uint(FUNCTION_ID, id as u64 + 1);
                function.uint(FUNCTION_NAME, name);
                function.uint(FUNCTION_SYSTEM_NAME, name);
                function.uint(FUNCTION_FILENAME, file);
            });
        }
        let (cpu, nanoseconds) = (strings.id("cpu"), strings.id("nanoseconds"));
        profile.message(PROFILE_PERIOD_TYPE, |value_type| {
            value_type.uint(VALUE_TYPE_TYPE, cpu);
            value_type.uint(VALUE_TYPE_UNIT, nanoseconds);
        });
        profile.uint(PROFILE_PERIOD, period);
        profile.uint(PROFILE_TIME_NANOS, self.started_unix_ns);
        profile.uint(PROFILE_DURATION_NANOS, self.duration_ns);
        let comment = strings.id(&format!("pipeline: {}", self.rate_said()));
        profile.packed(PROFILE_COMMENT, [comment]);
        for text in &strings.table {
            profile.bytes(PROFILE_STRING_TABLE, text.as_bytes());
        }
        profile.0
    }

    /// The samples and their rate as labels say them: the rate asked for and the one the
    /// samples came at (the kernel's timer tick can deliver fewer than asked).
    pub fn rate_said(&self) -> String {
        let achieved = match self.process_cpu_ns {
            0 => String::new(),
            cpu => format!(", {:.0} per CPU second", self.samples_taken as f64 * 1e9 / cpu as f64),
        };
        format!(
            "{} samples (asked for {} Hz{achieved}), {} outside stages, {} dropped",
            self.samples_taken, self.hz, self.samples_outside_stages, self.samples_dropped
        )
    }

    /// Writes [`to_pprof`](Self::to_pprof) to `path` (`go tool pprof -http=: path`, or open it
    /// in speedscope).
    ///
    /// # Errors
    ///
    /// [`Error::Write`] naming the path when it cannot be written.
    pub fn write_pprof(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        std::fs::write(path, self.to_pprof()).map_err(|source| Error::Write {
            what: "pprof profile",
            path: path.to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::cpu::{SampledStack, SourceLine};

    /// A protobuf field as read back: (field number, varint value or bytes).
    #[derive(Debug)]
    enum Field {
        Varint(u32, u64),
        Bytes(u32, Vec<u8>),
    }

    fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    }

    /// Reads one message's fields (only the two wire types the writer uses).
    fn fields(bytes: &[u8]) -> Vec<Field> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            let key = read_varint(bytes, &mut at);
            let field = (key >> 3) as u32;
            match key & 7 {
                0 => out.push(Field::Varint(field, read_varint(bytes, &mut at))),
                2 => {
                    let len = read_varint(bytes, &mut at) as usize;
                    out.push(Field::Bytes(field, bytes[at..at + len].to_vec()));
                    at += len;
                }
                other => panic!("wire type {other}"),
            }
        }
        out
    }

    fn packed(bytes: &[u8]) -> Vec<u64> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            out.push(read_varint(bytes, &mut at));
        }
        out
    }

    #[test]
    fn the_pprof_file_holds_each_path_with_its_stage_and_names() {
        let profile = CpuProfile {
            hz: 100,
            samples_taken: 10,
            process_cpu_ns: 100_000_000,
            started_unix_ns: 1_764_000_000_000_000_000,
            duration_ns: 2_000_000_000,
            stacks: vec![
                SampledStack {
                    stage: "Fraud".into(),
                    frames: vec!["app::score".into(), "app::mix".into()],
                    lines: vec![
                        SourceLine { file: Some("src/app.rs".into()), line: 12, address: 0x1000 },
                        SourceLine { file: Some("src/app.rs".into()), line: 30, address: 0 },
                    ],
                    samples: 7,
                },
                SampledStack {
                    stage: "Fraud".into(),
                    frames: vec!["app::score".into()],
                    lines: vec![SourceLine {
                        file: Some("src/app.rs".into()),
                        line: 14,
                        address: 0x1010,
                    }],
                    samples: 3,
                },
            ],
            ..CpuProfile::default()
        };
        let bytes = profile.to_pprof();
        let top = fields(&bytes);
        let strings: Vec<String> = top
            .iter()
            .filter_map(|f| match f {
                Field::Bytes(6, text) => Some(String::from_utf8(text.clone()).unwrap()),
                _ => None,
            })
            .collect();
        assert_eq!(strings[0], "");
        let varint = |inner: &[Field], number: u32| {
            inner.iter().find_map(|f| match f {
                Field::Varint(n, value) if *n == number => Some(*value),
                _ => None,
            })
        };
        // id → (name, file)
        let functions: HashMap<u64, (String, String)> = top
            .iter()
            .filter_map(|f| match f {
                Field::Bytes(5, function) => {
                    let inner = fields(function);
                    let text = |n| strings[varint(&inner, n).unwrap_or(0) as usize].clone();
                    Some((varint(&inner, 1)?, (text(2), text(4))))
                }
                _ => None,
            })
            .collect();
        // id → (function name, line, address)
        let locations: HashMap<u64, (String, u64, u64)> = top
            .iter()
            .filter_map(|f| match f {
                Field::Bytes(4, location) => {
                    let inner = fields(location);
                    let line = inner.iter().find_map(|f| match f {
                        Field::Bytes(4, line) => Some(fields(line)),
                        _ => None,
                    })?;
                    let function = &functions[&varint(&line, 1)?].0;
                    let address = varint(&inner, 3).unwrap_or(0);
                    Some((
                        varint(&inner, 1)?,
                        (function.clone(), varint(&line, 2).unwrap_or(0), address),
                    ))
                }
                _ => None,
            })
            .collect();
        assert_eq!(locations.len(), 4, "score at two lines, mix, and the stage: {locations:?}");
        assert!(locations.values().any(|l| *l == ("app::score".into(), 12, 0x1000)));
        assert!(locations.values().any(|l| *l == ("app::mix".into(), 30, 0)));
        assert!(functions.values().any(|f| *f == ("app::score".into(), "src/app.rs".into())));
        let samples: Vec<(Vec<String>, Vec<u64>)> = top
            .iter()
            .filter_map(|f| match f {
                Field::Bytes(2, sample) => {
                    let inner = fields(sample);
                    let mut names = Vec::new();
                    let mut values = Vec::new();
                    for field in inner {
                        match field {
                            Field::Bytes(1, ids) => {
                                names =
                                    packed(&ids).iter().map(|id| locations[id].0.clone()).collect()
                            }
                            Field::Bytes(2, v) => values = packed(&v),
                            _ => {}
                        }
                    }
                    Some((names, values))
                }
                _ => None,
            })
            .collect();
        assert!(top.iter().any(|f| matches!(f, Field::Varint(9, 1_764_000_000_000_000_000))));
        assert!(top.iter().any(|f| matches!(f, Field::Varint(10, 2_000_000_000))));
        assert!(strings.iter().any(|s| s.contains("asked for 100 Hz, 100 per CPU second")));
        assert_eq!(
            samples[0],
            (vec!["app::mix".into(), "app::score".into(), "Fraud".into()], vec![7, 70_000_000])
        );
        assert_eq!(samples[1], (vec!["app::score".into(), "Fraud".into()], vec![3, 30_000_000]));
        assert!(top.iter().any(|f| matches!(f, Field::Varint(12, 10_000_000))));
    }
}
