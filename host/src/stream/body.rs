//! Response bodies written by tasks, bounded in bytes rather than in chunks.
//!
//! A client that stops reading must cost little memory, whatever it asked for. Every streamed
//! body goes through a [`channel`]: a chunk takes its share of a [`BUDGET`] of bytes when it is
//! sent and gives it back only when hyper drops it after writing it to the socket (the chunk's
//! `Bytes` owns the share). So a stalled connection holds at most the budget, plus the one
//! chunk its producer waits to send, however large the producer's chunks are.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};

/// Bytes queued for, or held by, one connection's writer.
pub const BUDGET: usize = 64 * 1024;

/// The producing end of a body.
pub struct BodySender {
    tx: mpsc::UnboundedSender<Bytes>,
    budget: Arc<Semaphore>,
}

/// The consuming end: the HTTP response reads it.
pub struct BodyReceiver {
    rx: mpsc::UnboundedReceiver<Bytes>,
}

/// The receiving end is gone: the client left.
#[derive(Debug)]
pub struct Closed;

/// A body channel with a fresh budget.
pub fn channel() -> (BodySender, BodyReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (BodySender { tx, budget: Arc::new(Semaphore::new(BUDGET)) }, BodyReceiver { rx })
}

/// Bytes that keep `share` (a semaphore permit) until the last of them is dropped, which
/// hyper does once it has written them to the socket.
pub fn holding<B, S>(bytes: B, share: S) -> Bytes
where
    B: AsRef<[u8]> + Send + 'static,
    S: Send + 'static,
{
    struct Held<B, S> {
        bytes: B,
        _share: S,
    }
    impl<B: AsRef<[u8]>, S> AsRef<[u8]> for Held<B, S> {
        fn as_ref(&self) -> &[u8] {
            self.bytes.as_ref()
        }
    }
    Bytes::from_owner(Held { bytes, _share: share })
}

impl BodySender {
    /// Sends `bytes` once the budget allows (a chunk larger than the budget waits for all of
    /// it); fails when the client has gone.
    pub async fn send(&self, bytes: Bytes) -> Result<(), Closed> {
        let share = bytes.len().min(BUDGET) as u32;
        // Most sends find the budget free: no waiting, and no wake-up registered for the
        // client leaving (the send itself fails then).
        let share = match Arc::clone(&self.budget).try_acquire_many_owned(share) {
            Ok(share) => share,
            Err(_) => tokio::select! {
                share = Arc::clone(&self.budget).acquire_many_owned(share) => share.map_err(|_| Closed)?,
                () = self.tx.closed() => return Err(Closed),
            },
        };
        self.tx.send(holding(bytes, share)).map_err(|_| Closed)
    }

    /// Resolves when the client has gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

impl BodyReceiver {
    /// The next chunk; `None` once the sender is done.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// A chunk that is already waiting, if any.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.rx.try_recv().ok()
    }

    pub fn into_stream(self) -> tokio_stream::wrappers::UnboundedReceiverStream<Bytes> {
        tokio_stream::wrappers::UnboundedReceiverStream::new(self.rx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_sender_waits_until_the_writer_drops_what_it_holds() {
        let (tx, mut rx) = channel();
        tx.send(Bytes::from(vec![1; BUDGET / 2])).await.unwrap();
        tx.send(Bytes::from(vec![2; BUDGET / 2])).await.unwrap();
        let held = rx.recv().await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), tx.send(Bytes::from_static(b"x"))).await;
        assert!(blocked.is_err(), "the budget is spent while the writer holds the chunks");
        drop(held);
        tx.send(Bytes::from_static(b"x")).await.unwrap();

        let big = tokio::spawn(async move { tx.send(Bytes::from(vec![3; 2 * BUDGET])).await.map(|_| tx) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!big.is_finished(), "a chunk over the budget waits for all of it");
        drop((rx.recv().await, rx.recv().await));
        let tx = big.await.unwrap().unwrap();

        drop(rx);
        assert!(tx.send(Bytes::from_static(b"gone")).await.is_err());
    }
}
