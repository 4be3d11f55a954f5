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

mod fields;
mod trailing_commas;

use fields::micros;
pub use fields::FlightWindow;
pub(crate) use fields::{EventArgs, TrackId};
use trailing_commas::TrailingCommas;

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
    use super::fields::Count;
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
