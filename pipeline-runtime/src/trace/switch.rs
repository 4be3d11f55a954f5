//! The switch in front of the subscriber the profiler installs: spans exist for it only while a
//! trace records them (the native writer takes the program's own spans; the tracing-chrome
//! backend, when built, all of them).

use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::trace_records;

/// Decides once, when a span is made; the tracing-chrome backend's own filter then does its
/// accounting.
pub(crate) struct SessionSwitch;

impl<S> Layer<S> for SessionSwitch
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes() // the answer changes: ask `enabled` every time
    }

    fn enabled(&self, _: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        (tracing_chrome_records() || trace_records::active() != 0) && trace_records::is_traced()
    }
}

/// Whether the tracing-chrome backend is recording now.
fn tracing_chrome_records() -> bool {
    #[cfg(feature = "tracing-chrome")]
    return super::chrome::is_tracing();
    #[cfg(not(feature = "tracing-chrome"))]
    false
}
