//! Helpers the benchmark harnesses share.
#![allow(dead_code)]

use std::hint::black_box;
use std::time::Instant;

/// The median of `values` (the upper one of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// CPU time the whole process has used (all threads, user and system), in nanoseconds: a
/// writer's or collector's thread is part of what a user pays.
pub fn process_cpu_ns() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// The body of `GET path` from `address` (HTTP/1.0: the server closes when done), headers
/// included.
pub fn http_get(address: std::net::SocketAddr, path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

/// Nanoseconds per call of `call`, over `calls` calls with their results kept alive.
///
/// Never inlined, so a profiler can count what runs inside it (`--toggle-collect`).
#[inline(never)]
pub fn ns_per_call(calls: u64, mut call: impl FnMut(u64) -> u64) -> f64 {
    let started = Instant::now();
    let mut acc = 0u64;
    for i in 0..calls {
        acc = acc.wrapping_add(call(black_box(i)));
    }
    black_box(acc);
    started.elapsed().as_nanos() as f64 / calls as f64
}

/// Calls traced by fastrace under one root span before the next root starts: fastrace keeps at
/// most 10,240 spans per root (its local span queue), and past that its spans cost nothing
/// because they are dropped, so one root over a whole benchmark would time a no-op.
pub const FASTRACE_CALLS_PER_ROOT: u64 = 1_000;

/// Nanoseconds per call of `call` with a fastrace root span (and local parent) around every
/// [`FASTRACE_CALLS_PER_ROOT`] calls, as a request-per-root program would have.
pub fn fastrace_ns_per_call(calls: u64, mut call: impl FnMut(u64) -> u64) -> f64 {
    let mut root: Option<(fastrace::local::LocalParentGuard, fastrace::Span)> = None;
    let mut made = 0u64;
    let ns = ns_per_call(calls, |x| {
        if made % FASTRACE_CALLS_PER_ROOT == 0 {
            root = None; // the guard first, then the span: the root is reported
            let span = fastrace::Span::root("root", fastrace::collector::SpanContext::random());
            root = Some((span.set_local_parent(), span));
        }
        made += 1;
        call(x)
    });
    drop(root);
    ns
}
