//! One backend read for all the followers of a file.
//!
//! An append to a file that a thousand clients follow wakes them all, and each would read the
//! same new bytes through the backend, whose calls are limited per plugin. Instead, followers
//! of the same file (same backend, allocation, path and identity) share a [`FileShare`]: a
//! follower asking for the bytes at an offset joins a read of that offset in flight, or reuses
//! one that finished, provided that read started no earlier than the follower's `since` mark —
//! the count of changes the [`WatchHub`](super::watch::WatchHub) had seen when the follower
//! started reading. A read from before may miss the bytes whose change woke the follower, so it
//! is never reused for it. The look for truncation and deletion after an empty wake-up is
//! shared the same way.
//!
//! A file with one follower shares nothing and keeps nothing. Otherwise finished answers are
//! kept at most [`RETAIN`] (a trim task drops them even if nobody reads again), and at most
//! [`KEEP`] of each kind, so a file's followers hold a few chunks in all, however many they are.
//! A slow follower reads at its own offset: it joins nobody's read and delays no one.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

/// How long a finished answer may be reused.
pub const RETAIN: Duration = Duration::from_secs(1);
/// Finished answers kept per file and kind.
pub const KEEP: usize = 4;

/// Which file: followers share only with followers of the very same one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub backend: usize,
    pub alloc_id: String,
    pub path: String,
    pub device: u64,
    pub inode: u64,
}

type Files = Mutex<HashMap<FileKey, Weak<FileShare>>>;

/// The files being followed by someone, each with its shared answers.
#[derive(Default)]
pub struct SharedReads {
    files: Arc<Files>,
}

impl SharedReads {
    /// The share of `key`, joined by the caller for as long as it holds it.
    pub fn file(&self, key: FileKey) -> Arc<FileShare> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(share) = files.get(&key).and_then(Weak::upgrade) {
            return share;
        }
        let share = Arc::new(FileShare {
            key: key.clone(),
            files: Arc::downgrade(&self.files),
            reads: Flights::default(),
            probes: Flights::default(),
            trimming: Mutex::new(false),
        });
        files.insert(key, Arc::downgrade(&share));
        share
    }

    /// Number of files with a share (for tests).
    pub fn files(&self) -> usize {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The shared answers of one file.
pub struct FileShare {
    key: FileKey,
    files: Weak<Files>,
    /// `read_at(offset, len)` answers.
    reads: Flights<(u64, usize), bytes::Bytes>,
    /// Identity checks: the file's size, `None` once it is gone.
    probes: Flights<(), Option<u64>>,
    /// Whether a trim task is running.
    trimming: Mutex<bool>,
}

/// A shared answer: what the backend said, or its failure.
pub type Answer<T> = Result<T, crate::plugins::PluginFailure>;

impl FileShare {
    /// The bytes at `offset` (at most `len`), read by `read` unless a read that started at or
    /// after `since` can be shared; `now` is the hub's current count.
    pub async fn read(
        self: &Arc<Self>,
        offset: u64,
        len: usize,
        since: u64,
        now: u64,
        read: impl Future<Output = Answer<bytes::Bytes>>,
    ) -> Answer<bytes::Bytes> {
        self.run(&self.reads, (offset, len), since, now, read).await
    }

    /// The file's size, or `None` when it is gone, probed by `probe` unless shared.
    pub async fn probe(
        self: &Arc<Self>,
        since: u64,
        now: u64,
        probe: impl Future<Output = Answer<Option<u64>>>,
    ) -> Answer<Option<u64>> {
        self.run(&self.probes, (), since, now, probe).await
    }

    async fn run<K: PartialEq, V: Clone>(
        self: &Arc<Self>,
        flights: &Flights<K, V>,
        key: K,
        since: u64,
        now: u64,
        work: impl Future<Output = Answer<V>>,
    ) -> Answer<V> {
        // Alone on the file: nothing to share, nothing kept.
        if Arc::strong_count(self) <= 1 {
            return work.await;
        }
        let (answer, fresh) = flights.join(key, since, now);
        if fresh {
            self.trim_later();
        }
        answer.get_or_init(|| work).await.clone()
    }

    /// Drops finished answers older than [`RETAIN`], until none is left.
    fn trim_later(self: &Arc<Self>) {
        let mut trimming = self.trimming.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::replace(&mut *trimming, true) {
            return;
        }
        let share = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RETAIN).await;
                let Some(share) = share.upgrade() else { return };
                let mut trimming = share.trimming.lock().unwrap_or_else(|e| e.into_inner());
                let left = share.reads.trim() + share.probes.trim();
                if left == 0 {
                    *trimming = false;
                    return;
                }
            }
        });
    }
}

impl Drop for FileShare {
    fn drop(&mut self) {
        let Some(files) = self.files.upgrade() else { return };
        let mut files = files.lock().unwrap_or_else(|e| e.into_inner());
        if files.get(&self.key).is_some_and(|share| share.strong_count() == 0) {
            files.remove(&self.key);
        }
    }
}

/// Answers by what was asked, newest last.
struct Flights<K, V> {
    entries: Mutex<VecDeque<Flight<K, V>>>,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self { entries: Mutex::new(VecDeque::new()) }
    }
}

struct Flight<K, V> {
    key: K,
    /// The hub's count when the flight was created (before its work started).
    started: u64,
    created: Instant,
    answer: Arc<OnceCell<Answer<V>>>,
}

impl<K: PartialEq, V> Flights<K, V> {
    /// The flight to wait on for `key`, and whether it is new.
    fn join(&self, key: K, since: u64, now: u64) -> (Arc<OnceCell<Answer<V>>>, bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let retain_from = Instant::now().checked_sub(RETAIN);
        entries.retain(|flight| !flight.answer.initialized() || retain_from.is_none_or(|from| flight.created > from));
        if let Some(flight) = entries.iter().rev().find(|flight| flight.key == key && flight.started >= since) {
            return (Arc::clone(&flight.answer), false);
        }
        let answer = Arc::new(OnceCell::new());
        entries.push_back(Flight { key, started: now, created: Instant::now(), answer: Arc::clone(&answer) });
        while entries.len() > KEEP {
            let Some(oldest) = entries.iter().position(|flight| flight.answer.initialized()) else { break };
            entries.remove(oldest);
        }
        (answer, true)
    }

    /// Drops finished answers older than [`RETAIN`]; returns how many entries are left.
    fn trim(&self) -> usize {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        entries.retain(|flight| !flight.answer.initialized() || now.duration_since(flight.created) < RETAIN);
        entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;

    use super::*;

    fn key() -> FileKey {
        FileKey { backend: 0, alloc_id: "a".into(), path: "alloc/logs/web.stdout.0".into(), device: 1, inode: 2 }
    }

    async fn counted_read(calls: &AtomicUsize, bytes: &'static [u8]) -> Answer<Bytes> {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok(Bytes::from_static(bytes))
    }

    #[tokio::test]
    async fn followers_woken_together_share_one_read() {
        let reads = SharedReads::default();
        let shares: Vec<_> = (0..100).map(|_| reads.file(key())).collect();
        assert_eq!(reads.files(), 1);
        let calls = AtomicUsize::new(0);
        let answers = futures_util::future::join_all(
            shares.iter().map(|share| share.read(10, 64, 5, 5, counted_read(&calls, b"new line\n"))),
        )
        .await;
        assert!(answers.iter().all(|answer| answer.as_ref().unwrap() == &b"new line\n"[..]));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one read for a hundred followers");

        // A follower woken by a later change never gets the earlier answer.
        let later = shares[0].read(10, 64, 6, 6, counted_read(&calls, b"new line\nmore\n")).await.unwrap();
        assert_eq!(&later[..], b"new line\nmore\n");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Another offset is another read.
        shares[1].read(0, 64, 6, 6, counted_read(&calls, b"x")).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        drop(shares);
        assert_eq!(reads.files(), 0, "the last follower takes the share with it");
    }

    #[tokio::test]
    async fn a_lone_follower_keeps_nothing() {
        let reads = SharedReads::default();
        let share = reads.file(key());
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            share.read(0, 64, 1, 1, counted_read(&calls, b"x")).await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(share.reads.trim(), 0);
    }

    #[tokio::test]
    async fn finished_answers_are_bounded_and_trimmed() {
        let reads = SharedReads::default();
        let (share, _other) = (reads.file(key()), reads.file(key()));
        let calls = AtomicUsize::new(0);
        for offset in 0..10 {
            share.read(offset, 64, 1, 1, counted_read(&calls, b"x")).await.unwrap();
        }
        assert_eq!(share.reads.trim(), KEEP);
        tokio::time::sleep(RETAIN * 2 + RETAIN / 2).await;
        assert_eq!(share.reads.trim(), 0, "dropped by the trim task");
        assert!(!*share.trimming.lock().unwrap(), "and the task ended");
    }
}
