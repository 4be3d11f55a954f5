//! Stage and function calls as `tracing` spans for the program's own subscribers (logging,
//! OpenTelemetry), switched on for every event or for one in n.

/// Makes `#[stage]` and `#[profiled]` create their `tracing` spans at all times, for programs
/// whose own subscribers (logging, OpenTelemetry...) should see every stage and function call.
///
/// Off by default: spans are then made only while a Chrome trace is being written (the trace
/// is made of them). Statistics never need them, so an idle call costs one relaxed atomic load
/// and a recorded one only the measurement, whatever subscribers the program installed (with
/// one set, making a span costs 50–100 ns even when nothing wants it).
///
/// ```
/// pipeline_runtime::trace::emit_spans(true);
/// // ... stage and function spans reach the program's subscribers from now on ...
/// pipeline_runtime::trace::emit_spans(false);
/// ```
pub fn emit_spans(on: bool) {
    crate::trace_records::set_span_trace_one_in(1);
    crate::mode::set_spans_always(on);
}

/// [`emit_spans`] for one event in `one_in`: the decision is made once per event (each worker
/// pool event, each [`Pipeline::run`](crate::Pipeline::run)), so an event's spans are all there
/// or all absent, while the statistics still count every call. A busy service pays a
/// subscriber's cost per span (an OpenTelemetry layer: ~1 µs) for a tenth or a hundredth of
/// its events. `0` turns spans off. While a session writes a Chrome trace, its
/// [`Profiler::trace_one_in`](crate::Profiler::trace_one_in) decides instead.
///
/// ```
/// pipeline_runtime::trace::emit_spans_one_in(10); // spans for events 0, 10, 20, ...
/// # pipeline_runtime::trace::emit_spans(false);
/// ```
pub fn emit_spans_one_in(one_in: u64) {
    crate::trace_records::set_span_trace_one_in(one_in);
    crate::mode::set_spans_always(one_in > 0);
}
