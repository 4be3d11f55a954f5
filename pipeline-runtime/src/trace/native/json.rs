//! The Chrome trace JSON of each entry the native writer emits: numbers written straight into the
//! output, names escaped only when they need it, timestamps in microseconds with nanosecond
//! decimals.

use super::track::{Begin, End};
use std::io::Write;
use std::mem::MaybeUninit;

use crate::trace_records::{CounterTrack, SliceKind};

/// Remembers, per `&'static str` name (by address), whether it needs escaping: the same few
/// names are written over and over. Direct-mapped, so a look-up is an index and a compare.
#[derive(Default)]
pub(super) struct NameCache([(usize, usize, bool); 32]);

impl NameCache {
    /// `"name"`, escaped if it needs to be.
    #[inline]
    pub(super) fn write(&mut self, out: &mut Vec<u8>, name: &'static str) {
        let key = (name.as_ptr() as usize, name.len());
        let entry = &mut self.0[(key.0 >> 3 ^ key.1) % 32];
        if (entry.0, entry.1) != key {
            *entry = (key.0, key.1, is_plain(name));
        }
        if entry.2 {
            quoted(out, name);
        } else {
            string(out, name);
        }
    }
}

/// The decimal digits of every value below 100, in pairs.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// How many decimal digits `n` has.
#[inline(always)]
fn digit_count(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Writes `n`'s digits into `to`, which is exactly [`digit_count`]`(n)` long, two at a time
/// from the right. Numbers are written straight into the output's spare capacity: made in a
/// buffer on the stack and copied, the copy's wide load waited on the digits' narrow stores (and
/// a copy of the text's own length is a call to `memcpy`: four per slice were a sixth of a
/// dump's CPU).
#[inline(always)]
fn write_digits(to: &mut [MaybeUninit<u8>], mut n: u64) {
    let mut at = to.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        to[at].write(DIGIT_PAIRS[pair]);
        to[at + 1].write(DIGIT_PAIRS[pair + 1]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        to[0].write(DIGIT_PAIRS[pair]);
        to[1].write(DIGIT_PAIRS[pair + 1]);
    } else {
        to[0].write(b'0' + n as u8);
    }
}

/// Appends `len` bytes that `fill` writes into the output's spare capacity.
#[inline(always)]
fn append_with(out: &mut Vec<u8>, len: usize, fill: impl FnOnce(&mut [MaybeUninit<u8>])) {
    out.reserve(len);
    let at = out.len();
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: `fill` initialized all `len` bytes after the old length (every caller's `fill`
    // writes each byte of its slice), and `reserve` made room for them.
    unsafe { out.set_len(at + len) };
}

/// `n` in decimal.
#[inline]
pub(super) fn number(out: &mut Vec<u8>, n: u64) {
    append_with(out, digit_count(n), |to| write_digits(to, n));
}

/// Nanoseconds as microseconds with three decimals (Chrome trace timestamps are µs).
#[inline]
pub(super) fn micros(out: &mut Vec<u8>, ns: u64) {
    let (whole, fraction) = (ns / 1000, (ns % 1000) as usize);
    let digits = digit_count(whole);
    append_with(out, digits + 4, |to| {
        write_digits(&mut to[..digits], whole);
        to[digits].write(b'.');
        to[digits + 1].write(b'0' + (fraction / 100) as u8);
        let pair = fraction % 100 * 2;
        to[digits + 2].write(DIGIT_PAIRS[pair]);
        to[digits + 3].write(DIGIT_PAIRS[pair + 1]);
    });
}

/// A JSON string; names are usually plain, and then copied as they are.
pub(super) fn string(out: &mut Vec<u8>, text: &str) {
    if is_plain(text) {
        quoted(out, text);
    } else {
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Whether `text` needs no escaping in JSON.
pub(super) fn is_plain(text: &str) -> bool {
    text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
}

/// `"text"`, for text known to need no escaping.
#[inline]
pub(super) fn quoted(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// `,\n{"ph":"P","pid":..,"tid":..,"ts":` — the start every event shares (its time follows).
pub(super) fn head(out: &mut Vec<u8>, phase: u8, pid: u64, tid: u64) {
    out.extend_from_slice(b",\n{\"ph\":\"");
    out.push(phase);
    out.extend_from_slice(b"\",\"pid\":");
    number(out, pid);
    out.extend_from_slice(b",\"tid\":");
    number(out, tid);
    out.extend_from_slice(b",\"ts\":");
}

/// A thread's [`head`] for one phase, kept padded so that appending it is one fixed-size copy.
pub(super) struct EventPrefix {
    padded: [u8; EventPrefix::PADDED],
    len: usize,
}

impl EventPrefix {
    /// The longest head (two 20-digit numbers) is 71 bytes.
    const PADDED: usize = 80;

    pub(super) fn new(phase: u8, pid: u64, tid: u64) -> Self {
        let mut text = Vec::new();
        head(&mut text, phase, pid, tid);
        let mut padded = [0u8; Self::PADDED];
        padded[..text.len()].copy_from_slice(&text);
        EventPrefix { padded, len: text.len() }
    }

    /// Appends the head: one fixed-size copy of [`EventPrefix::PADDED`] bytes, of which the
    /// output keeps the head's own length (a copy of that length is a call to `memcpy`).
    #[inline]
    pub(super) fn append_to(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.padded);
        out.truncate(at + self.len);
    }
}

/// [`head`] and the event's time.
pub(super) fn head_at(out: &mut Vec<u8>, phase: u8, pid: u64, tid: u64, ts: u64) {
    head(out, phase, pid, tid);
    micros(out, ts);
}

pub(super) fn metadata(out: &mut Vec<u8>, pid: u64, tid: u64, kind: &str, name: &str) {
    if out.ends_with(b"[\n") {
        out.extend_from_slice(b"{\"ph\":\"M\"");
    } else {
        out.extend_from_slice(b",\n{\"ph\":\"M\"");
    }
    out.extend_from_slice(b",\"pid\":");
    number(out, pid);
    out.extend_from_slice(b",\"tid\":");
    number(out, tid);
    out.extend_from_slice(b",\"name\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"args\":{\"name\":");
    string(out, name);
    out.extend_from_slice(b"}}");
}

/// `,"name":..` and, for the toolkit's own slices, `,"cat":..` with the flow binding.
pub(super) fn name_and_binding(out: &mut Vec<u8>, names: &mut NameCache, begin: &Begin) {
    match *begin {
        Begin::Slice { name, kind, .. } => {
            out.extend_from_slice(b",\"name\":");
            names.write(out, name);
            if kind == SliceKind::User {
                out.extend_from_slice(b",\"cat\":\"user\"");
            }
        }
        Begin::Event { flow, .. } => {
            out.extend_from_slice(b",\"name\":\"event\",\"cat\":\"pipeline\"");
            flow_binding(out, flow, b"flow_in");
        }
        Begin::Submit { flow, .. } => {
            out.extend_from_slice(b",\"name\":\"submit\",\"cat\":\"pipeline\"");
            flow_binding(out, flow, b"flow_out");
        }
        Begin::Poll { .. } => out.extend_from_slice(b",\"name\":\"poll\",\"cat\":\"pipeline\""),
    }
}

/// `,"bind_id":N,"flow_in":true` (or `flow_out`): ties the slice to its flow arrow (none for 0).
pub(super) fn flow_binding(out: &mut Vec<u8>, flow: u64, direction: &[u8]) {
    if flow == 0 {
        return;
    }
    out.extend_from_slice(b",\"bind_id\":");
    number(out, flow);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(direction);
    out.extend_from_slice(b"\":true");
}

/// The slice's arguments (`,"args":{..}`), when it has any to say.
pub(super) fn args(out: &mut Vec<u8>, begin: &Begin, end: Option<&End>) {
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, key: &str| {
        out.extend_from_slice(if first { b",\"args\":{\"" } else { b",\"" });
        first = false;
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
    };
    match *begin {
        Begin::Event { id, wait_ns, .. } => {
            field(out, "id");
            number(out, id);
            field(out, "queue_wait_us");
            number(out, wait_ns / 1000);
        }
        Begin::Submit { id, .. } => {
            field(out, "id");
            number(out, id);
        }
        Begin::Poll { id, .. } => {
            field(out, "event");
            number(out, id);
        }
        Begin::Slice { .. } => {}
    }
    if let Some(end) = end {
        if end.allocations != 0 || end.bytes != 0 {
            field(out, "allocations");
            number(out, end.allocations);
            field(out, "bytes_allocated");
            number(out, end.bytes);
        }
        if let Some(outcome) = &end.outcome {
            field(out, "outcome");
            string(out, outcome);
        }
        if end.unfinished {
            field(out, "unfinished");
            out.extend_from_slice(b"true");
        }
    }
    if !first {
        out.push(b'}');
    }
}

pub(super) fn complete_event(
    out: &mut Vec<u8>,
    prefix: &EventPrefix,
    names: &mut NameCache,
    begin: &Begin,
    end: &End,
) {
    prefix.append_to(out);
    micros(out, begin.ts());
    out.extend_from_slice(b",\"dur\":");
    micros(out, end.ts.saturating_sub(begin.ts()));
    name_and_binding(out, names, begin);
    args(out, begin, Some(end));
    out.push(b'}');
}

pub(super) fn begin_event(
    out: &mut Vec<u8>,
    pid: u64,
    tid: u64,
    names: &mut NameCache,
    begin: &Begin,
) {
    head_at(out, b'B', pid, tid, begin.ts());
    name_and_binding(out, names, begin);
    args(out, begin, None);
    out.push(b'}');
}

pub(super) fn end_event(out: &mut Vec<u8>, pid: u64, tid: u64, begin: &Begin, end: &End) {
    head_at(out, b'E', pid, tid, end.ts.max(begin.ts()));
    // Only the end's own arguments: the begin carried the rest.
    args(out, &Begin::Slice { ts: 0, name: "", kind: SliceKind::Function }, Some(end));
    out.push(b'}');
}

pub(super) fn instant(out: &mut Vec<u8>, pid: u64, tid: u64, ts: u64, marker: &str, args: &str) {
    head_at(out, b'i', pid, tid, ts);
    out.extend_from_slice(b",\"s\":\"t\",\"name\":");
    string(out, marker);
    out.extend_from_slice(b",\"args\":");
    out.extend_from_slice(args.as_bytes());
    out.push(b'}');
}

pub(super) fn counter(out: &mut Vec<u8>, pid: u64, ts: u64, track: CounterTrack, value: f64) {
    if !value.is_finite() {
        return; // Perfetto refuses NaN and infinities
    }
    let (name, series) = track.name_and_series();
    head_at(out, b'C', pid, pid, ts);
    out.extend_from_slice(b",\"name\":");
    string(out, name);
    out.extend_from_slice(b",\"args\":{");
    string(out, series);
    out.push(b':');
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
    } else {
        let _ = write!(out, "{value}");
    }
    out.extend_from_slice(b"}}");
}

/// Which track an async slice is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum AsyncTrack {
    /// A call's own (category `async`).
    Call(u64),
    /// An async event's, where its stages nest (category `pipeline`).
    Event(u64),
}

/// An async slice's begin (`b`) or end (`e`) on `track`; `note` is an outcome flag
/// (`{"panicked":true}`).
#[allow(clippy::too_many_arguments)]
pub(super) fn async_event(
    out: &mut Vec<u8>,
    phase: u8,
    pid: u64,
    tid: u64,
    ts: u64,
    name: &str,
    track: AsyncTrack,
    note: Option<&str>,
) {
    head_at(out, phase, pid, tid, ts);
    out.extend_from_slice(b",\"name\":");
    string(out, name);
    let id = match track {
        AsyncTrack::Call(id) => {
            out.extend_from_slice(b",\"cat\":\"async\",\"id\":");
            id
        }
        AsyncTrack::Event(id) => {
            out.extend_from_slice(b",\"cat\":\"pipeline\",\"id\":");
            id
        }
    };
    number(out, id);
    if let Some(note) = note {
        out.extend_from_slice(b",\"args\":{\"");
        out.extend_from_slice(note.as_bytes());
        out.extend_from_slice(b"\":true}");
    }
    out.push(b'}');
}

/// The begin of an async event's slice: its id and queue wait, and (`flow`) the end of its
/// submission's arrow, which shares the track's id.
#[allow(clippy::too_many_arguments)]
pub(super) fn async_event_begin(
    out: &mut Vec<u8>,
    pid: u64,
    tid: u64,
    ts: u64,
    id: u64,
    wait_ns: u64,
    track: u64,
    flow: bool,
) {
    head_at(out, b'b', pid, tid, ts);
    out.extend_from_slice(b",\"name\":\"event\",\"cat\":\"pipeline\",\"id\":");
    number(out, track);
    if flow {
        flow_binding(out, track, b"flow_in");
    }
    out.extend_from_slice(b",\"args\":{\"id\":");
    number(out, id);
    out.extend_from_slice(b",\"queue_wait_us\":");
    number(out, wait_ns / 1000);
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values around every digit count and the ends of the range.
    fn samples() -> Vec<u64> {
        let mut values =
            vec![0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 1001, u64::MAX, u64::MAX - 1];
        let mut power = 1u64;
        while let Some(next) = power.checked_mul(10) {
            values.extend([next - 1, next, next + 1, next + 7 * power]);
            power = next;
        }
        values
    }

    #[test]
    fn numbers_are_their_decimal_text() {
        for n in samples() {
            let mut out = b"x".to_vec();
            number(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes(), "{n}");
        }
    }

    #[test]
    fn micros_have_three_decimals() {
        for ns in samples().into_iter().chain([5, 50, 500, 1_005, 1_050, 12_345_678]) {
            let mut out = Vec::new();
            micros(&mut out, ns);
            let expected = format!("{}.{:03}", ns / 1000, ns % 1000);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{ns}");
        }
    }

    #[test]
    fn appends_grow_a_full_buffer_and_keep_what_it_held() {
        let mut out = Vec::with_capacity(3);
        out.extend_from_slice(b"ab,");
        for n in 0..1000u64 {
            number(&mut out, n * 7919);
            out.push(b',');
        }
        let text = String::from_utf8(out).unwrap();
        let expected: String = std::iter::once("ab,".to_owned())
            .chain((0..1000u64).map(|n| format!("{},", n * 7919)))
            .collect();
        assert_eq!(text, expected);
    }

    #[test]
    fn an_event_prefix_is_its_head() {
        for (pid, tid) in [(1, 2), (u64::MAX, u64::MAX), (12_345, 0)] {
            let mut expected = Vec::new();
            head(&mut expected, b'X', pid, tid);
            let mut out = b"[".to_vec();
            EventPrefix::new(b'X', pid, tid).append_to(&mut out);
            assert_eq!(out[1..], expected[..]);
        }
    }
}
