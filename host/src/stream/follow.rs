//! Reading one file for a stream, and following it.
//!
//! A [`Cursor`] reads an open file from an offset in large chunks and hands the bytes to the
//! sink. At end of file a follower [`Cursor::wait`]s: woken by inotify on the backend's
//! `watch_paths`, by a poll timer (at most 250 ms, for backends without local paths and
//! filesystems where inotify stays silent), by the heartbeat timer or by the client leaving.
//! [`Cursor::check`] then tells truncation (the file shrank below the read position) from
//! deletion (the path is gone or names another file), as Nomad's tail does.

use std::sync::Arc;
use std::time::Duration;

use allocd_plugin_api::{ErrorKind, FileIdentity};

use super::frame::{Disconnected, FILE_DELETED, FILE_TRUNCATED, Sink};
use super::watch::{Subscription, WatchHub};
use crate::plugins::registry::OpenFile;
use crate::plugins::{PluginFailure, StoragePlugin};

/// Bytes per `read_at` call while streaming (sent as 64 KiB frames).
const READ_SIZE: usize = 1 << 20;
/// The poll fallback.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

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
    /// The file shrank; reading restarts at 0 (a `file truncated` frame was sent).
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

    /// Subscribes to the backend's watch paths for `path` (none when it names none).
    pub async fn subscribe(&self, path: &str) -> Subscription {
        let paths = self.backend().watch_paths(&self.alloc_id, path).await.unwrap_or_default();
        self.hub.subscribe(&paths)
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
}

impl Cursor {
    pub async fn open(source: &Source, path: &str, frame_name: &str, offset: u64) -> Result<Self, PluginFailure> {
        let subscription = source.subscribe(path).await;
        let file = source.backend().open(&source.alloc_id, path).await?;
        let identity = file.identity().await?;
        Ok(Self {
            source: source.clone(),
            file,
            identity,
            path: path.to_owned(),
            frame_name: frame_name.to_owned(),
            offset,
            subscription,
        })
    }

    /// Sends everything up to end of file, or until `limit` bytes have been sent in all.
    /// Returns true when the limit was reached.
    pub async fn drain(&mut self, sink: &mut Sink, limit: &mut Option<u64>) -> Result<bool, StreamEnd> {
        loop {
            if *limit == Some(0) {
                return Ok(true);
            }
            let len = limit.map_or(READ_SIZE, |left| left.min(READ_SIZE as u64) as usize);
            let chunk = self.file.read_at(self.offset, len).await?;
            if chunk.is_empty() {
                return Ok(false);
            }
            self.offset += chunk.len() as u64;
            if let Some(left) = limit {
                *left -= chunk.len() as u64;
            }
            sink.data(&self.frame_name, &chunk, self.offset).await?;
        }
    }

    /// Waits for a reason to look at the file again (see the module doc); sends heartbeats.
    pub async fn wait(&self, sink: &mut Sink, also: Option<&Subscription>) -> Result<(), StreamEnd> {
        wait(sink, &self.subscription, also).await
    }

    /// Looks for truncation and deletion after a wake-up with no new bytes.
    pub async fn check(&mut self, sink: &mut Sink) -> Result<Change, StreamEnd> {
        let backend = self.source.backend();
        match backend.identify(&self.source.alloc_id, &self.path).await {
            Ok(now) if (now.device, now.inode) == (self.identity.device, self.identity.inode) => {}
            Ok(_) => return self.deleted(sink).await,
            Err(failure) if failure.kind() == ErrorKind::NOT_FOUND => return self.deleted(sink).await,
            Err(failure) => return Err(failure.into()),
        }
        let size = self.file.identity().await?.size;
        if size < self.offset {
            self.offset = 0;
            sink.event(&self.frame_name, FILE_TRUNCATED, 0).await?;
            return Ok(Change::Truncated);
        }
        Ok(Change::None)
    }

    async fn deleted(&self, sink: &mut Sink) -> Result<Change, StreamEnd> {
        sink.event(&self.frame_name, FILE_DELETED, self.offset).await?;
        Ok(Change::Deleted)
    }
}

/// Waits for a change on `watch` (or `also`), the poll timer, the heartbeat or a disconnect.
pub async fn wait(sink: &mut Sink, watch: &Subscription, also: Option<&Subscription>) -> Result<(), StreamEnd> {
    let heartbeat = sink.heartbeat_due();
    tokio::select! {
        () = watch.changed() => {}
        () = async { match also { Some(other) => other.changed().await, None => std::future::pending().await } } => {}
        () = tokio::time::sleep(POLL_INTERVAL) => {}
        () = async { match heartbeat { Some(due) => tokio::time::sleep_until(due).await, None => std::future::pending().await } } => {}
        () = sink.closed() => return Err(StreamEnd::Disconnected),
    }
    sink.heartbeat_if_due().await?;
    Ok(())
}
