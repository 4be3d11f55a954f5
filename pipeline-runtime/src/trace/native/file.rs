//! Where a trace's bytes go: a file written through the page cache, or, for a flight recorder
//! dump on Linux where the file system allows it, around the page cache (`O_DIRECT`), in whole
//! aligned blocks.
//!
//! Why a dump goes around it: a dump writes ~100 MB at once, and through the page cache the
//! kernel copies every byte into pages it takes from free memory. On a machine whose free memory
//! was never touched (a virtual machine started not long ago: one started because traffic
//! doubled, say) each of those pages is first faulted in by the host, and the copy took ~2 ns a
//! byte: three quarters of a dump's CPU in `perf record` of the flight_dump bench
//! (`copy_folio_from_iter_atomic`), against ~0.2 ns a byte into pages used before. Written
//! directly, the device reads the blocks where they are, and the dump's thread spends on its
//! file only the copy into one reused staging buffer. The last partial block is written through
//! the page cache, as is everything when the file system refuses direct writes (tmpfs on older
//! kernels, some network file systems): the file is the same either way.

use std::fs::File;
use std::io::{self, Write};

/// Direct writes go in whole blocks of this size, from memory aligned to it (the strictest
/// logical block size of common devices; 512-byte devices accept it too).
const BLOCK: usize = 4096;

/// Bytes staged before a direct write: 256 blocks.
const STAGE: usize = 256 * BLOCK;

/// A trace file being written.
pub(super) struct TraceFile {
    file: File,
    /// Set while writes go around the page cache.
    direct: Option<Staged>,
}

/// Bytes waiting for a whole block, in memory aligned to [`BLOCK`].
struct Staged {
    /// [`STAGE`] + [`BLOCK`] bytes: the aligned [`STAGE`] bytes start at `start`.
    memory: Vec<u8>,
    start: usize,
    len: usize,
}

impl Staged {
    fn new() -> Self {
        let memory = vec![0u8; STAGE + BLOCK];
        let start = memory.as_ptr().align_offset(BLOCK);
        Staged { memory, start, len: 0 }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.memory[self.start..self.start + STAGE]
    }
}

impl TraceFile {
    /// Writes through the page cache.
    pub(super) fn buffered(file: File) -> Self {
        TraceFile { file, direct: None }
    }

    /// Writes around the page cache where the system allows it (Linux, a file system with
    /// direct I/O), through it otherwise.
    pub(super) fn around_page_cache(file: File) -> Self {
        let direct = set_direct(&file, true).is_ok().then(Staged::new);
        TraceFile { file, direct }
    }

    /// Whether writes go around the page cache.
    #[cfg(test)]
    fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Writes all of `bytes` (direct writes: once a stage of whole blocks is full).
    pub(super) fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let Some(staged) = &mut self.direct else { return self.file.write_all(bytes) };
            let len = staged.len;
            let take = bytes.len().min(STAGE - len);
            staged.bytes()[len..len + take].copy_from_slice(&bytes[..take]);
            staged.len += take;
            bytes = &bytes[take..];
            if staged.len == STAGE {
                self.write_staged(STAGE)?;
            }
        }
        Ok(())
    }

    /// Writes what is staged and closes the file.
    pub(super) fn finish(mut self) -> io::Result<()> {
        let Some(staged) = &self.direct else { return Ok(()) };
        let whole = staged.len / BLOCK * BLOCK;
        if whole > 0 {
            self.write_staged(whole)?;
        }
        if let Some(mut staged) = self.direct.take() {
            // The last partial block, through the page cache (a direct write must be whole).
            set_direct(&self.file, false)?;
            let tail = staged.len;
            self.file.write_all(&staged.bytes()[..tail])?;
        }
        Ok(())
    }

    /// Writes the first `count` staged bytes (whole blocks) directly and keeps the rest staged.
    /// A direct write the system refuses (`EINVAL`: a device with larger blocks, a short write
    /// that left the file unaligned) is written through the page cache instead, and so is
    /// everything after it.
    fn write_staged(&mut self, count: usize) -> io::Result<()> {
        let Some(staged) = &mut self.direct else { return Ok(()) };
        let mut done = 0;
        while done < count {
            let written = {
                let start = staged.start;
                self.file.write(&staged.memory[start + done..start + count])
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                    set_direct(&self.file, false)?;
                    let mut staged = self.direct.take().expect("writing directly");
                    let len = staged.len;
                    return self.file.write_all(&staged.bytes()[done..len]);
                }
                Err(error) => return Err(error),
            }
        }
        let len = staged.len;
        staged.bytes().copy_within(count..len, 0);
        staged.len = len - count;
        Ok(())
    }
}

/// Turns `O_DIRECT` on or off for `file`; an error where the system has no direct I/O.
#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL and F_SETFL on a descriptor this `File` owns and keeps open; they change
    // only its status flags, and a failure leaves them as they were.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags == -1 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on { flags | libc::O_DIRECT } else { flags & !libc::O_DIRECT };
        if libc::fcntl(fd, libc::F_SETFL, flags) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_: &File, on: bool) -> io::Result<()> {
    if on {
        Err(io::ErrorKind::Unsupported.into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A file on the build's disk (not the system's temporary directory, often a tmpfs).
    fn scratch(name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/trace-file");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(format!("{name}-{}", std::process::id()))
    }

    /// Bytes that differ from block to block, so a block written twice or out of place shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    /// Writes `pieces` of `pattern` through a `TraceFile` and reads the file back.
    fn write_in_pieces(mut file: TraceFile, path: &PathBuf, pieces: &[usize]) -> (bool, Vec<u8>) {
        let direct = file.is_direct();
        let whole = pattern(pieces.iter().sum());
        let mut at = 0;
        for &piece in pieces {
            file.write_all(&whole[at..at + piece]).unwrap();
            at += piece;
        }
        file.finish().unwrap();
        let read = std::fs::read(path).unwrap();
        std::fs::remove_file(path).unwrap();
        assert!(read == whole, "the file differs from what was written ({direct})");
        (direct, read)
    }

    #[test]
    fn a_file_written_around_the_page_cache_holds_exactly_what_was_written() {
        let cases: &[&[usize]] = &[
            &[],
            &[1],
            &[BLOCK - 1],
            &[BLOCK],
            &[BLOCK + 1],
            &[STAGE],
            &[STAGE - 1, 2, BLOCK * 3 + 5],
            &[65_536; 40],
            &[100_003, 7, STAGE + 13, 1, 0, 3 * STAGE],
        ];
        for (n, pieces) in cases.iter().enumerate() {
            let path = scratch(&format!("direct-{n}"));
            let file = File::create(&path).unwrap();
            let (direct, _) = write_in_pieces(TraceFile::around_page_cache(file), &path, pieces);
            if n == 0 {
                // The build's disk is where CI runs this; say so when it has no direct I/O.
                println!("direct writes on this file system: {direct}");
            }
        }
    }

    #[test]
    fn a_file_written_through_the_page_cache_holds_exactly_what_was_written() {
        let path = scratch("buffered");
        let file = File::create(&path).unwrap();
        let (direct, read) =
            write_in_pieces(TraceFile::buffered(file), &path, &[3, STAGE + 1, BLOCK]);
        assert!(!direct);
        assert_eq!(read.len(), STAGE + BLOCK + 4);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_direct_write_the_system_refuses_goes_through_the_page_cache_instead() {
        // A file opened for appending at an unaligned end: its first direct write is refused.
        let path = scratch("refused");
        std::fs::write(&path, b"x").unwrap();
        let file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        let mut file = TraceFile::around_page_cache(file);
        if !file.is_direct() {
            std::fs::remove_file(&path).unwrap();
            return; // no direct I/O on this file system: nothing to refuse
        }
        let bytes = pattern(STAGE + 10);
        file.write_all(&bytes).unwrap();
        assert!(!file.is_direct(), "the refused write turned direct writes off");
        file.finish().unwrap();
        let read = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read[0], b'x');
        assert!(read[1..] == bytes[..]);
    }
}
