//! `-dev` mode: a throw-away data dir holding two sample allocations in Nomad's layout, each
//! with a real task process that allocd starts and watches:
//!
//! * a *live* one, whose task `demo` (a shell loop) appends a line to
//!   `alloc/logs/demo.stdout.0` every second for as long as the agent runs, so GC refuses it;
//! * a *finished* one, whose task `setup` writes its log, runs for two seconds and exits, so
//!   GC collects it (`-dev` sets `gc_exit_grace` to zero).
//!
//! Their state reaches the GC evidence as the `dev` [`TaskSource`]: running while the process
//! lives, exited (with its exit time) once it has been reaped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use allocd_plugin_abi::{TaskReport, TaskSample, TaskState};
use anyhow::Context;

use crate::gc::now_ns;
use crate::stats::sampler::TaskSource;

/// Task name of the live sample allocation.
pub const TASK: &str = "demo";
/// Task name of the finished sample allocation.
pub const FINISHED_TASK: &str = "setup";

/// One task process of a sample allocation.
struct DevTask {
    alloc_id: String,
    task: &'static str,
    child: Child,
    /// Unix ns when the process was seen to have exited.
    finished_at: Option<i64>,
}

/// The sample allocations' task processes.
pub struct DevTasks {
    tasks: Mutex<Vec<DevTask>>,
}

/// What `-dev` created: the two allocation IDs and their tasks.
pub struct Samples {
    pub live: String,
    pub finished: String,
    pub tasks: DevTasks,
}

/// Creates both sample allocations under `alloc_dir` and starts their tasks.
pub fn create_samples(alloc_dir: &Path) -> anyhow::Result<Samples> {
    let live = create_alloc(alloc_dir, TASK)?;
    std::fs::write(alloc_dir.join(&live).join("demo/local/config.json"), "{\"greeting\": \"hello from allocd\"}\n")?;
    std::fs::write(alloc_dir.join(&live).join("demo/secrets/token"), "not for your eyes\n")?;
    // The loop ends by itself within a second of the agent going away.
    let demo = format!(
        "n=0; while kill -0 {agent} 2>/dev/null; do n=$((n+1)); echo \"demo line $n\"; sleep 1; done",
        agent = std::process::id()
    );
    let demo = spawn(alloc_dir, &live, TASK, &demo)?;
    let finished = create_alloc(alloc_dir, FINISHED_TASK)?;
    let setup = spawn(alloc_dir, &finished, FINISHED_TASK, "echo 'setting up'; sleep 2; echo 'setup finished'")?;
    let tasks = DevTasks { tasks: Mutex::new(vec![demo, setup]) };
    Ok(Samples { live, finished, tasks })
}

/// A new allocation directory with one task; returns its ID.
fn create_alloc(alloc_dir: &Path, task: &str) -> anyhow::Result<String> {
    let alloc_id = uuid::Uuid::new_v4().to_string();
    let root = alloc_dir.join(&alloc_id);
    for dir in ["alloc/data", "alloc/logs", "alloc/tmp", "local", "secrets", "tmp", "private"] {
        let dir = if dir.starts_with("alloc/") { root.join(dir) } else { root.join(task).join(dir) };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(root.join(format!("alloc/logs/{task}.stderr.0")), "")?;
    Ok(alloc_id)
}

/// Starts `script` under `sh` with its stdout appended to the task's log.
fn spawn(alloc_dir: &Path, alloc_id: &str, task: &'static str, script: &str) -> anyhow::Result<DevTask> {
    let log = alloc_dir.join(alloc_id).join(format!("alloc/logs/{task}.stdout.0"));
    let stdout = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(alloc_dir.join(alloc_id).join(task))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting the sample task {task:?} (sh)"))?;
    Ok(DevTask { alloc_id: alloc_id.to_string(), task, child, finished_at: None })
}

impl TaskSource for DevTasks {
    fn name(&self) -> &str {
        "dev"
    }

    /// Every sample task, running until its process has been reaped. Complete: allocd knows
    /// every process it started.
    fn report(&self) -> TaskReport {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let samples = tasks
            .iter_mut()
            .map(|task| {
                if task.finished_at.is_none() && !matches!(task.child.try_wait(), Ok(None)) {
                    task.finished_at = Some(now_ns());
                }
                let state = if task.finished_at.is_some() { TaskState::EXITED } else { TaskState::RUNNING };
                TaskSample {
                    alloc_id: task.alloc_id.as_str().into(),
                    task: task.task.into(),
                    state,
                    finished_at: task.finished_at.unwrap_or(0),
                    timestamp: now_ns(),
                    ..TaskSample::default()
                }
            })
            .collect();
        TaskReport::complete(samples)
    }
}

impl Drop for DevTasks {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(|e| e.into_inner()) {
            let _ = task.child.kill();
            let _ = task.child.wait();
        }
    }
}

/// The startup message: the allocation IDs and commands to try.
pub fn banner(addr: &str, live: &str, finished: &str) -> String {
    format!(
        "\n==> allocd dev agent: http://{addr}\n    \
         live allocation:     {live} (task \"{TASK}\", writes a line every second)\n    \
         finished allocation: {finished} (task \"{FINISHED_TASK}\" exits 2 s after start)\n\n    Try:\n      \
         curl -s http://{addr}/v1/client/stats?pretty\n      \
         curl -s 'http://{addr}/v1/client/fs/ls/{live}?path=/alloc/logs&pretty'\n      \
         curl -s 'http://{addr}/v1/client/fs/stat/{live}?path=/demo/local/config.json&pretty'\n      \
         curl -s 'http://{addr}/v1/client/fs/cat/{live}?path=/alloc/logs/demo.stdout.0'\n      \
         curl -s 'http://{addr}/v1/client/fs/logs/{live}?task=demo&type=stdout&plain=true&follow=true'\n      \
         curl -s 'http://{addr}/v1/client/fs/readat/{live}?path=/alloc/logs/demo.stdout.0&offset=0&limit=12'\n      \
         curl -s -w '%{{http_code}}\\n' http://{addr}/v1/client/allocation/{live}/gc       # 500: still running\n      \
         curl -s -w '%{{http_code}}\\n' http://{addr}/v1/client/allocation/{finished}/gc   # 200: collected\n"
    )
}
