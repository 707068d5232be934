//! One inotify instance (through `notify`) shared by every follower.
//!
//! A follower subscribes with the real paths its backend names (`watch_paths`) and gets a
//! [`Subscription`] whose [`Subscription::changed`] resolves after any event on those paths
//! or on entries directly inside them. Paths are reference-counted: the kernel watch goes
//! when the last subscriber does, so dropped streams leave no watches behind. Events store a
//! permit, so a change that lands while the follower is busy reading is not lost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

#[derive(Default)]
struct Watched {
    /// Subscriber id → its wake-up.
    subscribers: HashMap<u64, Arc<Notify>>,
}

#[derive(Default)]
struct Table {
    paths: HashMap<PathBuf, Watched>,
    next_id: u64,
}

/// The shared watcher. Without inotify it still hands out subscriptions; followers then rely
/// on their poll timer alone.
pub struct WatchHub {
    watcher: Option<Mutex<RecommendedWatcher>>,
    table: Arc<Mutex<Table>>,
}

impl Default for WatchHub {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchHub {
    pub fn new() -> Self {
        let table = Arc::new(Mutex::new(Table::default()));
        // notify's event thread only forwards paths: it must never wait on the table lock,
        // which is held while (un)watching, and (un)watching waits on that thread.
        let (events_tx, events_rx) = std::sync::mpsc::channel::<Vec<PathBuf>>();
        let dispatch_table = Arc::clone(&table);
        std::thread::Builder::new()
            .name("allocd-watch".into())
            .spawn(move || {
                for paths in events_rx {
                    let table = dispatch_table.lock().unwrap_or_else(|e| e.into_inner());
                    for path in &paths {
                        for candidate in [Some(path.as_path()), path.parent()].into_iter().flatten() {
                            if let Some(watched) = table.paths.get(candidate) {
                                watched.subscribers.values().for_each(|wake| wake.notify_one());
                            }
                        }
                    }
                }
            })
            .expect("spawning the watch dispatcher");
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                let _ = events_tx.send(event.paths);
            }
        });
        let watcher = match watcher {
            Ok(watcher) => Some(Mutex::new(watcher)),
            Err(err) => {
                tracing::warn!("inotify unavailable, following falls back to polling: {err}");
                None
            }
        };
        Self { watcher, table }
    }

    /// Watches `paths` for one follower. Paths that cannot be watched are skipped (the
    /// follower's poll timer covers them).
    pub fn subscribe(self: &Arc<Self>, paths: &[String]) -> Subscription {
        let wake = Arc::new(Notify::new());
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let id = table.next_id;
        table.next_id += 1;
        let mut watched = Vec::new();
        for path in paths.iter().map(PathBuf::from) {
            let entry = table.paths.entry(path.clone()).or_default();
            if entry.subscribers.is_empty() && !self.watch(&path) {
                table.paths.remove(&path);
                continue;
            }
            entry.subscribers.insert(id, Arc::clone(&wake));
            watched.push(path);
        }
        Subscription { hub: Arc::clone(self), id, paths: watched, wake }
    }

    fn watch(&self, path: &Path) -> bool {
        let Some(watcher) = &self.watcher else { return false };
        let result = watcher.lock().unwrap_or_else(|e| e.into_inner()).watch(path, RecursiveMode::NonRecursive);
        result.map_err(|err| tracing::debug!(path = %path.display(), "cannot watch: {err}")).is_ok()
    }

    fn unsubscribe(&self, id: u64, paths: &[PathBuf]) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for path in paths {
            let Some(entry) = table.paths.get_mut(path) else { continue };
            entry.subscribers.remove(&id);
            if entry.subscribers.is_empty() {
                table.paths.remove(path);
                if let Some(watcher) = &self.watcher {
                    let _ = watcher.lock().unwrap_or_else(|e| e.into_inner()).unwatch(path);
                }
            }
        }
    }

    /// Number of paths currently watched (for tests and diagnostics).
    pub fn watched_paths(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).paths.len()
    }
}

/// One follower's interest in some paths; unwatches on drop.
pub struct Subscription {
    hub: Arc<WatchHub>,
    id: u64,
    paths: Vec<PathBuf>,
    wake: Arc<Notify>,
}

impl Subscription {
    /// Resolves after the next change on a watched path (or one that happened since the
    /// last call).
    pub async fn changed(&self) {
        self.wake.notified().await
    }

    /// True when inotify watches at least one of the paths.
    pub fn is_watching(&self) -> bool {
        !self.paths.is_empty()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id, &self.paths);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn appends_wake_subscribers_and_drop_unwatches() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log");
        std::fs::write(&file, b"a").unwrap();
        let hub = Arc::new(WatchHub::new());
        let paths = [file.to_string_lossy().into_owned(), dir.path().to_string_lossy().into_owned()];
        let first = hub.subscribe(&paths);
        let second = hub.subscribe(&paths);
        assert!(first.is_watching());
        assert_eq!(hub.watched_paths(), 2);
        std::fs::write(&file, b"ab").unwrap();
        tokio::time::timeout(Duration::from_secs(5), first.changed()).await.expect("woken by the write");
        tokio::time::timeout(Duration::from_secs(5), second.changed()).await.expect("both are woken");
        drop(first);
        assert_eq!(hub.watched_paths(), 2, "still watched for the second subscriber");
        drop(second);
        assert_eq!(hub.watched_paths(), 0);
    }
}
