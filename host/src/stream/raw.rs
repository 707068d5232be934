//! Plain byte streaming for cat and readat.
//!
//! A task reads `CHUNK_SIZE` bytes at a time through the backend's `read_at` and sends them
//! into a [`body`](super::body) channel; when the client is slow the task waits, when the
//! client leaves the send fails and the task ends (giving back its stream permit). An error
//! after bytes have been sent can no longer change the status, so its text is appended to the
//! body, as Nomad does.

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

use super::body::{self, BodyReceiver};
use crate::plugins::registry::OpenFile;

/// Bytes per `read_at` call: the body budget, so a stalled client holds one chunk waiting and
/// one in the writer. (Larger reads would not be faster: the writer takes a budget at a time.)
pub const CHUNK_SIZE: usize = body::BUDGET;

/// Bytes to read next: a chunk, capped by what the limit leaves.
pub fn next_len(remaining: Option<u64>) -> usize {
    remaining.map_or(CHUNK_SIZE, |left| left.min(CHUNK_SIZE as u64) as usize)
}

/// Streams `file` from `offset` (after `first`, already read there) until EOF or until
/// `remaining` bytes in all have been sent, holding `permit` (a `max_streams` slot) meanwhile.
pub fn spawn_body(
    file: OpenFile,
    first: Vec<u8>,
    offset: u64,
    remaining: Option<u64>,
    permit: OwnedSemaphorePermit,
) -> BodyReceiver {
    let (tx, rx) = body::channel();
    tokio::spawn(async move {
        let _permit = permit;
        let mut offset = offset + first.len() as u64;
        let mut remaining = remaining.map(|left| left - first.len() as u64);
        if first.is_empty() || tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        while remaining != Some(0) {
            match file.read_at(offset, next_len(remaining)).await {
                Ok(chunk) if chunk.is_empty() => return,
                Ok(chunk) => {
                    offset += chunk.len() as u64;
                    remaining = remaining.map(|left| left - chunk.len() as u64);
                    if tx.send(Bytes::from(chunk)).await.is_err() {
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
