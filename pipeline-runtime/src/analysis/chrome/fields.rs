//! The fields of a trace event the analysis reads, each in every spelling Perfetto accepts
//! (times and counts as strings, ids as strings), and the arguments this toolkit's slices
//! carry; everything else is skipped unparsed.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

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
pub(super) fn micros<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
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
