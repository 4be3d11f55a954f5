//! The sampler's signal side where it is not implemented (anything but Linux on x86_64 or
//! aarch64): starting fails with a clear error, and nothing else is ever called.

use std::io;

pub(crate) const MAX_FRAMES: usize = 1;
pub(crate) const NOT_UNWOUND: u8 = 1;
pub(crate) const TRUNCATED: u8 = 2;

pub(crate) struct SampleData {
    pub(crate) marker: u64,
    pub(crate) flags: u8,
    pub(crate) len: usize,
    pub(crate) frames: [usize; MAX_FRAMES],
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    pub(crate) taken: u64,
    pub(crate) dropped: u64,
    pub(crate) handler_ns: u64,
}

pub(crate) struct Installed;

pub(crate) fn in_handler() -> bool {
    false
}

pub(crate) fn counts() -> Counts {
    Counts::default()
}

pub(crate) fn start(_hz: u32) -> io::Result<Installed> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "CPU sampling is implemented on Linux (x86_64, aarch64) only",
    ))
}

pub(crate) fn stop(_installed: Installed) {}

pub(crate) fn drain(_read: impl FnMut(&SampleData)) {}
