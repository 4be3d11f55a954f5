//! Records as chunks store them: three words each, a span's begin and end in one unit each.
//!
//! The [`Record`] enum is 40 bytes (its largest variants carry four words and a tag). A span
//! writes two records, and with a flight recorder armed those stores into buffers that fell out
//! of the cache are most of what recording costs, so chunks hold 24-byte [`Packed`] units
//! instead: a begin or an end fits one (a name is a pointer and a 32-bit length; an end's
//! allocation count shares the tag's word), and the few records of four words (an event's
//! begin, a submission, an async call's begin and end) take two units, always in one chunk.
//! Readers see [`Record`]s again through [`Records`].

use super::{AsyncOutcome, CounterTrack, Record, SliceKind};

/// One unit of a chunk: a whole record, or the first or second half of one. The tag is the low
/// byte of `head`, and bit 8 says whether a text of the thread's goes with the record; a
/// record's second unit has `head` 0. A record's first unit holds its time ([`Record::ts`]) in
/// `a`, so the flight recorder's writer finds a chunk's newest time without decoding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Packed {
    a: u64,
    b: u64,
    head: u64,
}

const CONTINUATION: u8 = 0;
const BEGIN: u8 = 1;
const END: u8 = 2;
const INSTANT: u8 = 3;
const COUNTER: u8 = 4;
const EVENT_ASYNC_END: u8 = 5;
const POLL_BEGIN: u8 = 6;
const EVENT_BEGIN: u8 = 7;
const SUBMIT: u8 = 8;
const ASYNC_BEGIN: u8 = 9;
const ASYNC_END: u8 = 10;
const EVENT_ASYNC_BEGIN: u8 = 11;

/// The bit of `head` that says a text goes with the record (an instant's arguments, an end's
/// outcome).
const HAS_TEXT: u64 = 1 << 8;
/// The most allocations an end can say (48 bits: a call would run for days to reach it).
const MOST_ALLOCATIONS: u64 = (1 << 48) - 1;
/// A name too long for its 32-bit length (none is: names are source identifiers) is kept as this.
const UNNAMEABLE: &str = "(name too long)";

impl Record {
    /// How many units it takes in a chunk: 1 or 2.
    #[inline]
    pub(crate) fn units(&self) -> usize {
        match self {
            Record::EventBegin { .. }
            | Record::Submit { .. }
            | Record::AsyncBegin { .. }
            | Record::AsyncEnd { .. }
            | Record::EventAsyncBegin { .. } => 2,
            Record::Begin { .. }
            | Record::End { .. }
            | Record::Instant { .. }
            | Record::Counter { .. }
            | Record::EventAsyncEnd { .. }
            | Record::PollBegin { .. } => 1,
        }
    }

    /// Its units: the first, and the second for a record of two.
    #[inline]
    pub(crate) fn pack(self) -> (Packed, Option<Packed>) {
        let one = |a, b, head| (Packed { a, b, head }, None);
        let two = |a, b, head, c, d| {
            (Packed { a, b, head }, Some(Packed { a: c, b: d, head: u64::from(CONTINUATION) }))
        };
        match self {
            Record::Begin { ts, name, kind } => {
                let (ptr, len) = name_parts(name);
                one(ts, ptr, tag(BEGIN) | (kind_code(kind) << 9) | (len << 32))
            }
            Record::End { ts, allocations, bytes, outcome } => {
                let allocations = allocations.min(MOST_ALLOCATIONS);
                one(ts, bytes, tag(END) | (u64::from(outcome) << 8) | (allocations << 16))
            }
            Record::Instant { ts, marker } => {
                let (ptr, len) = name_parts(marker);
                one(ts, ptr, tag(INSTANT) | HAS_TEXT | (len << 32))
            }
            Record::Counter { ts, track, value } => {
                one(ts, value.to_bits(), tag(COUNTER) | (track_code(track) << 9))
            }
            Record::EventAsyncEnd { ts, track } => one(ts, track, tag(EVENT_ASYNC_END)),
            Record::PollBegin { ts, id } => one(ts, id, tag(POLL_BEGIN)),
            Record::EventBegin { ts, id, wait_ns, flow } => {
                two(ts, id, tag(EVENT_BEGIN), wait_ns, flow)
            }
            // Its time is when it ended.
            Record::Submit { start, end, id, flow } => two(end, start, tag(SUBMIT), id, flow),
            Record::AsyncBegin { ts, name, id, in_event } => {
                let (ptr, len) = name_parts(name);
                let head = tag(ASYNC_BEGIN) | (u64::from(in_event) << 9) | (len << 32);
                two(ts, ptr, head, id, 0)
            }
            Record::AsyncEnd { ts, name, id, outcome, in_event } => {
                let (ptr, len) = name_parts(name);
                let head = tag(ASYNC_END)
                    | (u64::from(in_event) << 9)
                    | (outcome_code(outcome) << 16)
                    | (len << 32);
                two(ts, ptr, head, id, 0)
            }
            Record::EventAsyncBegin { ts, id, wait_ns, track, flow } => {
                two(ts, id, tag(EVENT_ASYNC_BEGIN) | (u64::from(flow) << 9), wait_ns, track)
            }
        }
    }
}

fn tag(code: u8) -> u64 {
    u64::from(code)
}

/// A `&'static str` as a pointer and a length that fits 32 bits.
#[inline]
fn name_parts(name: &'static str) -> (u64, u64) {
    if name.len() as u64 >> 32 != 0 {
        return name_too_long();
    }
    (name.as_ptr() as u64, name.len() as u64)
}

#[cold]
fn name_too_long() -> (u64, u64) {
    (UNNAMEABLE.as_ptr() as u64, UNNAMEABLE.len() as u64)
}

/// The name [`name_parts`] took apart.
///
/// # Safety
///
/// `ptr` and `len` come from [`name_parts`] of a `&'static str`.
unsafe fn name_from(ptr: u64, len: u64) -> &'static str {
    // SAFETY: the caller's guarantee: the bytes of a `&'static str`, whole.
    unsafe {
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr as *const u8, len as usize))
    }
}

fn kind_code(kind: SliceKind) -> u64 {
    match kind {
        SliceKind::Stage => 0,
        SliceKind::Function => 1,
        SliceKind::User => 2,
    }
}

fn kind_from(code: u64) -> SliceKind {
    match code {
        0 => SliceKind::Stage,
        1 => SliceKind::Function,
        _ => SliceKind::User,
    }
}

fn track_code(track: CounterTrack) -> u64 {
    match track {
        CounterTrack::QueueDepth => 0,
        CounterTrack::LiveHeap => 1,
    }
}

fn track_from(code: u64) -> CounterTrack {
    match code {
        0 => CounterTrack::QueueDepth,
        _ => CounterTrack::LiveHeap,
    }
}

const OUTCOMES: [AsyncOutcome; 6] = [
    AsyncOutcome::Completed,
    AsyncOutcome::Filtered,
    AsyncOutcome::Rejected,
    AsyncOutcome::Failed,
    AsyncOutcome::Panicked,
    AsyncOutcome::Cancelled,
];

fn outcome_code(outcome: AsyncOutcome) -> u64 {
    OUTCOMES.iter().position(|&o| o == outcome).unwrap_or(0) as u64
}

/// The record whose units start `units` (the second unit taken when it has two); `None` for a
/// unit that starts no record, or a record cut off.
///
/// # Safety
///
/// `units` were written by [`Record::pack`], in order, from a record boundary on.
unsafe fn unpack(units: &[Packed]) -> Option<(Record, usize)> {
    let first = units.first()?;
    let (a, b, head) = (first.a, first.b, first.head);
    let bits = |shift: u32, width: u32| (head >> shift) & ((1 << width) - 1);
    let flag = |shift: u32| bits(shift, 1) == 1;
    // SAFETY: called below only for tags whose records `pack` gave a `&'static str`'s parts (the
    // caller's guarantee that `pack` wrote these units).
    let name = || unsafe { name_from(b, head >> 32) };
    let second = || units.get(1).filter(|unit| unit.head as u8 == CONTINUATION);
    let record = match head as u8 {
        BEGIN => Record::Begin { ts: a, name: name(), kind: kind_from(bits(9, 2)) },
        END => Record::End { ts: a, allocations: head >> 16, bytes: b, outcome: flag(8) },
        INSTANT => Record::Instant { ts: a, marker: name() },
        COUNTER => {
            Record::Counter { ts: a, track: track_from(bits(9, 2)), value: f64::from_bits(b) }
        }
        EVENT_ASYNC_END => Record::EventAsyncEnd { ts: a, track: b },
        POLL_BEGIN => Record::PollBegin { ts: a, id: b },
        EVENT_BEGIN => {
            let rest = second()?;
            return Some((Record::EventBegin { ts: a, id: b, wait_ns: rest.a, flow: rest.b }, 2));
        }
        SUBMIT => {
            let rest = second()?;
            return Some((Record::Submit { start: b, end: a, id: rest.a, flow: rest.b }, 2));
        }
        ASYNC_BEGIN => {
            let rest = second()?;
            let record = Record::AsyncBegin { ts: a, name: name(), id: rest.a, in_event: flag(9) };
            return Some((record, 2));
        }
        ASYNC_END => {
            let rest = second()?;
            let outcome = OUTCOMES.get(bits(16, 8) as usize).copied().unwrap_or(OUTCOMES[0]);
            let (id, in_event) = (rest.a, flag(9));
            return Some((Record::AsyncEnd { ts: a, name: name(), id, outcome, in_event }, 2));
        }
        EVENT_ASYNC_BEGIN => {
            let rest = second()?;
            let (wait_ns, track) = (rest.a, rest.b);
            let record = Record::EventAsyncBegin { ts: a, id: b, wait_ns, track, flow: flag(9) };
            return Some((record, 2));
        }
        _ => return None,
    };
    Some((record, 1))
}

/// Published units of a chunk, read as the records they hold.
#[derive(Clone, Copy)]
pub(crate) struct Records<'a> {
    units: &'a [Packed],
}

impl<'a> Records<'a> {
    /// The records in `units`.
    ///
    /// # Safety
    ///
    /// `units` were written by [`Record::pack`], in order, starting at a record's first unit.
    pub(crate) unsafe fn new(units: &'a [Packed]) -> Self {
        Records { units }
    }

    /// The records, in the order they were written.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Record> + 'a {
        let mut rest = self.units;
        std::iter::from_fn(move || {
            // SAFETY: `new`'s guarantee; `rest` moves on by whole records.
            let (record, units) = unsafe { unpack(rest) }?;
            rest = &rest[units..];
            Some(record)
        })
    }

    /// The flows of its submissions ([`Record::Submit`]'s `flow`), found by their first unit's
    /// tag without decoding the other records (a dump looks through a whole window for them
    /// first; decoding every record for it was 8 % of a dump's CPU). A second unit's tag is
    /// never a record's, so every unit tagged as a submission begins one.
    pub(crate) fn submit_flows(&self) -> impl Iterator<Item = u64> + 'a {
        self.units
            .windows(2)
            .filter(|pair| pair[0].head as u8 == SUBMIT && pair[1].head as u8 == CONTINUATION)
            .map(|pair| pair[1].b)
    }

    /// The time of its last record ([`Record::ts`]; 0 for none): a thread writes its records
    /// in time order, so this is the newest time among them (the flight recorder lets a chunk go
    /// by it, without reading the rest). A record's first unit holds its time.
    pub(crate) fn last_ts(&self) -> u64 {
        let [.., before, last] = self.units else {
            return self.units.first().map_or(0, |unit| unit.a);
        };
        if last.head as u8 == CONTINUATION {
            before.a
        } else {
            last.a
        }
    }

    /// The first record.
    pub(crate) fn first(&self) -> Option<Record> {
        self.iter().next()
    }

    /// Whether it holds no record.
    pub(crate) fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// The units it spans (what a reader that read them moves on by).
    pub(crate) fn units(&self) -> usize {
        self.units.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The units `records` are packed into, in order.
    fn packed(records: &[Record]) -> Vec<Packed> {
        let mut units = Vec::new();
        for &record in records {
            let (first, second) = record.pack();
            units.push(first);
            units.extend(second);
        }
        units
    }

    fn round_trip(records: &[Record]) -> Vec<Record> {
        let units = packed(records);
        assert_eq!(units.len(), records.iter().map(Record::units).sum::<usize>());
        // SAFETY: packed above, from the first record on.
        unsafe { Records::new(&units) }.iter().collect()
    }

    #[test]
    fn submit_flows_are_the_flows_of_the_submissions_among_every_kind_of_record() {
        let records = [
            Record::Submit { start: 1, end: 2, id: 3, flow: 7 },
            Record::Begin { ts: 4, name: "stage", kind: SliceKind::Stage },
            Record::EventBegin { ts: 5, id: 8, wait_ns: 9, flow: 10 },
            Record::End { ts: 6, allocations: 1, bytes: 2, outcome: false },
            Record::AsyncBegin { ts: 7, name: "call", id: 8, in_event: true },
            Record::Submit { start: 8, end: 9, id: 10, flow: 0 },
            Record::EventAsyncBegin { ts: 9, id: 1, wait_ns: 2, track: 3, flow: true },
            Record::Submit { start: 10, end: 11, id: 12, flow: 13 },
        ];
        let units = packed(&records);
        // SAFETY: packed by `Record::pack`, in order.
        let read = unsafe { Records::new(&units) };
        let decoded: Vec<u64> = read
            .iter()
            .filter_map(|record| match record {
                Record::Submit { flow, .. } => Some(flow),
                _ => None,
            })
            .collect();
        assert_eq!(read.submit_flows().collect::<Vec<_>>(), decoded);
        assert_eq!(decoded, [7, 0, 13]);
        // A submission cut off after its first unit is not read.
        // SAFETY: as above, one unit fewer.
        let cut = unsafe { Records::new(&units[..units.len() - 1]) };
        assert_eq!(cut.submit_flows().collect::<Vec<_>>(), [7, 0]);
    }

    #[test]
    fn a_unit_is_three_words() {
        assert_eq!(std::mem::size_of::<Packed>(), 24);
    }

    #[test]
    fn every_record_reads_back_as_written() {
        let records = [
            Record::Begin { ts: 1, name: "FraudStage", kind: SliceKind::Stage },
            Record::Begin { ts: 2, name: "score", kind: SliceKind::Function },
            Record::Begin { ts: 3, name: "", kind: SliceKind::User },
            Record::End { ts: 4, allocations: 7, bytes: u64::MAX, outcome: true },
            Record::End { ts: 5, allocations: 0, bytes: 0, outcome: false },
            Record::Instant { ts: 6, marker: "stop ⏹" },
            Record::Counter { ts: 7, track: CounterTrack::QueueDepth, value: 12.5 },
            Record::Counter { ts: 8, track: CounterTrack::LiveHeap, value: -0.0 },
            Record::EventAsyncEnd { ts: 9, track: 3 },
            Record::PollBegin { ts: 10, id: u64::MAX },
            Record::EventBegin { ts: 11, id: 12, wait_ns: 13, flow: 14 },
            Record::Submit { start: 15, end: 16, id: 17, flow: 18 },
            Record::AsyncBegin { ts: 19, name: "Enrich", id: 20, in_event: true },
            Record::AsyncEnd {
                ts: 21,
                name: "Enrich",
                id: 22,
                outcome: AsyncOutcome::Cancelled,
                in_event: false,
            },
            Record::EventAsyncBegin { ts: 23, id: 24, wait_ns: 25, track: 26, flow: true },
        ];
        let mut outcomes = OUTCOMES.iter().map(|&outcome| Record::AsyncEnd {
            ts: 27,
            name: "x",
            id: 28,
            outcome,
            in_event: true,
        });
        let mut all: Vec<Record> = records.to_vec();
        all.extend(&mut outcomes);
        let read = round_trip(&all);
        assert_eq!(format!("{all:?}"), format!("{read:?}"));
    }

    #[test]
    fn the_last_time_is_read_from_the_units_whatever_the_last_record_takes() {
        let records = [
            Record::Begin { ts: 5, name: "a", kind: SliceKind::Stage },
            Record::End { ts: 30, allocations: 1, bytes: 2, outcome: true },
            Record::Submit { start: 31, end: 40, id: 41, flow: 99 },
            Record::End { ts: 42, allocations: 1, bytes: 2, outcome: false },
        ];
        let mut units = Vec::new();
        let mut last = Vec::new();
        for record in records {
            let (first, second) = record.pack();
            units.push(first);
            units.extend(second);
            // SAFETY: packed above, from the first record on.
            last.push(unsafe { Records::new(&units) }.last_ts());
        }
        assert_eq!(last, [5, 30, 40, 42]);
        // SAFETY: nothing to read.
        assert_eq!(unsafe { Records::new(&[]) }.last_ts(), 0);
    }

    #[test]
    fn an_end_keeps_allocation_counts_up_to_48_bits() {
        let end = |allocations| Record::End { ts: 1, allocations, bytes: 2, outcome: true };
        let read = round_trip(&[end(1 << 40), end(u64::MAX)]);
        assert!(matches!(read[0], Record::End { allocations, .. } if allocations == 1 << 40));
        assert!(
            matches!(read[1], Record::End { allocations, .. } if allocations == MOST_ALLOCATIONS)
        );
    }

    #[test]
    fn a_two_unit_record_cut_off_is_not_read() {
        let (first, _) = Record::Submit { start: 1, end: 2, id: 3, flow: 4 }.pack();
        // SAFETY: packed above; the second unit is missing, which `unpack` must notice.
        assert_eq!(unsafe { Records::new(&[first]) }.iter().count(), 0);
    }
}
