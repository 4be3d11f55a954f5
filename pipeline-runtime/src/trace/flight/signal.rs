//! `SIGUSR2` sets a flag the trigger thread reads.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Error;

static RECEIVED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigusr2(_: libc::c_int) {
    RECEIVED.store(true, Ordering::Relaxed); // async-signal-safe: one atomic store
}

/// Whether the signal came since the last look.
pub(super) fn take() -> bool {
    RECEIVED.swap(false, Ordering::Relaxed)
}

/// The handler, installed; dropping it puts back the signal's previous disposition.
pub(super) struct Installed {
    previous: libc::sigaction,
}

pub(super) fn install() -> Result<Installed, Error> {
    RECEIVED.store(false, Ordering::Relaxed);
    // SAFETY: a zeroed `sigaction` is valid; the handler has the plain signature (no
    // SA_SIGINFO) and only stores to an atomic.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigusr2 as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGUSR2, &action, &mut previous) != 0 {
            return Err(Error::InvalidConfig("cannot install the SIGUSR2 handler"));
        }
        Ok(Installed { previous })
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        // SAFETY: puts back the disposition `sigaction` gave us.
        unsafe { libc::sigaction(libc::SIGUSR2, &self.previous, std::ptr::null_mut()) };
    }
}
