//! Buffers for `read_at`, kept for the next read once hyper has written their bytes.
//!
//! The ABI's `read_at` fills a slice the host lends, so the host must hand it initialised
//! memory. A fresh 256 KiB buffer per read meant zeroing it first (6.6 % of the agent's CPU
//! during a 1 GiB cat, beside the two copies the bytes take) or, above glibc's mmap threshold,
//! 64 page faults. Buffers of the sizes the streams read in (powers of two from 64 KiB to
//! 1 MiB) are taken from a small free list and go back to it when the last `Bytes` viewing them
//! is dropped; at most [`FREE_PER_SIZE`] wait per size, so an idle agent keeps at most a few
//! MiB. A read that returns little (a follower's appended line) is copied out and its buffer
//! goes back at once, so a queued frame does not hold a whole buffer.

use std::sync::Mutex;

use bytes::Bytes;

/// The smallest and largest buffer sizes kept, as powers of two (64 KiB, 1 MiB).
const MIN_SHIFT: u32 = 16;
const MAX_SHIFT: u32 = 20;
const SIZES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Free buffers kept per size.
const FREE_PER_SIZE: usize = 4;
/// Reads returning at most this many bytes are copied out of their buffer.
const COPY_OUT: usize = 4 * 1024;

static FREE: [Mutex<Vec<Vec<u8>>>; SIZES] = [const { Mutex::new(Vec::new()) }; SIZES];

/// The free list for buffers of `len` bytes, if that size is kept.
fn free_list(len: usize) -> Option<&'static Mutex<Vec<Vec<u8>>>> {
    let shift = len.trailing_zeros();
    (len.is_power_of_two() && (MIN_SHIFT..=MAX_SHIFT).contains(&shift)).then(|| &FREE[(shift - MIN_SHIFT) as usize])
}

/// A buffer of `len` initialised bytes: a kept one when there is one, else a new zeroed one.
fn take(len: usize) -> Vec<u8> {
    let kept = free_list(len).and_then(|list| list.lock().unwrap_or_else(|e| e.into_inner()).pop());
    kept.unwrap_or_else(|| vec![0u8; len])
}

/// Keeps `buf` for a later read if its size is kept and the free list has room.
fn give_back(buf: Vec<u8>) {
    if let Some(list) = free_list(buf.len()) {
        let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() < FREE_PER_SIZE {
            list.push(buf);
        }
    }
}

/// The first `len` bytes of a buffer that goes back to the free list when dropped.
struct Filled {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Filled {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.buf));
    }
}

/// Lends `read` a buffer of `len` bytes and returns the bytes it says it filled.
pub fn read_into<E>(len: usize, read: impl FnOnce(&mut [u8]) -> Result<u64, E>) -> Result<Bytes, E> {
    let mut buf = take(len);
    let filled = match read(&mut buf) {
        Ok(filled) => (filled as usize).min(len),
        Err(err) => {
            give_back(buf);
            return Err(err);
        }
    };
    if filled <= COPY_OUT {
        let bytes = Bytes::copy_from_slice(&buf[..filled]);
        give_back(buf);
        return Ok(bytes);
    }
    Ok(Bytes::from_owner(Filled { buf, len: filled }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffers of a kept size come back for the next read, holding what the last read left
    /// (the ABI overwrites it; nothing reads past what a read filled).
    #[test]
    fn a_kept_size_is_reused_and_only_filled_bytes_are_seen() {
        let len = 1 << MAX_SHIFT;
        let first = read_into::<()>(len, |buf| {
            buf[..10_000].fill(7);
            Ok(10_000)
        })
        .unwrap();
        assert_eq!(first.len(), 10_000);
        assert!(first.iter().all(|&b| b == 7));
        let address = first.as_ptr();
        drop(first);
        let second = read_into::<()>(len, |buf| {
            assert_eq!(buf.len(), len);
            buf[..5_000].fill(9);
            Ok(5_000)
        })
        .unwrap();
        assert_eq!(second.as_ptr(), address, "the buffer was kept and lent again");
        assert_eq!(&second[..], &[9u8; 5_000][..]);
    }

    #[test]
    fn small_reads_are_copied_out_and_errors_give_the_buffer_back() {
        let len = 1 << (MIN_SHIFT + 1);
        let small = read_into::<()>(len, |buf| {
            buf[..3].copy_from_slice(b"abc");
            Ok(3)
        })
        .unwrap();
        assert_eq!(&small[..], b"abc");
        assert_eq!(read_into(len, |_| Err("broken")), Err("broken"));
        // A size that is not kept still reads, into a buffer of its own.
        let odd = read_into::<()>(12_345, |buf| {
            assert_eq!(buf.len(), 12_345);
            Ok(u64::MAX)
        })
        .unwrap();
        assert_eq!(odd.len(), 12_345, "a count beyond the buffer is capped at it");
    }
}
