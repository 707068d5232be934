//! The background collector: a private tokio runtime on the plugin's own thread.
//!
//! Each cdylib carries its own copy of tokio, so the plugin never touches the host's runtime:
//! [`Collector::start`] builds a current-thread runtime and moves it to a thread named
//! `allocd-docker`. That thread repeats a cycle every `stats_interval` (measured from the start of
//! one cycle to the start of the next; a cycle that takes longer is followed at once):
//!
//! 1. list the containers, stopped ones included, that carry Nomad's alloc label
//!    ([`crate::containers`]), and keep that listing;
//! 2. drop cached samples of containers that are no longer running;
//! 3. fetch `stats?stream=false` of every running task container concurrently (each answer
//!    takes the daemon a second or two) and store each container's latest [`TaskSample`].
//!
//! The host reads the listing and the cache through [`Collector::latest`], which only clones
//! them: a request never waits for the daemon. The report is complete only while the last
//! listing succeeded: before the first listing and during an outage, a container missing from
//! the report is not evidence that its task ended. When the daemon cannot be reached, stalls or cannot list, the cache is
//! emptied (list failure) or kept (stats failure), the next cycle is delayed by Nomad's docker
//! backoff `5s·2^n` capped at 2 min (spec §3), and one warning is logged when the state changes —
//! not once per attempt. Dropping the collector stops and joins the thread.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use allocd_plugin_sdk::compute::Compute;
use allocd_plugin_sdk::{PluginError, TaskLabels, TaskReport, TaskSample, TaskState};
use hyper::StatusCode;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::client::{ClientError, DockerClient};
use crate::config::Settings;
use crate::containers::{self, Target};
use crate::mapping;

/// Deadline of every request to the daemon (a stats answer normally takes 1–2 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First delay after a failure; doubles per consecutive failure (Nomad's docker driver).
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest delay between attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(120);

/// Latest sample per container ID.
type Cache = Arc<Mutex<HashMap<String, TaskSample>>>;

fn lock(cache: &Cache) -> MutexGuard<'_, HashMap<String, TaskSample>> {
    cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why the daemon could not be listed in the last cycle, if it could not.
type Outage = Arc<Mutex<Option<String>>>;

/// The task containers of the last successful listing; `None` before the first one and
/// after a failed one.
type Listing = Arc<Mutex<Option<Vec<Target>>>>;

/// Handle of the background thread; dropping it stops the thread.
pub struct Collector {
    cache: Cache,
    outage: Outage,
    listing: Listing,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    /// Starts collecting in the background; returns at once.
    pub fn start(settings: &Settings) -> Result<Self, PluginError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PluginError::internal(format!("docker: cannot build the plugin's runtime: {e}")))?;
        let cache = Cache::default();
        let outage = Outage::default();
        let listing = Listing::default();
        let mut worker = Worker {
            outage: outage.clone(),
            listing: listing.clone(),
            client: DockerClient::new(&settings.endpoint, settings.socket.clone(), REQUEST_TIMEOUT),
            compute: settings.compute,
            interval: settings.stats_interval,
            cache: cache.clone(),
            health: Health::new(&settings.endpoint, settings.stats_interval),
            failing: HashSet::new(),
        };
        let (stop, mut stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("allocd-docker".into())
            .spawn(move || {
                loop {
                    let run = catch_unwind(AssertUnwindSafe(|| runtime.block_on(worker.run(&mut stopped))));
                    if run.is_ok() {
                        return;
                    }
                    // The panic message already reached the host through the SDK's panic hook.
                    lock(&worker.cache).clear();
                    log::error!("docker: the stats collector panicked; restarting it in {BACKOFF_BASE:?}");
                    let stop_requested = runtime.block_on(async {
                        tokio::select! {
                            _ = &mut stopped => true,
                            _ = tokio::time::sleep(BACKOFF_BASE) => false,
                        }
                    });
                    if stop_requested {
                        return;
                    }
                }
            })
            .map_err(|e| PluginError::internal(format!("docker: cannot start the collector thread: {e}")))?;
        Ok(Self { cache, outage, listing, stop: Some(stop), thread: Some(thread) })
    }

    /// Every task container of the last listing, ordered by allocation and task: the latest
    /// stats of running ones (state only until their first stats answer), the state of the
    /// others. `unavailable` while the daemon cannot be listed, and an empty partial report
    /// before the first listing, so the host never mistakes either for containers that exited.
    pub fn latest(&self) -> Result<TaskReport, PluginError> {
        if let Some(reason) = self.outage.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Err(PluginError::unavailable(format!("docker: {reason}")));
        }
        let Some(listing) = self.listing.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Ok(TaskReport::partial(Vec::new()));
        };
        let cache = lock(&self.cache);
        let mut samples: Vec<TaskSample> = listing
            .iter()
            .map(|target| match cache.get(&target.container_id) {
                Some(sample) if target.state == TaskState::RUNNING => sample.clone(),
                _ => mapping::state_sample(target),
            })
            .collect();
        samples.sort_by(|a, b| (&a.alloc_id, &a.task).cmp(&(&b.alloc_id, &b.task)));
        Ok(TaskReport::complete(samples))
    }

    /// The labels of the task containers of the last listing that carry any.
    pub fn task_labels(&self) -> Vec<TaskLabels> {
        let listing = self.listing.lock().unwrap_or_else(|e| e.into_inner());
        listing.iter().flatten().filter_map(Target::task_labels).collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        drop(self.stop.take()); // wakes the thread wherever it waits
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The state the background thread owns.
struct Worker {
    outage: Outage,
    listing: Listing,
    client: DockerClient,
    compute: Compute,
    interval: Duration,
    cache: Cache,
    health: Health,
    /// Containers whose last stats request failed (each is warned about once).
    failing: HashSet<String>,
}

impl Worker {
    /// Cycles until `stop` fires (or its sender is dropped).
    async fn run(&mut self, stop: &mut oneshot::Receiver<()>) {
        loop {
            let started = Instant::now();
            let outcome = tokio::select! {
                _ = &mut *stop => return,
                outcome = self.cycle() => outcome,
            };
            let (delay, message) = match outcome {
                Ok(()) => (self.interval.saturating_sub(started.elapsed()), self.health.succeeded()),
                Err(err) => self.health.failed(&err),
            };
            if let Some((level, text)) = message {
                log::log!(level, "{text}");
            }
            tokio::select! {
                _ = &mut *stop => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One list + stats round. `Err` means the daemon itself failed (back off).
    async fn cycle(&mut self) -> Result<(), ClientError> {
        let list = match self.client.list_task_containers().await {
            Ok(list) => {
                *self.outage.lock().unwrap_or_else(|e| e.into_inner()) = None;
                list
            }
            Err(err) => {
                *self.outage.lock().unwrap_or_else(|e| e.into_inner()) = Some(err.to_string());
                *self.listing.lock().unwrap_or_else(|e| e.into_inner()) = None;
                lock(&self.cache).clear();
                self.failing.clear();
                return Err(err);
            }
        };
        let targets = containers::targets(&list);
        *self.listing.lock().unwrap_or_else(|e| e.into_inner()) = Some(targets.clone());
        let running: Vec<Target> = targets.into_iter().filter(|t| t.state == TaskState::RUNNING).collect();
        let live: HashSet<&str> = running.iter().map(|t| t.container_id.as_str()).collect();
        lock(&self.cache).retain(|id, _| live.contains(id.as_str()));
        self.failing.retain(|id| live.contains(id.as_str()));

        let mut requests = JoinSet::new();
        for target in running {
            let client = self.client.clone();
            requests.spawn(async move {
                let stats = client.stats(&target.container_id).await;
                (target, stats)
            });
        }
        let mut daemon_failure = None;
        while let Some(joined) = requests.join_next().await {
            let Ok((target, stats)) = joined else {
                log::error!("docker: a stats request panicked");
                continue;
            };
            match stats {
                Ok(stats) => self.store(&target, &stats),
                Err(err) if err.status() == Some(StatusCode::NOT_FOUND) => self.forget(&target),
                Err(err) if err.is_daemon_failure() => {
                    daemon_failure.get_or_insert(err);
                }
                Err(err) => {
                    // An answer about this one container: keep its previous sample, warn once.
                    if self.failing.insert(target.container_id.clone()) {
                        log::warn!("docker: cannot sample task {:?} of alloc {}: {err}", target.task, target.alloc_id);
                    }
                }
            }
        }
        daemon_failure.map_or(Ok(()), Err)
    }

    fn store(&mut self, target: &Target, stats: &mapping::StatsResponse) {
        match mapping::task_sample(&target.alloc_id, &target.task, stats, &self.compute) {
            Some(sample) => {
                if self.failing.remove(&target.container_id) {
                    log::info!("docker: sampling task {:?} of alloc {} again", target.task, target.alloc_id);
                }
                lock(&self.cache).insert(target.container_id.clone(), sample);
            }
            None => self.forget(target), // it stopped after it was listed
        }
    }

    fn forget(&mut self, target: &Target) {
        lock(&self.cache).remove(&target.container_id);
        self.failing.remove(&target.container_id);
    }
}

/// Whether the daemon answers; says something only when that changes.
#[derive(Debug)]
struct Health {
    endpoint: String,
    interval: Duration,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Healthy,
    /// Consecutive failed cycles.
    Failing(u32),
}

type Message = Option<(log::Level, String)>;

impl Health {
    fn new(endpoint: &str, interval: Duration) -> Self {
        Self { endpoint: endpoint.to_string(), interval, state: State::Starting }
    }

    /// A cycle went through: the message to log, if this is news.
    fn succeeded(&mut self) -> Message {
        let before = std::mem::replace(&mut self.state, State::Healthy);
        let text = match before {
            State::Healthy => return None,
            State::Starting => format!(
                "docker: collecting stats of Nomad task containers from {} every {:?}",
                self.endpoint, self.interval
            ),
            State::Failing(_) => {
                format!("docker: {} answers again; collecting stats every {:?}", self.endpoint, self.interval)
            }
        };
        Some((log::Level::Info, text))
    }

    /// A cycle failed: how long to wait before the next one, and the message to log.
    fn failed(&mut self, err: &ClientError) -> (Duration, Message) {
        let failures = match self.state {
            State::Failing(n) => n.saturating_add(1),
            State::Starting | State::Healthy => 1,
        };
        self.state = State::Failing(failures);
        let delay = backoff(failures);
        let message = if failures == 1 {
            let text = format!("docker: {err}; retrying in {delay:?}, then backing off up to {BACKOFF_CAP:?}");
            (log::Level::Warn, text)
        } else {
            (log::Level::Debug, format!("docker: still failing ({failures} attempts): {err}; next try in {delay:?}"))
        };
        (delay, Some(message))
    }
}

/// Nomad's docker stats backoff: `5s·2^(n−1)` for the n-th consecutive failure, at most 2 min.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn connect_error() -> ClientError {
        ClientError::Connect {
            endpoint: "unix:///var/run/docker.sock".into(),
            error: std::io::Error::from(std::io::ErrorKind::NotFound),
        }
    }

    #[test]
    fn backoff_doubles_up_to_two_minutes() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 120, 120, 120]);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn one_warning_per_state_change() {
        let mut health = Health::new("unix:///var/run/docker.sock", Duration::from_secs(1));
        let (delay, message) = health.failed(&connect_error());
        assert_eq!(delay, Duration::from_secs(5));
        let (level, text) = message.unwrap();
        assert_eq!(level, log::Level::Warn);
        assert!(text.starts_with("docker: cannot reach unix:///var/run/docker.sock: "), "{text}");
        assert!(text.contains("; retrying in 5s"), "{text}");
        for expected in [10, 20, 40] {
            let (delay, message) = health.failed(&connect_error());
            assert_eq!(delay, Duration::from_secs(expected));
            assert_eq!(message.unwrap().0, log::Level::Debug);
        }
        let (level, text) = health.succeeded().unwrap();
        assert_eq!(level, log::Level::Info);
        assert!(text.contains("answers again"), "{text}");
        assert_eq!(health.succeeded(), None);
        let (delay, message) = health.failed(&connect_error());
        assert_eq!((delay, message.unwrap().0), (Duration::from_secs(5), log::Level::Warn));
    }

    #[test]
    fn first_success_is_announced_once() {
        let mut health = Health::new("unix:///d.sock", Duration::from_millis(500));
        let (level, text) = health.succeeded().unwrap();
        assert_eq!(level, log::Level::Info);
        assert_eq!(text, "docker: collecting stats of Nomad task containers from unix:///d.sock every 500ms");
        assert_eq!(health.succeeded(), None);
    }

    /// No daemon: an unavailable error (not "no containers"), and the collector stops
    /// promptly while it backs off.
    #[test]
    fn absent_daemon_is_unavailable_and_stops_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let socket: PathBuf = dir.path().join("docker.sock");
        let settings = Settings {
            endpoint: format!("unix://{}", socket.display()),
            socket,
            compute: Compute { total_compute: 1000, num_cores: 1 },
            stats_interval: Duration::from_millis(50),
        };
        let collector = Collector::start(&settings).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let error = collector.latest().unwrap_err();
        assert_eq!(error.kind, allocd_plugin_sdk::ErrorKind::UNAVAILABLE);
        assert!(error.message.starts_with("docker: "), "{error}");
        let started = Instant::now();
        drop(collector);
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    }
}
