//! gzip and raw deflate for response bodies, off the async workers and on several cores.
//!
//! A body is compressed in slices of at most [`SLICE`] bytes on the [`cpu`](crate::cpu) pool,
//! below the async workers' priority, so a download never holds a worker thread that answers
//! everyone else nor takes a core from one. As pigz does, each slice
//! is a run of deflate blocks of its own, primed with the previous slice's last 32 KiB as
//! dictionary and ended by a sync flush (byte-aligned, decodable at once: a follower's line
//! reaches the client with its slice). Slices therefore compress independently, up to
//! [`PARALLEL`] at a time, and still concatenate, in order, into one valid deflate stream; an
//! empty final block closes it. gzip wraps that stream in its header and a trailer whose CRC-32
//! is combined from the slices' own.
//!
//! Memory stays bounded: the input is copied out of its body channel (giving its budget back
//! at once, so the producer reads ahead while slices compress), at most [`PARALLEL`] slices are
//! in flight, and the output goes through a budgeted [`body`](super::body) channel.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Crc, FlushCompress};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;

use super::body::{self, BodyReceiver};

/// Largest slice compressed in one blocking job.
pub const SLICE: usize = 256 * 1024;
/// Slices of one body compressing at once.
pub const PARALLEL: usize = 3;
/// Bodies up to this size are compressed where they are (a few tens of microseconds).
pub const INLINE_LIMIT: usize = 16 * 1024;
/// deflate's window: the dictionary a slice carries over to the next.
const WINDOW: usize = 32 * 1024;

/// gzip's header as Go's `compress/gzip` writes it (no name, no time, unknown OS).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// An empty final block with fixed codes: what zlib writes on `Z_FINISH` after a sync flush.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// The content codings a response can use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Encoding {
    Gzip,
    /// Raw deflate (RFC 1951), as Go's `compress/flate` writes it.
    Deflate,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }
}

/// What to compress.
pub enum Input {
    /// A whole body, cut into slices.
    Whole(Bytes),
    /// A streamed body; chunks that are already waiting are gathered into one slice.
    Stream(BodyReceiver),
}

impl Input {
    /// The next slice, copied out of the body channel; `None` at the end.
    async fn next(&mut self) -> Option<Bytes> {
        match self {
            Input::Whole(rest) if rest.is_empty() => None,
            Input::Whole(rest) => Some(rest.split_to(rest.len().min(SLICE))),
            Input::Stream(rx) => {
                let first = rx.recv().await?;
                let mut slice = BytesMut::from(&first[..]);
                drop(first);
                while slice.len() < SLICE {
                    let Some(more) = rx.try_recv() else { break };
                    slice.extend_from_slice(&more);
                }
                Some(slice.freeze())
            }
        }
    }
}

/// Compresses a small body in one go, where the caller runs.
pub fn compress_small(data: &[u8], encoding: Encoding) -> Vec<u8> {
    let (deflated, crc) = deflate_slice(data, &[]);
    let mut out = Vec::with_capacity(deflated.len() + 32);
    if encoding == Encoding::Gzip {
        out.extend_from_slice(&GZIP_HEADER);
    }
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&FINAL_BLOCK);
    if encoding == Encoding::Gzip {
        out.extend_from_slice(&gzip_trailer(&crc));
    }
    out
}

/// Compresses `input` in a task of its own; the task ends as soon as the client leaves.
pub fn compress(mut input: Input, encoding: Encoding) -> BodyReceiver {
    let (tx, compressed) = body::channel();
    tokio::spawn(async move {
        let mut crc = Crc::new();
        if encoding == Encoding::Gzip && tx.send(Bytes::from_static(&GZIP_HEADER)).await.is_err() {
            return;
        }
        let mut jobs = FuturesOrdered::new();
        let mut dictionary = Bytes::new();
        let mut input_done = false;
        while !(input_done && jobs.is_empty()) {
            tokio::select! {
                biased;
                () = tx.closed() => return,
                Some(done) = jobs.next(), if !jobs.is_empty() => {
                    let Some((deflated, slice_crc)): Option<(Bytes, Crc)> = done else { return };
                    crc.combine(&slice_crc);
                    if !deflated.is_empty() && tx.send(deflated).await.is_err() {
                        return;
                    }
                }
                slice = input.next(), if !input_done && jobs.len() < PARALLEL => match slice {
                    Some(slice) => {
                        let primed = std::mem::replace(&mut dictionary, window_of(&slice));
                        jobs.push_back(crate::cpu::run(move || deflate_slice(&slice, &primed)));
                    }
                    None => input_done = true,
                },
            }
        }
        let mut tail = FINAL_BLOCK.to_vec();
        if encoding == Encoding::Gzip {
            tail.extend_from_slice(&gzip_trailer(&crc));
        }
        let _ = tx.send(Bytes::from(tail)).await;
    });
    compressed
}

/// The last 32 KiB of a slice, copied (the next slice's dictionary).
fn window_of(slice: &Bytes) -> Bytes {
    Bytes::copy_from_slice(&slice[slice.len().saturating_sub(WINDOW)..])
}

fn gzip_trailer(crc: &Crc) -> [u8; 8] {
    let mut trailer = [0; 8];
    trailer[..4].copy_from_slice(&crc.sum().to_le_bytes());
    trailer[4..].copy_from_slice(&crc.amount().to_le_bytes());
    trailer
}

thread_local! {
    /// One level-1 raw deflate state and output buffer per thread, reused from slice to slice.
    static DEFLATER: RefCell<(Compress, Vec<u8>)> =
        RefCell::new((Compress::new(Compression::fast(), false), Vec::new()));
}

/// Deflates `data` primed with `dictionary`, ending in a sync flush; also its CRC-32.
fn deflate_slice(data: &[u8], dictionary: &[u8]) -> (Bytes, Crc) {
    let mut crc = Crc::new();
    crc.update(data);
    let deflated = DEFLATER.with_borrow_mut(|(deflater, out)| {
        deflater.reset();
        if !dictionary.is_empty() {
            deflater.set_dictionary(dictionary).expect("a fresh deflate state takes a dictionary");
        }
        out.clear();
        // zlib's compressBound plus the sync flush's marker: usually one pass.
        out.reserve(data.len() + (data.len() >> 12) + (data.len() >> 14) + 64);
        let mut consumed = 0;
        loop {
            let before = deflater.total_in();
            deflater.compress_vec(&data[consumed..], out, FlushCompress::Sync).expect("deflate takes any input");
            consumed += (deflater.total_in() - before) as usize;
            if consumed == data.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(4096));
        }
        let deflated = Bytes::copy_from_slice(out);
        // A large one-off buffer is not kept by an idle thread.
        if out.capacity() > 2 * SLICE {
            *out = Vec::new();
        }
        deflated
    });
    (deflated, crc)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::{DeflateDecoder, GzDecoder};

    use super::*;

    fn log_lines(len: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(len + 100);
        let mut n = 0u64;
        while data.len() < len {
            n += 1;
            let hash = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            data.extend_from_slice(format!("2026-12-01 INFO request id={hash:016x} n={n}\n").as_bytes());
        }
        data.truncate(len);
        data
    }

    fn decode(encoding: Encoding, compressed: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            Encoding::Gzip => GzDecoder::new(compressed).read_to_end(&mut out),
            Encoding::Deflate => DeflateDecoder::new(compressed).read_to_end(&mut out),
        }
        .expect("a valid stream");
        out
    }

    async fn collect(mut rx: BodyReceiver) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_slices_make_one_valid_stream() {
        for encoding in [Encoding::Gzip, Encoding::Deflate] {
            for len in [0, 1, 1000, SLICE - 1, SLICE, 3 * SLICE + 12345] {
                let data = log_lines(len);
                let compressed = collect(compress(Input::Whole(Bytes::from(data.clone())), encoding)).await;
                assert_eq!(decode(encoding, &compressed), data, "{encoding:?}, {len} bytes");
                assert_eq!(decode(encoding, &compress_small(&data, encoding)), data, "{encoding:?} small");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_streams_each_decode_to_their_own_bytes() {
        let bodies = (0..8u8).map(|i| {
            let data: Vec<u8> = log_lines(SLICE + 1000 * usize::from(i)).iter().map(|b| b ^ i).collect();
            tokio::spawn(async move {
                let (tx, rx) = body::channel();
                let compressed = tokio::spawn(collect(compress(Input::Stream(rx), Encoding::Gzip)));
                for piece in data.chunks(7000 + usize::from(i)) {
                    tx.send(Bytes::copy_from_slice(piece)).await.unwrap();
                }
                drop(tx);
                assert_eq!(decode(Encoding::Gzip, &compressed.await.unwrap()), data, "stream {i}");
            })
        });
        for body in bodies.collect::<Vec<_>>() {
            body.await.unwrap();
        }
    }

    #[tokio::test]
    async fn every_chunk_can_be_decoded_as_soon_as_it_arrives() {
        let (tx, rx) = body::channel();
        let mut compressed = compress(Input::Stream(rx), Encoding::Deflate);
        let mut received = Vec::new();
        for line in [&b"first line\n"[..], b"second line\n"] {
            tx.send(Bytes::from_static(line)).await.unwrap();
            received.extend_from_slice(&compressed.recv().await.unwrap());
            let mut decoded = Vec::new();
            // Without the final block the decoder stops with an error at the end of input,
            // after producing everything flushed so far.
            let _ = DeflateDecoder::new(&received[..]).read_to_end(&mut decoded);
            assert!(decoded.ends_with(line), "{:?}", String::from_utf8_lossy(&decoded));
        }
    }
}
