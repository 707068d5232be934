//! Plain byte streaming for cat and readat.
//!
//! A task reads through the backend's `read_at` and sends what it read into a
//! [`body`](super::body) channel; when the client is slow the task waits, when the client
//! leaves the send fails and the task ends (giving back its stream permit). An error after
//! bytes have been sent can no longer change the status, so its text is appended to the body,
//! as Nomad does.
//!
//! Reads are [`LARGE_CHUNK`] bytes while a pool shared by every connection ([`LARGE_POOL`]
//! bytes) has room, [`CHUNK_SIZE`] otherwise (`fs/stream` catching up reads the same way): a
//! large file leaves in an eighth of the plugin calls and thread hand-offs (a 1 GiB cat on 2
//! cores, into reused buffers: 2.5 GB/s with 256 KiB reads, 3.0 with 512 KiB, no more with 1 MiB),
//! and however many clients stall, large reads hold at most the pool beyond each connection's
//! own small bound. A client that stops reading keeps its share (two large chunks at most: the
//! one being written and the one read ahead), so while 16 such clients stall, the other
//! downloads read a chunk at a time: slower, never stalled.

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::body::{self, BodyReceiver};
use crate::plugins::call::PluginFailure;
use crate::plugins::registry::OpenFile;

/// Bytes per `read_at` call when the large-read pool is taken: the body budget, so a stalled
/// client holds one chunk waiting and one in the writer.
pub const CHUNK_SIZE: usize = body::BUDGET;

/// Bytes per `read_at` call while the pool has room.
const LARGE_CHUNK: usize = 8 * CHUNK_SIZE;
/// Bytes that large reads of all connections may hold at once, read or waiting to be written.
const LARGE_POOL: usize = 16 * 1024 * 1024;
static LARGE_READS: Semaphore = Semaphore::const_new(LARGE_POOL);

/// Bytes to read next: a chunk, capped by what the limit leaves.
pub fn next_len(remaining: Option<u64>) -> usize {
    capped(remaining, CHUNK_SIZE)
}

/// `chunk` bytes, or what the limit leaves if that is less.
fn capped(remaining: Option<u64>, chunk: usize) -> usize {
    remaining.map_or(chunk, |left| left.min(chunk as u64) as usize)
}

/// The most [`read_chunk`] returns with `remaining` bytes left to send.
pub fn max_chunk(remaining: Option<u64>) -> usize {
    capped(remaining, LARGE_CHUNK)
}

/// Reads the next piece at `offset`: a large one when more than a chunk is left and the pool
/// has room, else [`next_len`]'s; at most [`max_chunk`] bytes. `fs/stream` reads with it too.
pub async fn read_chunk(file: &OpenFile, offset: u64, remaining: Option<u64>) -> Result<Bytes, PluginFailure> {
    let wanted = max_chunk(remaining);
    if wanted > CHUNK_SIZE
        && let Ok(share) = LARGE_READS.try_acquire_many(wanted as u32)
    {
        let bytes = file.read_at(offset, wanted).await?;
        // The share of the pool goes back once the chunk is written to the socket.
        return Ok(body::holding(bytes, share));
    }
    read_small(file, offset, remaining).await
}

/// Reads up to a chunk ([`next_len`]) at `offset`.
pub async fn read_small(file: &OpenFile, offset: u64, remaining: Option<u64>) -> Result<Bytes, PluginFailure> {
    file.read_at(offset, next_len(remaining)).await
}

/// Streams `file` from `offset` (after `first`, already read there) until EOF or until
/// `remaining` bytes in all have been sent, holding `permit` (a `max_streams` slot) meanwhile.
pub fn spawn_body(
    file: OpenFile,
    first: Bytes,
    offset: u64,
    remaining: Option<u64>,
    permit: OwnedSemaphorePermit,
) -> BodyReceiver {
    let (tx, rx) = body::channel();
    tokio::spawn(async move {
        let _permit = permit;
        let mut offset = offset + first.len() as u64;
        let mut remaining = remaining.map(|left| left - first.len() as u64);
        if first.is_empty() || tx.send(first).await.is_err() {
            return;
        }
        while remaining != Some(0) {
            match read_chunk(&file, offset, remaining).await {
                Ok(chunk) if chunk.is_empty() => return,
                Ok(chunk) => {
                    offset += chunk.len() as u64;
                    remaining = remaining.map(|left| left - chunk.len() as u64);
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
                Err(failure) => {
                    tracing::warn!(plugin = failure.plugin, "read failed mid-stream: {}", failure.message());
                    let _ = tx.send(Bytes::from(failure.describe())).await;
                    return;
                }
            }
        }
    });
    rx
}
