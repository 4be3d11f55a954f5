//! Streaming reader of Chrome trace JSON: hands each trace event to a callback as it is parsed,
//! so a trace of millions of events never sits in memory as text or as a `Vec`.
//!
//! Both forms of the format are read: a top-level array of events (what tracing-chrome writes)
//! and an object whose `traceEvents` key holds that array. As Perfetto's importer does, it takes
//! timestamps written as strings and trailing commas before `]` or `}`. A file that ends early
//! (the traced process was killed) or turns malformed part-way is read up to that point, and the
//! reader says where it stopped.

use std::fmt;
use std::io::Read;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One trace event, with the fields the analysis uses; everything else is skipped unparsed.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TraceEvent {
    /// Phase: `B`/`E` (begin/end), `X` (complete), `C` (counter), `M` (metadata), `i` (instant)...
    #[serde(default)]
    pub ph: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cat: Option<String>,
    #[serde(default)]
    pub pid: TrackId,
    #[serde(default)]
    pub tid: TrackId,
    /// Timestamp in microseconds.
    #[serde(default, deserialize_with = "micros")]
    pub ts: Option<f64>,
    /// Duration of an `X` event, in microseconds.
    #[serde(default, deserialize_with = "micros")]
    pub dur: Option<f64>,
    /// An async slice's id (`b`/`e`).
    #[serde(default)]
    pub id: Option<TrackId>,
    /// The slice starts a flow arrow (`bind_id` with `flow_out`).
    #[serde(default)]
    pub flow_out: Option<bool>,
    #[serde(default)]
    pub args: Option<EventArgs>,
}

/// The arguments this toolkit's slices and closing entry carry, and the numeric values of any
/// others (a counter's series); everything else is skipped unparsed.
#[derive(Debug, Default)]
pub(crate) struct EventArgs {
    /// Present on a `#[stage]` slice's end: marks the slice as a stage.
    pub outcome: Option<IgnoredAny>,
    pub allocations: Option<Count>,
    pub bytes_allocated: Option<Count>,
    /// On a worker's per-event slice: how long the event waited in the queue.
    pub queue_wait_us: Option<Count>,
    /// On the closing `pipeline_profile` metadata entry: the names of the `#[stage]`s.
    pub stages: Option<Vec<String>>,
    /// On the closing `pipeline_profile` metadata entry: whether allocations were measured (so
    /// a stage slice without allocation arguments allocated nothing).
    pub allocations_measured: Option<bool>,
    /// On the closing `pipeline_profile` metadata entry: records the writer left out.
    pub records_left_out: Option<Count>,
    /// On the closing `pipeline_profile` metadata entry: the writing clock's resolution.
    pub timer_resolution_ns: Option<Count>,
    /// On the closing `pipeline_profile` metadata entry of a flight recorder dump: the window.
    pub flight_recorder_window: Option<FlightWindow>,
    /// On a slice the trace's end cut short (the call was still running).
    pub unfinished: Option<bool>,
    /// Other arguments whose values are numbers (or numeric strings): a counter's series.
    pub numbers: Vec<(String, f64)>,
}

impl<'de> Deserialize<'de> for EventArgs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArgsVisitor;
        impl<'de> Visitor<'de> for ArgsVisitor {
            type Value = EventArgs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of arguments")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventArgs, A::Error> {
                let mut args = EventArgs::default();
                while let Some(key) = map.next_key::<ArgKey>()? {
                    match key {
                        ArgKey::Outcome => args.outcome = Some(map.next_value()?),
                        ArgKey::Allocations => args.allocations = Some(map.next_value()?),
                        ArgKey::BytesAllocated => args.bytes_allocated = Some(map.next_value()?),
                        ArgKey::QueueWaitUs => args.queue_wait_us = Some(map.next_value()?),
                        ArgKey::Stages => args.stages = map.next_value()?,
                        ArgKey::AllocationsMeasured => {
                            args.allocations_measured = map.next_value()?;
                        }
                        ArgKey::RecordsLeftOut => args.records_left_out = Some(map.next_value()?),
                        ArgKey::TimerResolutionNs => {
                            args.timer_resolution_ns = Some(map.next_value()?);
                        }
                        ArgKey::Unfinished => args.unfinished = map.next_value()?,
                        ArgKey::FlightRecorderWindow => {
                            // Only this entry is lost if it is not the object a dump writes.
                            let value = map.next_value::<serde_json::Value>()?;
                            args.flight_recorder_window = serde_json::from_value(value).ok();
                        }
                        ArgKey::Skipped => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        ArgKey::Other(key) => {
                            if let Some(value) = map.next_value::<MaybeNumber>()?.0 {
                                args.numbers.push((key, value));
                            }
                        }
                    }
                }
                Ok(args)
            }
            fn visit_unit<E>(self) -> Result<EventArgs, E> {
                Ok(EventArgs::default())
            }
        }
        deserializer.deserialize_any(ArgsVisitor)
    }
}

/// What a flight recorder dump's closing entry says of its window (times in the trace's
/// microseconds).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, Deserialize)]
#[non_exhaustive]
pub struct FlightWindow {
    /// What fired it, as the report says it.
    #[serde(default)]
    pub trigger: String,
    /// When it fired.
    #[serde(default)]
    pub triggered_at_us: f64,
    /// The window asked for, in milliseconds.
    #[serde(default)]
    pub window_ms: f64,
    /// Everything recorded after this time is in the dump (0: since recording began).
    #[serde(default)]
    pub complete_after_us: f64,
    /// Its oldest record.
    #[serde(default)]
    pub first_record_us: f64,
    /// When the window was taken: its end.
    #[serde(default)]
    pub dumped_at_us: f64,
}

/// An argument's name: the toolkit's own are matched without allocating.
enum ArgKey {
    Outcome,
    Allocations,
    BytesAllocated,
    QueueWaitUs,
    Stages,
    AllocationsMeasured,
    RecordsLeftOut,
    TimerResolutionNs,
    Unfinished,
    FlightRecorderWindow,
    /// Known and not needed (the event slices' ids, process and thread names).
    Skipped,
    Other(String),
}

impl<'de> Deserialize<'de> for ArgKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = ArgKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an argument name")
            }
            fn visit_str<E>(self, key: &str) -> Result<ArgKey, E> {
                Ok(match key {
                    "outcome" => ArgKey::Outcome,
                    "allocations" => ArgKey::Allocations,
                    "bytes_allocated" => ArgKey::BytesAllocated,
                    "queue_wait_us" => ArgKey::QueueWaitUs,
                    "stages" => ArgKey::Stages,
                    "allocations_measured" => ArgKey::AllocationsMeasured,
                    "records_left_out" => ArgKey::RecordsLeftOut,
                    "timer_resolution_ns" => ArgKey::TimerResolutionNs,
                    "unfinished" => ArgKey::Unfinished,
                    "flight_recorder_window" => ArgKey::FlightRecorderWindow,
                    "id" | "name" | "event" | "stage" | "writer" => ArgKey::Skipped,
                    other => ArgKey::Other(other.to_owned()),
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A value kept when it is a finite number (or a string holding one), skipped otherwise.
struct MaybeNumber(Option<f64>);

impl<'de> Deserialize<'de> for MaybeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl<'de> Visitor<'de> for NumberVisitor {
            type Value = MaybeNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_u64<E>(self, v: u64) -> Result<MaybeNumber, E> {
                Ok(MaybeNumber(Some(v as f64)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<MaybeNumber, E> {
                Ok(MaybeNumber(Some(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<MaybeNumber, E> {
                Ok(MaybeNumber(v.is_finite().then_some(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<MaybeNumber, E> {
                Ok(MaybeNumber(v.trim().parse::<f64>().ok().filter(|v| v.is_finite())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<MaybeNumber, E> {
                Ok(MaybeNumber(None))
            }
            fn visit_unit<E>(self) -> Result<MaybeNumber, E> {
                Ok(MaybeNumber(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeNumber, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeNumber(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeNumber, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeNumber(None))
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

/// A time in microseconds written as a number or, as Perfetto also accepts, a string.
fn micros<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    struct MicrosVisitor;
    impl Visitor<'_> for MicrosVisitor {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a time in microseconds")
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(v.is_finite().then_some(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(MicrosVisitor)
}

/// A count written as a number or, as tracing-chrome writes recorded fields, as a string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Count(pub Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl Visitor<'_> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
                Ok(Count(Some(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
                Ok(Count(u64::try_from(v).ok()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Count, E> {
                Ok(Count((v >= 0.0 && v.is_finite()).then_some(v as u64)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Count, E> {
                Ok(Count(v.trim().parse().ok()))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
        }
        deserializer.deserialize_any(CountVisitor)
    }
}

/// A process or thread id, written as a number or a string; strings are hashed to a number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct TrackId(pub u64);

impl<'de> Deserialize<'de> for TrackId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = TrackId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a process or thread id")
            }
            fn visit_u64<E>(self, v: u64) -> Result<TrackId, E> {
                Ok(TrackId(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<TrackId, E> {
                Ok(TrackId(v as u64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<TrackId, E> {
                Ok(TrackId(v.to_bits()))
            }
            fn visit_str<E>(self, v: &str) -> Result<TrackId, E> {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                v.hash(&mut hasher);
                Ok(TrackId(hasher.finish()))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

/// Where and why reading stopped before the end of a well-formed trace.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct TraceCut {
    /// Line of the first byte that could not be read (1-based).
    pub line: usize,
    /// Column of that byte (1-based).
    pub column: usize,
    /// What was wrong there, e.g. "EOF while parsing an object".
    pub reason: String,
}

impl fmt::Display for TraceCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.reason)
    }
}

/// What reading a JSON file found at its top level.
pub(crate) enum Outcome {
    /// A Chrome trace: `events` events were handed over; `stop` says where reading ended early.
    Trace { events: u64, cut: Option<TraceCut> },
    /// A JSON object without `traceEvents`: its keys and values (for the caller to recognise,
    /// e.g. a saved report).
    Object(Map<String, Value>),
    /// Neither: the reason, for the caller's error message.
    NotATrace(String),
}

/// Reads `reader` as a Chrome trace, calling `on_event` for each event in file order.
pub(crate) fn read_events(reader: impl Read, on_event: &mut dyn FnMut(TraceEvent)) -> Outcome {
    let mut events = 0u64;
    let mut object = None;
    let mut found_events = false;
    // serde_json reads byte by byte; std serves that from a `BufReader`'s buffer directly.
    let filtered = std::io::BufReader::with_capacity(1 << 16, TrailingCommas::new(reader));
    let mut deserializer = serde_json::Deserializer::from_reader(filtered);
    let top = TopLevel {
        sink: Sink { on_event, events: &mut events },
        object: &mut object,
        found_events: &mut found_events,
    };
    let result = top.deserialize(&mut deserializer).and_then(|()| deserializer.end());
    let cut = result.err().map(|error| TraceCut {
        line: error.line(),
        column: error.column(),
        reason: reason(&error),
    });
    if events > 0 || (found_events && cut.is_none()) {
        return Outcome::Trace { events, cut };
    }
    match (object, cut) {
        (Some(map), None) => Outcome::Object(map),
        (_, Some(cut)) if cut.line == 1 && cut.column <= 1 => {
            Outcome::NotATrace(format!("it is not JSON ({})", cut.reason))
        }
        (_, Some(cut)) => Outcome::NotATrace(format!("it stops being a trace at {cut}")),
        (None, None) => Outcome::NotATrace("it holds no trace events".to_owned()),
    }
}

/// Passes JSON through, leaving out commas that stand before `]` or `}` (outside strings), which
/// Perfetto's importer accepts and serde_json does not. Line breaks are kept, so positions in
/// error messages still point into the file.
struct TrailingCommas<R> {
    inner: R,
    buffer: Vec<u8>,
    start: usize,
    in_string: bool,
    escaped: bool,
    /// A comma held back until the next significant byte shows whether it stays.
    held_comma: bool,
    /// Whitespace read after the held comma.
    held_space: Vec<u8>,
    done: bool,
}

impl<R: Read> TrailingCommas<R> {
    fn new(inner: R) -> Self {
        TrailingCommas {
            inner,
            buffer: Vec::new(),
            start: 0,
            in_string: false,
            escaped: false,
            held_comma: false,
            held_space: Vec::new(),
            done: false,
        }
    }

    /// Reads and filters the next piece of input into `buffer`.
    fn fill(&mut self) -> std::io::Result<()> {
        let mut raw = [0u8; 1 << 16];
        let read = self.inner.read(&mut raw)?;
        self.buffer.clear();
        self.start = 0;
        if read == 0 {
            self.done = true;
            if self.held_comma {
                self.buffer.push(b',');
                self.held_comma = false;
            }
            self.buffer.append(&mut self.held_space);
            return Ok(());
        }
        let mut rest = &raw[..read];
        while !rest.is_empty() {
            if self.in_string {
                // Copy up to the next quote or backslash in one go.
                if self.escaped {
                    self.buffer.push(rest[0]);
                    self.escaped = false;
                    rest = &rest[1..];
                    continue;
                }
                match memchr::memchr2(b'"', b'\\', rest) {
                    None => {
                        self.buffer.extend_from_slice(rest);
                        rest = &[];
                    }
                    Some(at) => {
                        self.buffer.extend_from_slice(&rest[..=at]);
                        if rest[at] == b'"' {
                            self.in_string = false;
                        } else {
                            self.escaped = true;
                        }
                        rest = &rest[at + 1..];
                    }
                }
                continue;
            }
            if self.held_comma {
                let byte = rest[0];
                rest = &rest[1..];
                if byte.is_ascii_whitespace() {
                    self.held_space.push(byte);
                    continue;
                }
                if byte != b']' && byte != b'}' {
                    self.buffer.push(b',');
                }
                self.held_comma = false;
                self.buffer.append(&mut self.held_space);
                self.take_outside(byte);
                continue;
            }
            // Outside strings: copy up to the next quote or comma in one go.
            match memchr::memchr2(b'"', b',', rest) {
                None => {
                    self.buffer.extend_from_slice(rest);
                    rest = &[];
                }
                Some(at) => {
                    self.buffer.extend_from_slice(&rest[..at]);
                    self.take_outside(rest[at]);
                    rest = &rest[at + 1..];
                }
            }
        }
        Ok(())
    }
}

impl<R> TrailingCommas<R> {
    /// One byte outside any string.
    fn take_outside(&mut self, byte: u8) {
        match byte {
            b',' => self.held_comma = true,
            b'"' => {
                self.in_string = true;
                self.buffer.push(byte);
            }
            _ => self.buffer.push(byte),
        }
    }
}

impl<R: Read> Read for TrailingCommas<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.start == self.buffer.len() {
            if self.done {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.buffer.len() - self.start);
        out[..n].copy_from_slice(&self.buffer[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

/// serde_json's message without its " at line L column C" suffix (the stop says where).
fn reason(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_owned(),
        None => message,
    }
}

/// Counts events and passes them on.
struct Sink<'a> {
    on_event: &'a mut dyn FnMut(TraceEvent),
    events: &'a mut u64,
}

impl Sink<'_> {
    fn reborrow(&mut self) -> Sink<'_> {
        Sink { on_event: &mut *self.on_event, events: &mut *self.events }
    }
}

/// The whole file: an array of events, or an object with `traceEvents`.
struct TopLevel<'a> {
    sink: Sink<'a>,
    object: &'a mut Option<Map<String, Value>>,
    found_events: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of trace events or an object with `traceEvents`")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, seq: A) -> Result<(), A::Error> {
        *self.found_events = true;
        EventArray(self.sink.reborrow()).visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut others = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "traceEvents" {
                *self.found_events = true;
                map.next_value_seed(EventArray(self.sink.reborrow()))?;
            } else if *self.found_events {
                map.next_value::<IgnoredAny>()?;
            } else {
                others.insert(key, map.next_value()?);
            }
        }
        if !*self.found_events {
            *self.object = Some(others);
        }
        Ok(())
    }
}

/// The array of events, handed over one at a time.
struct EventArray<'a>(Sink<'a>);

impl<'de> DeserializeSeed<'de> for EventArray<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventArray<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of trace events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Sink { on_event, events } = self.0;
        while let Some(event) = seq.next_element::<TraceEvent>()? {
            *events += 1;
            on_event(event);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<TraceEvent>, Outcome) {
        let mut seen = Vec::new();
        let outcome = read_events(text.as_bytes(), &mut |e| seen.push(e));
        (seen, outcome)
    }

    #[test]
    fn reads_the_array_form_with_string_counts() {
        let (events, outcome) = read(
            r#"[{"ph":"B","name":"A","pid":1,"tid":2,"ts":1.5},
                {"ph":"E","name":"A","pid":1,"tid":2,"ts":3,"args":{"outcome":"ok","allocations":"4"}}]"#,
        );
        assert!(matches!(outcome, Outcome::Trace { events: 2, cut: None }));
        assert_eq!(events[1].args.as_ref().unwrap().allocations, Some(Count(Some(4))));
        assert!(events[1].args.as_ref().unwrap().outcome.is_some());
        assert_eq!(events[0].tid, TrackId(2));
    }

    #[test]
    fn a_malformed_flight_window_entry_is_skipped_and_the_rest_is_read() {
        let (events, outcome) = read(
            r#"[{"ph":"X","name":"A","pid":1,"tid":2,"ts":1,"dur":2},
                {"ph":"M","name":"pipeline_profile","pid":1,"tid":1,
                 "args":{"records_left_out":3,"flight_recorder_window":"not an object"}},
                {"ph":"M","name":"pipeline_profile","pid":1,"tid":1,
                 "args":{"flight_recorder_window":{"trigger":"SIGUSR2","window_ms":2000}}}]"#,
        );
        assert!(matches!(outcome, Outcome::Trace { events: 3, cut: None }));
        let args = events[1].args.as_ref().unwrap();
        assert_eq!(args.records_left_out, Some(Count(Some(3))));
        assert!(args.flight_recorder_window.is_none());
        let window = events[2].args.as_ref().unwrap().flight_recorder_window.clone().unwrap();
        assert_eq!((window.trigger.as_str(), window.window_ms), ("SIGUSR2", 2000.0));
    }

    #[test]
    fn reads_the_object_form() {
        let (events, outcome) = read(
            r#"{"displayTimeUnit":"ns","traceEvents":[{"ph":"X","name":"A","ts":1,"dur":2}]}"#,
        );
        assert!(matches!(outcome, Outcome::Trace { events: 1, cut: None }));
        assert_eq!(events[0].dur, Some(2.0));
    }

    #[test]
    fn a_truncated_trace_keeps_what_came_before_and_says_where_it_stopped() {
        let (events, outcome) =
            read("[\n{\"ph\":\"B\",\"name\":\"A\",\"ts\":1},\n{\"ph\":\"E\",\"na");
        assert_eq!(events.len(), 1);
        let Outcome::Trace { events: 1, cut: Some(stop) } = outcome else { panic!() };
        assert_eq!(stop.line, 3);
        assert!(stop.reason.contains("EOF"), "{}", stop.reason);
    }

    #[test]
    fn trailing_commas_go_and_commas_inside_strings_stay() {
        let (events, outcome) =
            read("[{\"ph\":\"X\",\"name\":\"a, b ]\\\",}\",\"ts\":\"1\",\"dur\":2,} ,\n ]");
        assert!(matches!(outcome, Outcome::Trace { events: 1, cut: None }));
        assert_eq!(events[0].name.as_deref(), Some("a, b ]\",}"));
        assert_eq!(events[0].ts, Some(1.0));
    }

    #[test]
    fn other_json_is_not_a_trace() {
        assert!(
            matches!(read(r#"{"stages":[]}"#).1, Outcome::Object(map) if map.contains_key("stages"))
        );
        assert!(matches!(read("[1, 2]").1, Outcome::NotATrace(_)));
        assert!(
            matches!(read("hello").1, Outcome::NotATrace(reason) if reason.contains("not JSON"))
        );
        assert!(matches!(read("42").1, Outcome::NotATrace(_)));
    }
}
