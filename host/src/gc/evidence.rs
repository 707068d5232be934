//! What the metric providers have proven about each task's life: the only ground on which
//! allocd deletes an allocation.
//!
//! Every sampling round hands each provider's report (or its failure) to [`Evidence::observe`].
//! Per task and provider it keeps whether the task was ever seen running, its state now, and
//! since when it has been proven exited: reported exited, or seen before and missing from a
//! *complete* report. A failed or partial report makes the provider's missing tasks unknown,
//! never exited. [`Evidence::verdict`] turns that into terminal / live / unknown for one
//! allocation: terminal only when a task was seen running and every task — including every
//! task directory the storage backend shows — is proven exited for longer than the grace.
//!
//! What was seen is kept in `<data_dir>/client/task-evidence.json`, replaced atomically
//! (write a temporary file, fsync, rename) whenever it changes, so a task that exits while the
//! agent is down is recognised at the next start. Loaded records start unknown: only a fresh
//! report can prove an exit, so a kill -9 at any moment never turns unknown into exited. An
//! exit's time survives only an unbroken run of rounds proving it: after a spell of not knowing
//! (a failed provider, the agent down), the task may have run and exited again meanwhile, so
//! the grace starts again from the next proof (the provider's reported exit time, or then).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allocd_plugin_abi::{TaskReport, TaskState};
use serde::{Deserialize, Serialize};

/// One task as one provider has seen it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Record {
    /// The task was reported running at least once.
    seen_running: bool,
    /// Unix ns since when the task has been proven exited without a break.
    exited_since: Option<i64>,
    /// The state now; not persisted (every start begins unknown).
    #[serde(skip)]
    state: TaskState,
}

/// One task as one provider has seen it, for readers outside the GC.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvidence {
    pub task: String,
    pub provider: String,
    /// Reported running at least once.
    pub seen_running: bool,
    pub state: TaskState,
    /// Unix ns since when it has been proven exited.
    pub exited_since: Option<i64>,
}

/// `(alloc_id, task, provider)`.
type Key = (String, String, String);

/// Whether an allocation may be deleted, and why not.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Terminal,
    /// A task runs, or exited less than the grace ago.
    Live(String),
    /// Not enough evidence either way.
    Unknown(String),
}

/// The evidence store; see the module docs.
pub struct Evidence {
    file: Option<PathBuf>,
    records: Mutex<BTreeMap<Key, Record>>,
    /// Serialises writes of the file (a write runs on the blocking pool).
    writing: Arc<Mutex<()>>,
}

/// The persisted form: a list, so the file reads well.
#[derive(Serialize, Deserialize)]
struct Saved {
    alloc_id: String,
    task: String,
    provider: String,
    #[serde(flatten)]
    record: Record,
}

impl Evidence {
    /// An empty store that is not persisted (tests, and agents without a data dir).
    pub fn in_memory() -> Self {
        Self { file: None, records: Mutex::default(), writing: Arc::default() }
    }

    /// The store kept under `data_dir`, loaded from its file if there is one.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let file = data_dir.join("client").join("task-evidence.json");
        let mut records = BTreeMap::new();
        match std::fs::read(&file) {
            Ok(bytes) => {
                let saved: Vec<Saved> =
                    serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
                for s in saved {
                    records.insert((s.alloc_id, s.task, s.provider), Record { state: TaskState::UNKNOWN, ..s.record });
                }
                tracing::info!(tasks = records.len(), file = %file.display(), "loaded task evidence");
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => anyhow::bail!("reading {}: {err}", file.display()),
        }
        Ok(Self { file: Some(file), records: Mutex::new(records), writing: Arc::default() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one round of reports: `(provider, Some(report))`, or `None` when it failed.
    /// Tasks of providers not in `rounds` become unknown. Saves the file when it changed.
    pub async fn observe(&self, rounds: &[(&str, Option<&TaskReport>)], now_ns: i64) {
        let changed = {
            let mut records = self.lock();
            apply(&mut records, rounds, now_ns).then(|| persisted(&records))
        };
        if let Some(saved) = changed {
            self.save(saved).await;
        }
    }

    /// The current state of one task as seen by `provider`.
    pub fn state(&self, alloc_id: &str, task: &str, provider: &str) -> TaskState {
        let key = (alloc_id.to_string(), task.to_string(), provider.to_string());
        self.lock().get(&key).map_or(TaskState::UNKNOWN, |r| r.state)
    }

    /// What every provider has seen of `alloc_id`'s tasks, by task then provider (for the
    /// allocation listing; the GC decides through [`Evidence::verdict`] only).
    pub fn tasks_of(&self, alloc_id: &str) -> Vec<TaskEvidence> {
        let records = self.lock();
        records
            .iter()
            .filter(|((alloc, _, _), _)| alloc == alloc_id)
            .map(|((_, task, provider), r)| TaskEvidence {
                task: task.clone(),
                provider: provider.clone(),
                seen_running: r.seen_running,
                state: r.state,
                exited_since: r.exited_since,
            })
            .collect()
    }

    /// Whether `alloc_id`, whose storage shows `tasks`, may be deleted now.
    pub fn verdict(&self, alloc_id: &str, tasks: &[String], grace: Duration, now_ns: i64) -> Verdict {
        let records = self.lock();
        let first: Key = (alloc_id.to_string(), String::new(), String::new());
        let seen: Vec<(&Key, &Record)> =
            records.range(first..).take_while(|((alloc, _, _), _)| alloc == alloc_id).collect();
        if seen.is_empty() {
            return Verdict::Unknown("no metric provider has seen a task of it".into());
        }
        if let Some(((_, task, provider), _)) = seen.iter().find(|(_, r)| r.state == TaskState::RUNNING) {
            return Verdict::Live(format!("task {task:?} is running ({provider})"));
        }
        if let Some(((_, task, provider), _)) = seen.iter().find(|(_, r)| r.state != TaskState::EXITED) {
            return Verdict::Unknown(format!("the state of task {task:?} is unknown ({provider})"));
        }
        if !seen.iter().any(|(_, r)| r.seen_running) {
            return Verdict::Unknown("none of its tasks was ever seen running".into());
        }
        let covered: HashSet<&str> = seen.iter().map(|((_, task, _), _)| task.as_str()).collect();
        if let Some(task) = tasks.iter().find(|t| !covered.contains(t.as_str())) {
            return Verdict::Unknown(format!("no metric provider has seen task {task:?}"));
        }
        let last_exit = seen.iter().filter_map(|(_, r)| r.exited_since).max().unwrap_or(now_ns);
        let exited_for = Duration::from_nanos(now_ns.saturating_sub(last_exit).max(0) as u64);
        if exited_for < grace {
            return Verdict::Live(format!("its last task exited {exited_for:.0?} ago, within gc_exit_grace {grace:?}"));
        }
        Verdict::Terminal
    }

    /// Forgets a collected allocation.
    pub async fn forget(&self, alloc_id: &str) {
        self.retain_where(|alloc| alloc != alloc_id).await;
    }

    /// Forgets allocations that no storage backend holds any more.
    pub async fn retain(&self, existing: &HashSet<String>) {
        self.retain_where(|alloc| existing.contains(alloc)).await;
    }

    async fn retain_where(&self, keep: impl Fn(&str) -> bool) {
        let changed = {
            let mut records = self.lock();
            let before = records.len();
            records.retain(|(alloc, _, _), _| keep(alloc));
            (records.len() != before).then(|| persisted(&records))
        };
        if let Some(saved) = changed {
            self.save(saved).await;
        }
    }

    /// Replaces the file atomically on the blocking pool; a failure is logged (the evidence in
    /// memory stays right, and a lost file only makes tasks unknown after a restart).
    async fn save(&self, saved: Vec<Saved>) {
        let Some(file) = self.file.clone() else { return };
        let writing = Arc::clone(&self.writing);
        let written = tokio::task::spawn_blocking(move || {
            let _one_at_a_time = writing.lock().unwrap_or_else(|e| e.into_inner());
            write_atomically(&file, &saved)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!("saving task evidence failed: {err:#}"),
            Err(err) => tracing::warn!("saving task evidence failed: {err}"),
        }
    }
}

/// Applies one round of reports to the records; true when what is persisted changed.
fn apply(records: &mut BTreeMap<Key, Record>, rounds: &[(&str, Option<&TaskReport>)], now_ns: i64) -> bool {
    let mut changed = false;
    let mut reported: HashSet<Key> = HashSet::new();
    for (provider, report) in rounds {
        let Some(report) = report else { continue };
        // One state per task: running beats unknown beats exited (an old stopped container
        // beside a restarted one); among exited ones, the latest exit counts.
        let mut states: HashMap<Key, (TaskState, i64)> = HashMap::new();
        for sample in report.tasks.iter() {
            let key = (sample.alloc_id.to_string(), sample.task.to_string(), provider.to_string());
            let rank = |s: TaskState| match s {
                TaskState::RUNNING => 2,
                TaskState::EXITED => 0,
                _ => 1,
            };
            // (an exit time of 0 is unknown: as late as can be)
            let latest = |at: i64| if at > 0 { at } else { i64::MAX };
            let entry = states.entry(key).or_insert((sample.state, sample.finished_at));
            if rank(sample.state) > rank(entry.0)
                || (sample.state == entry.0 && latest(sample.finished_at) > latest(entry.1))
            {
                *entry = (sample.state, sample.finished_at);
            }
        }
        for (key, (state, finished_at)) in states {
            let record = records.entry(key.clone()).or_default();
            let before = (record.seen_running, record.exited_since);
            let was = std::mem::replace(&mut record.state, state);
            match state {
                TaskState::RUNNING => {
                    record.seen_running = true;
                    record.exited_since = None;
                }
                TaskState::EXITED => {
                    let reported = (finished_at > 0).then(|| finished_at.min(now_ns));
                    record.exited_since = Some(exit_clock(record.exited_since, was, reported, now_ns));
                }
                _ => {}
            }
            changed |= before != (record.seen_running, record.exited_since);
            reported.insert(key);
        }
    }
    let complete: HashSet<&str> =
        rounds.iter().filter(|(_, r)| r.is_some_and(|r| r.complete)).map(|(provider, _)| *provider).collect();
    for (key, record) in records.iter_mut().filter(|(key, _)| !reported.contains(*key)) {
        if complete.contains(key.2.as_str()) {
            // Seen before, gone from a complete view: it has ended.
            let was = std::mem::replace(&mut record.state, TaskState::EXITED);
            let since = exit_clock(record.exited_since, was, None, now_ns);
            changed |= record.exited_since != Some(since);
            record.exited_since = Some(since);
        } else {
            record.state = TaskState::UNKNOWN;
        }
    }
    changed
}

/// Since when a task reported exited now (`was`: its state in the previous round) has been
/// proven exited. An exit proven without a break keeps its time, unless the provider reports a
/// later one (a container that ran again between two rounds). After a running round, or a spell
/// of not knowing (a failed provider, the agent down: the task may have run and exited again
/// meanwhile), the clock restarts at this report's exit time, or now when it gives none.
fn exit_clock(since: Option<i64>, was: TaskState, reported: Option<i64>, now_ns: i64) -> i64 {
    match (since, reported) {
        (Some(since), reported) if was == TaskState::EXITED => reported.map_or(since, |at| since.max(at)),
        (Some(since), reported) => since.max(reported.unwrap_or(now_ns)),
        (None, reported) => reported.unwrap_or(now_ns),
    }
}

/// What goes into the file: tasks ever seen running or proven exited.
fn persisted(records: &BTreeMap<Key, Record>) -> Vec<Saved> {
    records
        .iter()
        .filter(|(_, r)| r.seen_running || r.exited_since.is_some())
        .map(|((alloc_id, task, provider), record)| Saved {
            alloc_id: alloc_id.clone(),
            task: task.clone(),
            provider: provider.clone(),
            record: Record { state: TaskState::UNKNOWN, ..record.clone() },
        })
        .collect()
}

/// Writes `saved` to a temporary file beside `file`, fsyncs it, and renames it over `file`.
fn write_atomically(file: &Path, saved: &[Saved]) -> anyhow::Result<()> {
    let dir = file.parent().expect("the evidence file has a directory");
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut temp, saved)?;
    temp.write_all(b"\n")?;
    temp.as_file().sync_all()?;
    temp.persist(file)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocd_plugin_abi::TaskSample;

    const A: &str = "5fb2d3a4-0b9e-4f0a-8f8e-2a1c3d4e5f60";
    const SEC: i64 = 1_000_000_000;
    const GRACE: Duration = Duration::from_secs(60);

    fn sample(task: &str, state: TaskState) -> TaskSample {
        TaskSample { alloc_id: A.into(), task: task.into(), state, ..TaskSample::default() }
    }

    fn report(complete: bool, tasks: Vec<TaskSample>) -> TaskReport {
        TaskReport { tasks: tasks.into(), complete }
    }

    fn tasks(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[tokio::test]
    async fn never_seen_is_unknown_and_running_is_live() {
        let evidence = Evidence::in_memory();
        assert!(matches!(evidence.verdict(A, &tasks(&["web"]), GRACE, 0), Verdict::Unknown(_)));
        evidence.observe(&[("cgroup", Some(&report(true, vec![sample("web", TaskState::RUNNING)])))], 0).await;
        assert!(matches!(evidence.verdict(A, &tasks(&["web"]), GRACE, 0), Verdict::Live(_)));
    }

    #[tokio::test]
    async fn gone_from_a_complete_view_exits_after_the_grace() {
        let evidence = Evidence::in_memory();
        evidence.observe(&[("cgroup", Some(&report(true, vec![sample("web", TaskState::RUNNING)])))], 0).await;
        evidence.observe(&[("cgroup", Some(&report(true, vec![])))], 10 * SEC).await;
        assert_eq!(evidence.state(A, "web", "cgroup"), TaskState::EXITED);
        assert!(matches!(evidence.verdict(A, &tasks(&["web"]), GRACE, 69 * SEC), Verdict::Live(_)));
        assert_eq!(evidence.verdict(A, &tasks(&["web"]), GRACE, 70 * SEC), Verdict::Terminal);
    }

    #[tokio::test]
    async fn a_partial_or_failed_report_proves_nothing() {
        let evidence = Evidence::in_memory();
        evidence.observe(&[("docker", Some(&report(true, vec![sample("web", TaskState::RUNNING)])))], 0).await;
        evidence.observe(&[("docker", Some(&report(false, vec![])))], SEC).await;
        assert_eq!(evidence.state(A, "web", "docker"), TaskState::UNKNOWN);
        evidence.observe(&[("docker", None)], 100 * SEC).await;
        assert!(matches!(evidence.verdict(A, &tasks(&["web"]), GRACE, 1000 * SEC), Verdict::Unknown(_)));
        // A provider missing from the round altogether (unloaded) proves nothing either.
        evidence.observe(&[], 200 * SEC).await;
        assert_eq!(evidence.state(A, "web", "docker"), TaskState::UNKNOWN);
    }

    #[tokio::test]
    async fn a_restart_within_the_grace_keeps_it_live() {
        let evidence = Evidence::in_memory();
        let round = |state| report(true, vec![sample("web", state)]);
        evidence.observe(&[("docker", Some(&round(TaskState::RUNNING)))], 0).await;
        evidence.observe(&[("docker", Some(&round(TaskState::EXITED)))], SEC).await;
        evidence.observe(&[("docker", Some(&round(TaskState::RUNNING)))], 30 * SEC).await;
        evidence.observe(&[("docker", Some(&round(TaskState::EXITED)))], 40 * SEC).await;
        assert!(matches!(evidence.verdict(A, &tasks(&["web"]), GRACE, 90 * SEC), Verdict::Live(_)));
        assert_eq!(evidence.verdict(A, &tasks(&["web"]), GRACE, 100 * SEC), Verdict::Terminal);
    }

    #[tokio::test]
    async fn a_spell_of_not_knowing_restarts_the_exit_clock() {
        let evidence = Evidence::in_memory();
        evidence.observe(&[("cgroup", Some(&report(true, vec![sample("web", TaskState::RUNNING)])))], 0).await;
        evidence.observe(&[("cgroup", Some(&report(true, vec![])))], 10 * SEC).await;
        // The provider fails for two minutes: the task may have been restarted and exited again.
        evidence.observe(&[("cgroup", None)], 20 * SEC).await;
        evidence.observe(&[("cgroup", Some(&report(true, vec![])))], 140 * SEC).await;
        assert!(matches!(evidence.verdict(A, &tasks(&["web"]), GRACE, 150 * SEC), Verdict::Live(_)));
        assert!(matches!(evidence.verdict(A, &tasks(&["web"]), GRACE, 199 * SEC), Verdict::Live(_)));
        assert_eq!(evidence.verdict(A, &tasks(&["web"]), GRACE, 200 * SEC), Verdict::Terminal);
    }

    #[tokio::test]
    async fn a_later_reported_exit_moves_the_clock() {
        let evidence = Evidence::in_memory();
        let exited = |at| TaskSample { finished_at: at, ..sample("web", TaskState::EXITED) };
        evidence.observe(&[("docker", Some(&report(true, vec![sample("web", TaskState::RUNNING)])))], 0).await;
        evidence.observe(&[("docker", Some(&report(true, vec![exited(SEC)])))], 2 * SEC).await;
        // It ran again between two rounds and exited at 50 s; the old container is listed too.
        let both = report(true, vec![exited(SEC), exited(50 * SEC)]);
        evidence.observe(&[("docker", Some(&both))], 55 * SEC).await;
        assert!(matches!(evidence.verdict(A, &tasks(&["web"]), GRACE, 70 * SEC), Verdict::Live(_)));
        assert_eq!(evidence.verdict(A, &tasks(&["web"]), GRACE, 110 * SEC), Verdict::Terminal);
        // An exit whose time the provider does not know (0) counts as the latest: now.
        let unknown_time = report(true, vec![exited(60 * SEC), exited(0)]);
        evidence.observe(&[("other", Some(&report(true, vec![sample("web", TaskState::RUNNING)])))], 56 * SEC).await;
        evidence.observe(&[("other", Some(&unknown_time))], 65 * SEC).await;
        let other = evidence.tasks_of(A).into_iter().find(|t| t.provider == "other").unwrap();
        assert_eq!(other.exited_since, Some(65 * SEC));
        // An exit the provider reports as older than the clock does not move it back.
        evidence.observe(&[("docker", Some(&report(true, vec![exited(SEC)])))], 111 * SEC).await;
        assert_eq!(evidence.tasks_of(A)[0].exited_since, Some(50 * SEC));
    }

    #[tokio::test]
    async fn an_exit_proven_before_a_restart_of_the_agent_is_proven_again() {
        let dir = tempfile::tempdir().unwrap();
        let evidence = Evidence::load(dir.path()).unwrap();
        evidence.observe(&[("cgroup", Some(&report(true, vec![sample("web", TaskState::RUNNING)])))], 0).await;
        evidence.observe(&[("cgroup", Some(&report(true, vec![])))], 10 * SEC).await;
        drop(evidence);
        // Down for two minutes, meanwhile restarted and exited again: the grace starts anew.
        let restarted = Evidence::load(dir.path()).unwrap();
        restarted.observe(&[("cgroup", Some(&report(true, vec![])))], 130 * SEC).await;
        assert!(matches!(restarted.verdict(A, &tasks(&["web"]), GRACE, 140 * SEC), Verdict::Live(_)));
        assert_eq!(restarted.verdict(A, &tasks(&["web"]), GRACE, 190 * SEC), Verdict::Terminal);
    }

    #[tokio::test]
    async fn every_task_must_be_proven() {
        let evidence = Evidence::in_memory();
        let both = report(true, vec![sample("web", TaskState::RUNNING), sample("db", TaskState::UNKNOWN)]);
        evidence.observe(&[("docker", Some(&both))], 0).await;
        evidence.observe(&[("docker", Some(&report(true, vec![sample("db", TaskState::UNKNOWN)])))], SEC).await;
        assert!(matches!(evidence.verdict(A, &[], Duration::ZERO, 2 * SEC), Verdict::Unknown(_)), "db is unknown");
        evidence.observe(&[("docker", Some(&report(true, vec![])))], 3 * SEC).await;
        assert_eq!(evidence.verdict(A, &[], Duration::ZERO, 3 * SEC), Verdict::Terminal);
        // A task directory no provider ever saw (a raw_exec task) keeps it unknown.
        assert!(matches!(evidence.verdict(A, &tasks(&["web", "raw"]), Duration::ZERO, 4 * SEC), Verdict::Unknown(_)));
        // Never seen running at all: a pending allocation is not terminal.
        let pending = Evidence::in_memory();
        pending.observe(&[("docker", Some(&report(true, vec![sample("web", TaskState::EXITED)])))], 0).await;
        assert!(matches!(pending.verdict(A, &[], Duration::ZERO, SEC), Verdict::Unknown(_)));
    }

    #[tokio::test]
    async fn running_beats_a_stale_stopped_container() {
        let evidence = Evidence::in_memory();
        let two = report(true, vec![sample("web", TaskState::EXITED), sample("web", TaskState::RUNNING)]);
        evidence.observe(&[("docker", Some(&two))], 0).await;
        assert_eq!(evidence.state(A, "web", "docker"), TaskState::RUNNING);
    }

    #[tokio::test]
    async fn evidence_survives_a_restart_but_starts_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let evidence = Evidence::load(dir.path()).unwrap();
        evidence.observe(&[("cgroup", Some(&report(true, vec![sample("web", TaskState::RUNNING)])))], 0).await;
        drop(evidence);
        let text = std::fs::read_to_string(dir.path().join("client/task-evidence.json")).unwrap();
        assert!(text.contains("\"seen_running\": true"), "{text}");

        let restarted = Evidence::load(dir.path()).unwrap();
        assert_eq!(restarted.state(A, "web", "cgroup"), TaskState::UNKNOWN, "nothing is proven by a file");
        assert!(matches!(restarted.verdict(A, &[], Duration::ZERO, SEC), Verdict::Unknown(_)));
        // The task ended while the agent was down: the first complete report proves it.
        restarted.observe(&[("cgroup", Some(&report(true, vec![])))], 5 * SEC).await;
        assert_eq!(restarted.verdict(A, &[], Duration::ZERO, 5 * SEC), Verdict::Terminal);
        restarted.forget(A).await;
        let text = std::fs::read_to_string(dir.path().join("client/task-evidence.json")).unwrap();
        assert_eq!(text.trim(), "[]");
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("client")).unwrap();
        std::fs::write(dir.path().join("client/task-evidence.json"), "{").unwrap();
        let err = Evidence::load(dir.path()).err().expect("refused").to_string();
        assert!(err.contains("task-evidence.json"), "{err}");
    }
}
