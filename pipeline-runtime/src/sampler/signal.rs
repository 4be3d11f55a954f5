//! The signal side of the sampler: a process CPU-time timer (`setitimer(ITIMER_PROF)`), the
//! SIGPROF handler, and the fixed ring of sample slots the handler fills.
//!
//! # What the handler may do
//!
//! It runs on whichever thread was using the CPU when the timer expired, in the middle of
//! whatever that thread was doing (holding a lock, inside `malloc`, inside the recorder). So it:
//!
//! - takes no lock: it claims a ring slot with one compare-and-swap, and a full ring drops the
//!   sample (counted) instead of waiting;
//! - allocates nothing: the ring is allocated when sampling starts, the stack is unwound into the
//!   claimed slot, and the marker and the "in the handler" flag are const-initialised
//!   thread-locals without destructors (plain loads and stores);
//! - unwinds with `backtrace::trace_unsynchronized` (libgcc's `_Unwind_Backtrace`, without the
//!   `backtrace` crate's global lock). On glibc ≥ 2.35 with libgcc ≥ 12, libgcc finds unwind
//!   tables with `_dl_find_object`, which takes no lock, and registered-frame look-ups are
//!   skipped when nothing registered frames (Rust programs register none);
//! - never unwinds a thread interrupted inside the unwinder or the dynamic loader (libgcc_s,
//!   ld.so), whose state it would share: that sample keeps only the interrupted address;
//! - saves and restores `errno`.
//!
//! `tests/cpu_sampling.rs` checks the first two with the counting allocator installed.

use std::cell::{Cell, UnsafeCell};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::clock::now_ns;

use super::marker;

/// Frames kept per sample, innermost first; deeper stacks keep their innermost frames.
pub(crate) const MAX_FRAMES: usize = 64;
/// Ring slots: at 999 Hz on 64 busy cores the collector (every 10 ms) finds ~640 waiting.
const RING_SLOTS: usize = 4096;
/// Frames the handler itself adds above the interrupted one (its own, `backtrace`'s, libgcc's
/// and the signal trampoline); past this many, the interrupted address was not found.
const MAX_HANDLER_FRAMES: usize = 32;

const FREE: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

/// The sample was not unwound (interrupted in the unwinder or the loader, or the unwinder did
/// not reach the interrupted frame): only the interrupted address is kept.
pub(crate) const NOT_UNWOUND: u8 = 1;
/// The stack was deeper than [`MAX_FRAMES`]: its outermost frames are missing.
pub(crate) const TRUNCATED: u8 = 2;

/// One sample as the handler wrote it.
pub(crate) struct SampleData {
    pub(crate) marker: u64,
    pub(crate) flags: u8,
    pub(crate) len: usize,
    /// Innermost first: the interrupted address, then return addresses.
    pub(crate) frames: [usize; MAX_FRAMES],
}

struct Slot {
    state: AtomicU8,
    data: UnsafeCell<SampleData>,
}

// SAFETY: `data` is written only by the handler that moved `state` from FREE to WRITING, and read
// only by the collector after it saw READY (acquire), until it stores FREE (release).
unsafe impl Sync for Slot {}

/// The ring, allocated on the first start and kept for the life of the process (a handler still
/// running on another thread can never see it freed).
static RING: OnceLock<Box<[Slot]>> = OnceLock::new();
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
/// Handlers take samples only while this is set.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Handlers running now, so that stopping can wait for them.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Signals handled while active.
static TAKEN: AtomicU64 = AtomicU64::new(0);
/// Samples lost to a full ring.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds spent in the handler while active: the sampler's own cost on the sampled threads.
static HANDLER_NS: AtomicU64 = AtomicU64::new(0);
/// Address ranges the handler must not unwind from (libgcc_s, ld.so).
static NO_UNWIND: OnceLock<Vec<(usize, usize)>> = OnceLock::new();

thread_local! {
    /// Set while this thread runs the handler (the allocation-free check reads it).
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is inside the SIGPROF handler right now.
pub(crate) fn in_handler() -> bool {
    IN_HANDLER.try_with(Cell::get).unwrap_or(false)
}

/// Counters of the samples since the last [`start`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    pub(crate) taken: u64,
    pub(crate) dropped: u64,
    pub(crate) handler_ns: u64,
}

pub(crate) fn counts() -> Counts {
    Counts {
        taken: TAKEN.load(Ordering::Relaxed),
        dropped: DROPPED.load(Ordering::Relaxed),
        handler_ns: HANDLER_NS.load(Ordering::Relaxed),
    }
}

/// The signal disposition sampling replaced, restored by [`stop`].
pub(crate) struct Installed {
    previous: libc::sigaction,
}

/// Installs the handler and starts the timer at `hz` samples per second of process CPU time.
pub(crate) fn start(hz: u32) -> io::Result<Installed> {
    let ring = RING.get_or_init(|| {
        (0..RING_SLOTS)
            .map(|_| Slot {
                state: AtomicU8::new(FREE),
                data: UnsafeCell::new(SampleData {
                    marker: 0,
                    flags: 0,
                    len: 0,
                    frames: [0; MAX_FRAMES],
                }),
            })
            .collect()
    });
    for slot in ring.iter() {
        slot.state.store(FREE, Ordering::Relaxed);
    }
    NO_UNWIND.get_or_init(no_unwind_ranges);
    let _ = now_ns(); // the clock is set up here, not in the handler
    TAKEN.store(0, Ordering::Relaxed);
    DROPPED.store(0, Ordering::Relaxed);
    HANDLER_NS.store(0, Ordering::Relaxed);
    // SAFETY: a zeroed `sigaction` is valid; the handler has the SA_SIGINFO signature.
    let previous = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigprof as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPROF, &action, &mut previous) != 0 {
            return Err(io::Error::last_os_error());
        }
        previous
    };
    ACTIVE.store(true, Ordering::SeqCst);
    let installed = Installed { previous };
    if let Err(error) = set_timer(hz) {
        stop(installed);
        return Err(error);
    }
    Ok(installed)
}

/// Stops the timer, waits for handlers still running, and puts back the previous disposition
/// (SIGPROF ignored when it was the default, so that a signal still pending cannot end the
/// process).
pub(crate) fn stop(installed: Installed) {
    let _ = set_timer(0);
    ACTIVE.store(false, Ordering::SeqCst);
    while IN_FLIGHT.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
    let mut restore = installed.previous;
    if restore.sa_sigaction == libc::SIG_DFL {
        restore.sa_sigaction = libc::SIG_IGN;
    }
    // SAFETY: `restore` is a disposition the kernel gave us, or SIG_IGN.
    unsafe {
        libc::sigaction(libc::SIGPROF, &restore, std::ptr::null_mut());
    }
}

/// Arms the process CPU-time timer (`hz` 0 disarms it).
fn set_timer(hz: u32) -> io::Result<()> {
    let period_us = if hz == 0 { 0 } else { (1_000_000 / u64::from(hz)).max(1) };
    let period = libc::timeval {
        tv_sec: (period_us / 1_000_000) as libc::time_t,
        tv_usec: (period_us % 1_000_000) as libc::suseconds_t,
    };
    let timer = libc::itimerval { it_interval: period, it_value: period };
    // SAFETY: plain system call with a valid `itimerval`.
    if unsafe { libc::setitimer(libc::ITIMER_PROF, &timer, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Calls `read` with every sample the handlers have finished, and frees their slots.
pub(crate) fn drain(mut read: impl FnMut(&SampleData)) {
    let Some(ring) = RING.get() else { return };
    for slot in ring.iter() {
        if slot.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY slots belong to the collector until it stores FREE.
            read(unsafe { &*slot.data.get() });
            slot.state.store(FREE, Ordering::Release);
        }
    }
}

extern "C" fn on_sigprof(
    _signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: errno is this thread's; it is put back before returning to the interrupted code.
    let errno = unsafe { *libc::__errno_location() };
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    if ACTIVE.load(Ordering::SeqCst) {
        let _ = IN_HANDLER.try_with(|flag| flag.set(true));
        let started = now_ns();
        take_sample(context);
        HANDLER_NS.fetch_add(now_ns().saturating_sub(started), Ordering::Relaxed);
        let _ = IN_HANDLER.try_with(|flag| flag.set(false));
    }
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn take_sample(context: *mut libc::c_void) {
    TAKEN.fetch_add(1, Ordering::Relaxed);
    let Some(slot) = claim_slot() else {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // SAFETY: the slot is ours (WRITING) until we store READY.
    let data = unsafe { &mut *slot.data.get() };
    data.marker = marker::current();
    data.flags = 0;
    data.len = 0;
    let pc = interrupted_pc(context);
    let unwindable = pc != 0
        && !NO_UNWIND
            .get()
            .is_some_and(|ranges| ranges.iter().any(|&(lo, hi)| (lo..hi).contains(&pc)));
    if unwindable {
        unwind_into(data, pc);
    }
    if data.len == 0 {
        data.frames[0] = pc;
        data.len = 1;
        data.flags |= NOT_UNWOUND;
    }
    slot.state.store(READY, Ordering::Release);
}

/// Unwinds the interrupted thread's stack into `data`, starting at the interrupted frame `pc`
/// (the frames above it are the handler's own). Leaves `data.len` 0 if `pc` was not reached.
fn unwind_into(data: &mut SampleData, pc: usize) {
    let mut found = false;
    let mut skipped = 0;
    // SAFETY: no other unwinder state is shared with the interrupted code (see the module docs:
    // interruptions inside libgcc_s and ld.so are not unwound); the closure neither allocates
    // nor panics.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let ip = frame.ip() as usize;
            if !found {
                if ip != pc {
                    skipped += 1;
                    return skipped < MAX_HANDLER_FRAMES;
                }
                found = true;
            }
            if ip == 0 {
                return false; // the end of the stack
            }
            if data.len == MAX_FRAMES {
                data.flags |= TRUNCATED;
                return false;
            }
            data.frames[data.len] = ip;
            data.len += 1;
            true
        });
    }
}

fn claim_slot() -> Option<&'static Slot> {
    let ring = RING.get()?;
    for _ in 0..4 {
        let index = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % ring.len();
        let slot = &ring[index];
        if slot.state.compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed).is_ok()
        {
            return Some(slot);
        }
    }
    None
}

/// The address the signal interrupted.
fn interrupted_pc(context: *mut libc::c_void) -> usize {
    if context.is_null() {
        return 0;
    }
    let context = context.cast::<libc::ucontext_t>();
    // SAFETY: the kernel passes a `ucontext_t` to SA_SIGINFO handlers.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        return (*context).uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
        #[cfg(target_arch = "aarch64")]
        return (*context).uc_mcontext.pc as usize;
    }
}

/// The executable segments of libgcc_s and the dynamic loader.
fn no_unwind_ranges() -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        out: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `dl_phdr_info`; `out` is the vector below.
        unsafe {
            let info = &*info;
            let ranges = &mut *out.cast::<Vec<(usize, usize)>>();
            if info.dlpi_name.is_null() {
                return 0;
            }
            let name = std::ffi::CStr::from_ptr(info.dlpi_name).to_string_lossy();
            let file = name.rsplit('/').next().unwrap_or(&name);
            if !(file.starts_with("libgcc_s")
                || file.starts_with("ld-linux")
                || file.starts_with("ld.so"))
            {
                return 0;
            }
            for index in 0..usize::from(info.dlpi_phnum) {
                let header = &*info.dlpi_phdr.add(index);
                if header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0 {
                    let start = info.dlpi_addr as usize + header.p_vaddr as usize;
                    ranges.push((start, start + header.p_memsz as usize));
                }
            }
            0
        }
    }
    // SAFETY: `visit` only reads what the loader passes and writes to `ranges`.
    unsafe {
        libc::dl_iterate_phdr(Some(visit), (&mut ranges as *mut Vec<(usize, usize)>).cast());
    }
    ranges
}
