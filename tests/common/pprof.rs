//! A small reader of pprof's `profile.proto` (uncompressed), for checking what the toolkit
//! writes without a protobuf crate: the fields `go tool pprof` reads.

use std::collections::HashMap;

/// A decoded profile: what viewers show.
#[derive(Debug, Default)]
pub struct Pprof {
    /// Function id → (name, file).
    pub functions: HashMap<u64, (String, String)>,
    /// Location id → (address, [(function id, line)], innermost first).
    pub locations: HashMap<u64, (u64, Vec<(u64, u64)>)>,
    /// Each sample: (location ids innermost first, values).
    pub samples: Vec<(Vec<u64>, Vec<u64>)>,
    pub time_nanos: u64,
    pub duration_nanos: u64,
    pub comments: Vec<String>,
}

impl Pprof {
    /// Every function name with its file.
    pub fn function_names(&self) -> Vec<&str> {
        self.functions.values().map(|(name, _)| name.as_str()).collect()
    }

    /// The lines sampled in the function called `name`.
    pub fn lines_of(&self, name: &str) -> Vec<u64> {
        let ids: Vec<u64> =
            self.functions.iter().filter(|(_, f)| f.0 == name).map(|(id, _)| *id).collect();
        let mut lines: Vec<u64> = self
            .locations
            .values()
            .flat_map(|(_, lines)| lines.iter())
            .filter(|(function, line)| ids.contains(function) && *line > 0)
            .map(|(_, line)| *line)
            .collect();
        lines.sort_unstable();
        lines.dedup();
        lines
    }
}

/// One field: (number, varint value) or (number, bytes).
enum Field<'a> {
    Varint(u32, u64),
    Bytes(u32, &'a [u8]),
}

fn varint(bytes: &[u8], at: &mut usize) -> u64 {
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

fn fields(bytes: &[u8]) -> Vec<Field<'_>> {
    let (mut at, mut out) = (0, Vec::new());
    while at < bytes.len() {
        let key = varint(bytes, &mut at);
        let number = (key >> 3) as u32;
        match key & 7 {
            0 => out.push(Field::Varint(number, varint(bytes, &mut at))),
            2 => {
                let len = varint(bytes, &mut at) as usize;
                out.push(Field::Bytes(number, &bytes[at..at + len]));
                at += len;
            }
            other => panic!("wire type {other} is not one pprof's writer uses"),
        }
    }
    out
}

/// A packed repeated varint, or a single one.
fn numbers(field: &Field<'_>) -> Vec<u64> {
    match field {
        Field::Varint(_, value) => vec![*value],
        Field::Bytes(_, bytes) => {
            let (mut at, mut out) = (0, Vec::new());
            while at < bytes.len() {
                out.push(varint(bytes, &mut at));
            }
            out
        }
    }
}

fn number_of(fields: &[Field<'_>], wanted: u32) -> u64 {
    fields
        .iter()
        .find_map(|f| match f {
            Field::Varint(n, value) if *n == wanted => Some(*value),
            _ => None,
        })
        .unwrap_or(0)
}

/// Decodes `bytes` (panics on what is not a profile).
pub fn read(bytes: &[u8]) -> Pprof {
    let top = fields(bytes);
    let strings: Vec<String> = top
        .iter()
        .filter_map(|f| match f {
            Field::Bytes(6, text) => Some(String::from_utf8_lossy(text).into_owned()),
            _ => None,
        })
        .collect();
    let mut profile = Pprof {
        time_nanos: number_of(&top, 9),
        duration_nanos: number_of(&top, 10),
        ..Pprof::default()
    };
    for field in &top {
        match field {
            Field::Bytes(2, sample) => {
                let inner = fields(sample);
                let of = |n| inner.iter().filter(move |f| field_number(f) == n).flat_map(numbers);
                profile.samples.push((of(1).collect(), of(2).collect()));
            }
            Field::Bytes(4, location) => {
                let inner = fields(location);
                let lines = inner
                    .iter()
                    .filter_map(|f| match f {
                        Field::Bytes(4, line) => {
                            let line = fields(line);
                            Some((number_of(&line, 1), number_of(&line, 2)))
                        }
                        _ => None,
                    })
                    .collect();
                profile.locations.insert(number_of(&inner, 1), (number_of(&inner, 3), lines));
            }
            Field::Bytes(5, function) => {
                let inner = fields(function);
                let text = |n| strings[number_of(&inner, n) as usize].clone();
                profile.functions.insert(number_of(&inner, 1), (text(2), text(4)));
            }
            Field::Bytes(13, _) | Field::Varint(13, _) => {
                for id in numbers(field) {
                    profile.comments.push(strings[id as usize].clone());
                }
            }
            _ => {}
        }
    }
    profile
}

fn field_number(field: &Field<'_>) -> u32 {
    match field {
        Field::Varint(n, _) | Field::Bytes(n, _) => *n,
    }
}
