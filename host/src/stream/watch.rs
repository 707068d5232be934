//! What wakes followers: one inotify instance (through `notify`) and shared poll timers.
//!
//! A follower subscribes with the real paths its backend names (`watch_paths`) and a
//! [`Poll`] for what it follows, and gets a [`Subscription`] whose
//! [`Subscription::changed`] resolves after any inotify event on those paths (or on entries
//! directly inside them) or after the poll saw the followed thing change. Both are shared:
//! paths are reference-counted (the kernel watch goes with the last subscriber) and one poll
//! task runs per followed thing however many follow it, so idle followers cost nothing.
//! Wake-ups store a permit, so a change that lands while a follower is reading is not lost.
//! Only changes wake anyone: opening, reading and closing a file are not (a writer that opens,
//! appends and closes would wake every follower three times), and the events of one write
//! seen through both the file's watch and its directory's wake each follower once. A poll that
//! finds the state a subscriber has said it caught up with ([`Subscription::settle`]) leaves
//! that subscriber asleep: inotify already woke it for the change.
//! The hub counts the changes it passes on ([`WatchHub::changes_seen`]): a read that started
//! after the count reached a follower's mark saw every change that woke it (see
//! [`shared`](super::shared), which the hub also holds).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

use super::shared::SharedReads;

/// What a subscriber wants to be woken for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Interest {
    /// Any change of the watched paths or of the entries directly inside them.
    Changes,
    /// Only entries appearing, disappearing or being renamed: a directory's names. A task
    /// writing its log changes the directory's entry for that file, not its names.
    Entries,
}

/// One subscriber's wake-up, and what it has already seen.
struct Wake {
    notify: Notify,
    interest: Interest,
    /// The poll's fingerprint of the state the subscriber has caught up with ([`NOT_SETTLED`]
    /// while it has not said): a poll that finds the file in that state does not wake it.
    settled: AtomicU64,
}

/// [`Wake::settled`] before the subscriber has said what it has seen.
const NOT_SETTLED: u64 = u64::MAX;

#[derive(Default)]
struct Watched {
    /// Subscriber id → its wake-up.
    subscribers: HashMap<u64, Arc<Wake>>,
}

#[derive(Default)]
struct Table {
    paths: HashMap<PathBuf, Watched>,
    polls: HashMap<String, Polled>,
    next_id: u64,
    /// Changes passed on so far; counted before the subscribers are woken.
    changes: Arc<AtomicU64>,
}

/// One shared poll task and who it wakes.
struct Polled {
    subscribers: HashMap<u64, Arc<Wake>>,
    task: tokio::task::JoinHandle<()>,
}

/// A fingerprint of the followed thing (e.g. its identity and size), `None` when it is gone.
pub type Probe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<u64>> + Send>> + Send + Sync>;

/// A shared poll: `key` names the followed thing; `probe` is called every `interval`, and a
/// change of its answer wakes every subscriber of `key`.
pub struct Poll {
    pub key: String,
    pub interval: Duration,
    pub probe: Probe,
}

/// A request to the thread that owns the inotify watcher: adding a watch resolves the path,
/// which blocks on a hung filesystem (and waits on notify's own thread), so it never runs on an
/// async worker or under the table's lock. `Watch` answers whether the kernel took it.
enum Command {
    Watch(PathBuf, tokio::sync::oneshot::Sender<bool>),
    Unwatch(PathBuf),
}

/// How long a new subscriber waits for its watches before relying on its poll meanwhile.
const WATCH_WAIT: Duration = Duration::from_millis(500);

/// The shared watcher. Without inotify it still hands out subscriptions; followers then rely
/// on their poll timer alone.
pub struct WatchHub {
    /// To the watcher's thread (none without inotify).
    watcher: Option<std::sync::mpsc::Sender<Command>>,
    table: Arc<Mutex<Table>>,
    changes: Arc<AtomicU64>,
    reads: SharedReads,
}

impl Default for WatchHub {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchHub {
    /// A hub whose wake-ups are handed out by a task: call it inside the tokio runtime.
    pub fn new() -> Self {
        let changes = Arc::new(AtomicU64::new(0));
        let table = Arc::new(Mutex::new(Table { changes: Arc::clone(&changes), ..Table::default() }));
        // notify's event thread only forwards paths: it must never wait on the table lock,
        // nor (un)watching on it (that waits on notify's thread too). The wake-ups
        // are handed out by a task on the runtime, so the followers it wakes land in that
        // worker's own run queue instead of queueing one by one from outside the runtime.
        // Each path with whether its event may have changed a directory's names.
        let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<(PathBuf, bool)>>();
        let dispatch_table = Arc::clone(&table);
        tokio::spawn(async move {
            while let Some(mut paths) = events_rx.recv().await {
                // The events already queued (a write seen through the file's watch and its
                // directory's) wake each subscriber once.
                while let Ok(more) = events_rx.try_recv() {
                    paths.extend(more);
                }
                let table = dispatch_table.lock().unwrap_or_else(|e| e.into_inner());
                table.changes.fetch_add(1, Ordering::SeqCst);
                let mut woken = HashSet::new();
                for (path, names) in &paths {
                    for candidate in [Some(path.as_path()), path.parent()].into_iter().flatten() {
                        let Some(watched) = table.paths.get(candidate) else { continue };
                        for (id, wake) in &watched.subscribers {
                            if (*names || wake.interest == Interest::Changes) && woken.insert(*id) {
                                wake.notify.notify_one();
                            }
                        }
                    }
                }
            }
        });
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Opening and closing a file change nothing a follower reads (the write between
            // them is its own event): a writer that opens, appends and closes would otherwise
            // wake every follower three times, and every follower opening the file all others.
            if let Ok(event) = event
                && !event.kind.is_access()
            {
                let names = !matches!(event.kind, EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Metadata(_)));
                let _ = events_tx.send(event.paths.into_iter().map(|path| (path, names)).collect());
            }
        });
        let watcher = match watcher.and_then(|watcher| watcher_thread(watcher).map_err(notify::Error::io)) {
            Ok(commands) => Some(commands),
            Err(err) => {
                tracing::warn!("inotify unavailable, following falls back to polling: {err}");
                None
            }
        };
        Self { watcher, table, changes, reads: SharedReads::default() }
    }

    /// How many changes the hub has passed on: a mark for [`shared`](super::shared) reads.
    pub fn changes_seen(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// The reads shared by followers of the same file.
    pub fn reads(&self) -> &SharedReads {
        &self.reads
    }

    /// Watches `paths` for `interest` and joins `poll` for one follower. Paths that cannot be
    /// watched are left out (the poll covers them); a watch the kernel has not taken within
    /// [`WATCH_WAIT`] (a hung filesystem) is kept for when it does.
    pub async fn subscribe(self: &Arc<Self>, paths: &[String], interest: Interest, poll: Option<Poll>) -> Subscription {
        let wake = Arc::new(Wake { notify: Notify::new(), interest, settled: AtomicU64::new(NOT_SETTLED) });
        let mut watches = Vec::new();
        let (id, watched, poll_key) = {
            let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
            let id = table.next_id;
            table.next_id += 1;
            let mut watched = Vec::new();
            if let Some(watcher) = &self.watcher {
                for path in paths.iter().map(PathBuf::from) {
                    let entry = table.paths.entry(path.clone()).or_default();
                    if entry.subscribers.is_empty() {
                        let (taken, answer) = tokio::sync::oneshot::channel();
                        let _ = watcher.send(Command::Watch(path.clone(), taken));
                        watches.push((path.clone(), answer));
                    }
                    entry.subscribers.insert(id, Arc::clone(&wake));
                    watched.push(path);
                }
            }
            let poll_key = poll.map(|poll| {
                let key = poll.key.clone();
                let polled = table.polls.entry(key.clone()).or_insert_with(|| Polled {
                    subscribers: HashMap::new(),
                    task: tokio::spawn(poll_task(Arc::downgrade(&self.table), poll)),
                });
                polled.subscribers.insert(id, Arc::clone(&wake));
                key
            });
            (id, watched, poll_key)
        };
        // Made before the wait, so that a follower that goes away meanwhile still leaves.
        let mut subscription = Subscription { hub: Arc::clone(self), id, paths: watched, poll_key, wake };
        let answers = futures_util::future::join_all(
            watches
                .into_iter()
                .map(|(path, answer)| async move { (path, tokio::time::timeout(WATCH_WAIT, answer).await) }),
        );
        let refused: Vec<PathBuf> = answers
            .await
            .into_iter()
            .filter(|(_, answer)| matches!(answer, Ok(Ok(false)) | Ok(Err(_))))
            .map(|(path, _)| path)
            .collect();
        if !refused.is_empty() {
            self.unsubscribe(id, &refused, None);
            subscription.paths.retain(|path| !refused.contains(path));
        }
        subscription
    }

    fn unsubscribe(&self, id: u64, paths: &[PathBuf], poll_key: Option<&String>) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = poll_key
            && let Some(polled) = table.polls.get_mut(key)
        {
            polled.subscribers.remove(&id);
            if polled.subscribers.is_empty() {
                polled.task.abort();
                table.polls.remove(key);
            }
        }
        for path in paths {
            let Some(entry) = table.paths.get_mut(path) else { continue };
            entry.subscribers.remove(&id);
            if entry.subscribers.is_empty() {
                table.paths.remove(path);
                if let Some(watcher) = &self.watcher {
                    let _ = watcher.send(Command::Unwatch(path.clone()));
                }
            }
        }
    }

    /// Number of paths currently watched (for tests, diagnostics and `/v1/metrics`).
    pub fn watched_paths(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).paths.len()
    }

    /// Number of shared poll tasks running (for tests, diagnostics and `/v1/metrics`).
    pub fn polls(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).polls.len()
    }
}

/// Starts the thread that owns `watcher` and carries out [`Command`]s in order; it ends with
/// the hub.
fn watcher_thread(mut watcher: RecommendedWatcher) -> std::io::Result<std::sync::mpsc::Sender<Command>> {
    let (commands, requests) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("allocd-inotify".into()).spawn(move || {
        for command in requests {
            match command {
                Command::Watch(path, taken) => {
                    let result = watcher.watch(&path, RecursiveMode::NonRecursive);
                    let ok =
                        result.map_err(|err| tracing::debug!(path = %path.display(), "cannot watch: {err}")).is_ok();
                    let _ = taken.send(ok);
                }
                Command::Unwatch(path) => drop(watcher.unwatch(&path)),
            }
        }
    })?;
    Ok(commands)
}

/// Probes every `poll.interval`; wakes the key's subscribers when the answer changes.
async fn poll_task(table: std::sync::Weak<Mutex<Table>>, poll: Poll) {
    let mut last = (poll.probe)().await;
    let mut ticker = tokio::time::interval(poll.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = (poll.probe)().await;
        if now == last {
            continue;
        }
        last = now;
        let Some(table) = table.upgrade() else { return };
        let table = table.lock().unwrap_or_else(|e| e.into_inner());
        table.changes.fetch_add(1, Ordering::SeqCst);
        if let Some(polled) = table.polls.get(&poll.key) {
            // Followers already at the state it found (inotify woke them for this change) are
            // left alone: otherwise every append would wake them twice.
            for wake in polled.subscribers.values() {
                if now != Some(wake.settled.load(Ordering::SeqCst)) {
                    wake.notify.notify_one();
                }
            }
        }
    }
}

/// One follower's interest in some paths; unwatches on drop.
pub struct Subscription {
    hub: Arc<WatchHub>,
    id: u64,
    paths: Vec<PathBuf>,
    poll_key: Option<String>,
    wake: Arc<Wake>,
}

impl Subscription {
    /// Resolves after the next change on a watched path (or one that happened since the
    /// last call).
    pub async fn changed(&self) {
        self.wake.notify.notified().await
    }

    /// Tells the shared poll that this subscriber has caught up with the state whose probe
    /// answer is `fingerprint`: a poll finding that state does not wake it.
    pub fn settle(&self, fingerprint: u64) {
        self.wake.settled.store(fingerprint, Ordering::SeqCst);
    }

    /// True when inotify watches at least one of the paths.
    pub fn is_watching(&self) -> bool {
        !self.paths.is_empty()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id, &self.paths, self.poll_key.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;
    use std::time::Duration;

    /// A directory holding one file `name`, and the paths a follower of that file watches.
    fn followed_file(name: &str) -> (tempfile::TempDir, PathBuf, [String; 2]) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(name);
        std::fs::write(&file, b"a").unwrap();
        let paths = [file.to_string_lossy().into_owned(), dir.path().to_string_lossy().into_owned()];
        (dir, file, paths)
    }

    fn append(file: &Path, bytes: &[u8]) {
        std::fs::OpenOptions::new().append(true).open(file).unwrap().write_all(bytes).unwrap();
    }

    /// A poll every 20 ms answering `state`, counting its probes in `calls`.
    fn poll_of(state: &Arc<AtomicU64>, calls: &Arc<AtomicU64>) -> Option<Poll> {
        let (state, calls) = (Arc::clone(state), Arc::clone(calls));
        let probe: Probe = Arc::new(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let value = state.load(Ordering::SeqCst);
            Box::pin(async move { Some(value) })
        });
        Some(Poll { key: "alloc/file".into(), interval: Duration::from_millis(20), probe })
    }

    async fn woken(subscription: &Subscription, why: &str) {
        tokio::time::timeout(Duration::from_secs(5), subscription.changed()).await.expect(why);
    }

    async fn asleep(subscription: &Subscription) -> bool {
        tokio::time::timeout(Duration::from_millis(300), subscription.changed()).await.is_err()
    }

    #[tokio::test]
    async fn appends_wake_subscribers_and_drop_unwatches() {
        let (_dir, file, paths) = followed_file("log");
        let hub = Arc::new(WatchHub::new());
        let first = hub.subscribe(&paths, Interest::Changes, None).await;
        let second = hub.subscribe(&paths, Interest::Changes, None).await;
        assert!(first.is_watching());
        assert_eq!(hub.watched_paths(), 2);
        std::fs::write(&file, b"ab").unwrap();
        woken(&first, "woken by the write").await;
        woken(&second, "both are woken").await;
        drop(first);
        assert_eq!(hub.watched_paths(), 2, "still watched for the second subscriber");
        drop(second);
        assert_eq!(hub.watched_paths(), 0);
    }

    #[tokio::test]
    async fn opening_reading_and_closing_a_file_wake_nobody() {
        let (_dir, file, paths) = followed_file("log");
        let hub = Arc::new(WatchHub::new());
        let follower = hub.subscribe(&paths, Interest::Changes, None).await;
        for _ in 0..3 {
            drop(std::fs::read(&file).unwrap());
            drop(std::fs::OpenOptions::new().append(true).open(&file).unwrap());
        }
        assert!(asleep(&follower).await, "opened, read and closed (for writing too), never changed");
        append(&file, b"b");
        woken(&follower, "woken by the append").await;
    }

    #[tokio::test]
    async fn a_subscriber_to_a_directorys_names_sleeps_through_appends() {
        let (dir, file, _) = followed_file("web.stdout.0");
        let hub = Arc::new(WatchHub::new());
        let dir_path = [dir.path().to_string_lossy().into_owned()];
        let names = hub.subscribe(&dir_path, Interest::Entries, None).await;
        let changes = hub.subscribe(&dir_path, Interest::Changes, None).await;
        append(&file, b"b");
        woken(&changes, "the append is a change").await;
        assert!(asleep(&names).await, "an append changes no name");
        std::fs::write(dir.path().join("web.stdout.1"), b"c").unwrap();
        woken(&names, "a new file is a new name").await;
        std::fs::remove_file(&file).unwrap();
        woken(&names, "a removed file is a name gone").await;
    }

    /// A hub whose watcher thread never answers (adding a watch on a hung filesystem), and the
    /// end of its channel that nobody serves.
    fn hub_whose_watcher_hangs() -> (Arc<WatchHub>, std::sync::mpsc::Receiver<Command>) {
        let mut hub = WatchHub::new();
        let (stuck, never_served) = std::sync::mpsc::channel();
        hub.watcher = Some(stuck);
        (Arc::new(hub), never_served)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_watch_stuck_in_the_kernel_delays_a_subscriber_by_at_most_the_wait() {
        let (_dir, _file, paths) = followed_file("log");
        let (hub, _never_served) = hub_whose_watcher_hangs();
        let started = std::time::Instant::now();
        let (state, calls) = (Arc::new(AtomicU64::new(1)), Arc::new(AtomicU64::new(0)));
        let follower = hub.subscribe(&paths, Interest::Changes, poll_of(&state, &calls)).await;
        assert!(started.elapsed() < WATCH_WAIT + Duration::from_secs(1), "waited {:?}", started.elapsed());
        assert!(follower.is_watching(), "kept for when the kernel takes it");
        // Meanwhile the table stays free: others subscribe, and the poll still wakes.
        let other = hub.subscribe(&[], Interest::Changes, poll_of(&state, &calls)).await;
        state.store(2, Ordering::SeqCst);
        woken(&follower, "woken by the poll").await;
        woken(&other, "woken by the poll").await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_follower_gone_while_waiting_for_its_watches_leaves_nothing_behind() {
        let (_dir, _file, paths) = followed_file("log");
        let (hub, _never_served) = hub_whose_watcher_hangs();
        let (state, calls) = (Arc::new(AtomicU64::new(1)), Arc::new(AtomicU64::new(0)));
        let gone = tokio::time::timeout(
            Duration::from_millis(100),
            hub.subscribe(&paths, Interest::Changes, poll_of(&state, &calls)),
        )
        .await;
        assert!(gone.is_err(), "it left while waiting");
        assert_eq!((hub.watched_paths(), hub.polls()), (0, 0));
    }

    #[tokio::test]
    async fn one_shared_poll_wakes_every_subscriber_and_ends_with_the_last() {
        let hub = Arc::new(WatchHub::new());
        let (state, calls) = (Arc::new(AtomicU64::new(1)), Arc::new(AtomicU64::new(0)));
        let mut subscribers = Vec::new();
        for _ in 0..50 {
            subscribers.push(hub.subscribe(&[], Interest::Changes, poll_of(&state, &calls)).await);
        }
        assert_eq!(hub.polls(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(calls.load(Ordering::SeqCst) < 20, "one poll, not fifty");
        state.store(2, Ordering::SeqCst);
        for subscriber in &subscribers {
            woken(subscriber, "woken by the poll").await;
        }
        drop(subscribers);
        assert_eq!(hub.polls(), 0);
    }

    #[tokio::test]
    async fn a_poll_leaves_asleep_who_already_caught_up_with_what_it_found() {
        let hub = Arc::new(WatchHub::new());
        let (state, calls) = (Arc::new(AtomicU64::new(1)), Arc::new(AtomicU64::new(0)));
        let caught_up = hub.subscribe(&[], Interest::Changes, poll_of(&state, &calls)).await;
        let behind = hub.subscribe(&[], Interest::Changes, poll_of(&state, &calls)).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        caught_up.settle(2);
        behind.settle(1);
        state.store(2, Ordering::SeqCst);
        woken(&behind, "woken by the poll").await;
        assert!(asleep(&caught_up).await, "already at the state the poll found");
        state.store(3, Ordering::SeqCst);
        woken(&caught_up, "woken by the next change").await;
    }
}
