//! Reading one file for a stream, and following it.
//!
//! A [`Cursor`] reads an open file from an offset in large chunks and hands the bytes to the
//! sink. At end of file a follower [`Cursor::wait`]s until its [`Subscription`] fires: inotify
//! on the backend's `watch_paths`, or the shared 250 ms poll of the file's identity (for
//! backends without local paths and filesystems where inotify stays silent). Heartbeats are
//! sent while waiting; a client that leaves ends the wait. When a wake-up brings no new bytes,
//! [`Cursor::check`] tells truncation (the file shrank below the read position) from deletion
//! (the path is gone or names another file), as Nomad's tail does. A truncation is announced
//! in the frame of the data read next from offset 0 (alone when there is none yet), as
//! Nomad's `streamFile` sends it. An idle follower makes no plugin calls at all, and followers
//! of the same file share their reads and checks ([`shared`](super::shared)). A follower at the
//! end of its file tells the poll so, and the poll's look after an append that inotify already
//! reported does not wake it a second time.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use allocd_plugin_abi::{ErrorKind, FileIdentity};

use bytes::Bytes;

use super::frame::{Disconnected, FILE_DELETED, FILE_TRUNCATED, Sink};
use super::shared::{FileKey, FileShare};
use super::watch::{Interest, Poll, Probe, Subscription, WatchHub};
use crate::plugins::registry::OpenFile;
use crate::plugins::{PluginFailure, StoragePlugin};

/// The shared poll fallback.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

fn fingerprint(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The poll's answer for a file: which file the path names, and its size.
fn file_fingerprint(device: u64, inode: u64, size: u64) -> u64 {
    fingerprint((device, inode, size))
}

/// Why a stream stopped early.
#[derive(Debug)]
pub enum StreamEnd {
    /// The client went away.
    Disconnected,
    /// A plugin call failed mid-stream; the text is appended to the body.
    Failed(String),
}

impl From<Disconnected> for StreamEnd {
    fn from(_: Disconnected) -> Self {
        StreamEnd::Disconnected
    }
}

impl From<PluginFailure> for StreamEnd {
    fn from(failure: PluginFailure) -> Self {
        StreamEnd::Failed(if failure.is_plugin_fault() { failure.describe() } else { failure.message().to_owned() })
    }
}

/// What a follower found after waking.
#[derive(Debug, PartialEq)]
pub enum Change {
    /// Nothing but (possibly) new bytes.
    None,
    /// The file shrank; reading restarts at 0 and the next frame says `file truncated`.
    Truncated,
    /// The path is gone or names another file (a `file deleted` frame was sent).
    Deleted,
}

/// What the backend and watcher a stream needs.
#[derive(Clone)]
pub struct Source {
    pub registry_index: usize,
    pub alloc_id: String,
    pub hub: Arc<WatchHub>,
    pub registry: Arc<crate::plugins::Registry>,
}

impl Source {
    pub fn backend(&self) -> &StoragePlugin {
        &self.registry.storage[self.registry_index]
    }

    /// Subscribes to changes of the file at `path`: its identity and size are polled.
    pub async fn subscribe_file(&self, path: &str) -> Subscription {
        let (source, target) = (self.clone(), path.to_owned());
        let probe: Probe = Arc::new(move || {
            let (source, target) = (source.clone(), target.clone());
            Box::pin(async move {
                let id = source.backend().identify(&source.alloc_id, &target).await.ok()?;
                Some(file_fingerprint(id.device, id.inode, id.size))
            })
        });
        self.subscribe(path, "file", Interest::Changes, probe).await
    }

    /// Subscribes to entries of the directory at `path` appearing, disappearing or being
    /// renamed (not to changes of the files inside): its names are polled.
    pub async fn subscribe_dir(&self, path: &str) -> Subscription {
        let (source, target) = (self.clone(), path.to_owned());
        let probe: Probe = Arc::new(move || {
            let (source, target) = (source.clone(), target.clone());
            Box::pin(async move {
                let entries = source.backend().list(&source.alloc_id, &target).await.ok()?;
                Some(fingerprint(entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>()))
            })
        });
        self.subscribe(path, "dir", Interest::Entries, probe).await
    }

    async fn subscribe(&self, path: &str, kind: &str, interest: Interest, probe: Probe) -> Subscription {
        let paths = self.backend().watch_paths(&self.alloc_id, path).await.unwrap_or_default();
        let key = format!("{kind}:{}:{}:{path}", self.registry_index, self.alloc_id);
        self.hub.subscribe(&paths, interest, Some(Poll { key, interval: POLL_INTERVAL, probe })).await
    }
}

/// An open file being streamed.
pub struct Cursor {
    source: Source,
    file: OpenFile,
    identity: FileIdentity,
    /// Path for backend calls.
    path: String,
    /// The frames' `File` field.
    frame_name: String,
    pub offset: u64,
    subscription: Subscription,
    /// Reads and checks shared with the other followers of this file.
    share: Arc<FileShare>,
    /// An event for the next frame (`file truncated`).
    pending_event: Option<&'static str>,
}

impl Cursor {
    pub async fn open(source: &Source, path: &str, frame_name: &str, offset: u64) -> Result<Self, PluginFailure> {
        let subscription = source.subscribe_file(path).await;
        let file = source.backend().open(&source.alloc_id, path).await?;
        let identity = file.identity().await?;
        let share = source.hub.reads().file(FileKey {
            backend: source.registry_index,
            alloc_id: source.alloc_id.clone(),
            path: path.to_owned(),
            device: identity.device,
            inode: identity.inode,
        });
        Ok(Self {
            source: source.clone(),
            file,
            identity,
            path: path.to_owned(),
            frame_name: frame_name.to_owned(),
            offset,
            subscription,
            share,
            pending_event: None,
        })
    }

    /// Sends everything up to end of file, or until `limit` bytes have been sent in all.
    /// Returns true when the limit was reached. While a full chunk is being sent the next one
    /// is already read (one chunk ahead, no more).
    pub async fn drain(&mut self, sink: &mut Sink, limit: &mut Option<u64>) -> Result<bool, StreamEnd> {
        let since = self.source.hub.changes_seen();
        let mut ahead = None;
        loop {
            if *limit == Some(0) {
                return Ok(true);
            }
            // A chunk at least this long was not cut short by the end of the file.
            let full = super::raw::next_len(*limit);
            let chunk = match ahead.take() {
                Some(read) => read?,
                None => self.read(self.offset, *limit, since, false).await?,
            };
            let event = self.pending_event.take();
            if chunk.is_empty() {
                if let Some(event) = event {
                    sink.event(&self.frame_name, event, self.offset).await?;
                }
                return Ok(false);
            }
            self.offset += chunk.len() as u64;
            if let Some(left) = limit {
                *left -= chunk.len() as u64;
            }
            let send = sink.data(&self.frame_name, event.unwrap_or_default(), &chunk, self.offset);
            if chunk.len() >= full && *limit != Some(0) {
                let (read, sent) = tokio::join!(self.read(self.offset, *limit, since, true), send);
                sent?;
                ahead = Some(read);
            } else {
                send.await?;
            }
        }
    }

    /// The bytes at `offset`, at most `remaining`, shared with the other followers of the file
    /// when they can be (followers asking for the same offset and length). A chunk, or with
    /// `catching_up` (the last chunk was full, so more is likely there) a large read while the
    /// pool of [`raw`](super::raw) has room: a follower woken by an append reads small, a
    /// stream working through a large file reads in an eighth of the calls.
    async fn read(
        &self,
        offset: u64,
        remaining: Option<u64>,
        since: u64,
        catching_up: bool,
    ) -> Result<Bytes, PluginFailure> {
        let now = self.source.hub.changes_seen();
        if catching_up {
            let read = super::raw::read_chunk(&self.file, offset, remaining);
            self.share.read(offset, super::raw::max_chunk(remaining), since, now, read).await
        } else {
            let read = super::raw::read_small(&self.file, offset, remaining);
            self.share.read(offset, super::raw::next_len(remaining), since, now, read).await
        }
    }

    /// Waits for a reason to look at the file again (see the module doc); sends heartbeats.
    /// Called at the end of the file: the shared poll, finding it this long, has nothing new
    /// for this follower and leaves it asleep.
    pub async fn wait(&self, sink: &mut Sink, also: Option<&Subscription>) -> Result<Woken, StreamEnd> {
        self.subscription.settle(file_fingerprint(self.identity.device, self.identity.inode, self.offset));
        wait(sink, &self.subscription, also).await
    }

    /// Looks for truncation and deletion after a wake-up with no new bytes.
    pub async fn check(&mut self, sink: &mut Sink) -> Result<Change, StreamEnd> {
        let hub = &self.source.hub;
        let Some(size) = self.share.probe(hub.changes_seen(), hub.changes_seen(), self.probe()).await? else {
            return self.deleted(sink).await;
        };
        if size < self.offset {
            self.offset = 0;
            self.pending_event = Some(FILE_TRUNCATED);
            return Ok(Change::Truncated);
        }
        Ok(Change::None)
    }

    /// The file's size, or `None` when its path is gone or names another file.
    async fn probe(&self) -> Result<Option<u64>, PluginFailure> {
        let backend = self.source.backend();
        match backend.identify(&self.source.alloc_id, &self.path).await {
            Ok(now) if (now.device, now.inode) == (self.identity.device, self.identity.inode) => {}
            Ok(_) => return Ok(None),
            Err(failure) if failure.kind() == ErrorKind::NOT_FOUND => return Ok(None),
            Err(failure) => return Err(failure),
        }
        Ok(Some(self.file.identity().await?.size))
    }

    async fn deleted(&self, sink: &mut Sink) -> Result<Change, StreamEnd> {
        sink.event(&self.frame_name, FILE_DELETED, self.offset).await?;
        Ok(Change::Deleted)
    }
}

/// Which subscription ended a [`wait`].
#[derive(Debug, PartialEq)]
pub enum Woken {
    Watched,
    Also,
}

/// Waits for a change on `watch` (or `also`), sending heartbeats meanwhile; a client that
/// leaves ends the wait.
pub async fn wait(sink: &mut Sink, watch: &Subscription, also: Option<&Subscription>) -> Result<Woken, StreamEnd> {
    loop {
        let (closed, heartbeat) = sink.idle_events();
        tokio::select! {
            () = watch.changed() => return Ok(Woken::Watched),
            () = async { match also { Some(other) => other.changed().await, None => std::future::pending().await } } => {
                return Ok(Woken::Also);
            }
            () = heartbeat => {}
            () = closed => return Err(StreamEnd::Disconnected),
        }
        sink.heartbeat_if_due().await?;
    }
}
