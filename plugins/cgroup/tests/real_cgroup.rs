//! Tests against the machine's real cgroup hierarchy (needs root and cgroup v1 controllers,
//! as on this project's build machine, which runs hybrid v1 + unified).
//!
//! * `busy_task_in_real_cgroups`: creates Nomad-style task cgroups
//!   (`<controller>/nomad/<uuid>.busy` in memory, cpuacct, cpu, freezer; and
//!   `unified/nomad.slice/share.slice/<uuid>.busy.scope` when a cgroup2 hierarchy is mounted
//!   there), moves a busy shell into them, samples twice ~500 ms apart through the plugin —
//!   natively for v1, through the exported ABI root module for v2 — and checks the figures.
//! * `five_hundred_real_task_cgroups`: the sampling cost of 500 real v1 task cgroups.
//!
//! Both skip (printing why) where the real root cannot be written. Everything created is
//! removed by a guard, also when an assertion fails: the child is killed and reaped first,
//! then the directories are removed deepest first.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use abi_stable::std_types::{RStr, RString};
use allocd_plugin_cgroup::CgroupMetrics;
use allocd_plugin_sdk::{HostContext, LogLevel, TaskSample, TaskState};
use allocd_plugin_sdk::{MetricsPlugin, PluginConfig};

const ROOT: &str = "/sys/fs/cgroup";
const V1_CONTROLLERS: [&str; 4] = ["memory", "cpuacct", "cpu", "freezer"];

/// The two tests share `<controller>/nomad`; run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

extern "C" fn host_log(level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
    eprintln!("[plugin log {level:?} {target}] {message}");
}

fn host() -> HostContext {
    HostContext { log: host_log, data_dir: RString::from("/tmp"), alloc_dir: RString::from("/tmp") }
}

fn plugin(json: &str) -> CgroupMetrics {
    CgroupMetrics::new(&PluginConfig { json: json.into(), host: host() }).expect("plugin constructs")
}

/// A fresh allocation UUID (v4-shaped) from the clock and pid.
fn uuid(salt: u64) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let a = nanos ^ (u64::from(std::process::id()) << 32) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let b = a.rotate_left(29).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 52) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

/// Removes what a test created, even on panic.
#[derive(Default)]
struct Cleanup {
    child: Option<Child>,
    /// Created directories, parents first.
    dirs: Vec<PathBuf>,
}

impl Cleanup {
    /// Creates `dir` if absent and remembers to remove it. `Err` only for a permission-like
    /// failure (the caller skips); other failures panic.
    fn mkdir(&mut self, dir: &Path) -> Result<(), String> {
        match fs::create_dir(dir) {
            Ok(()) => {
                self.dirs.push(dir.to_path_buf());
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem) => {
                Err(format!("cannot create {}: {e}", dir.display()))
            }
            Err(e) => panic!("cannot create {}: {e}", dir.display()),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in self.dirs.iter().rev() {
            // A cgroup is removable once its last process is reaped; allow a moment.
            for attempt in 0..100 {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    // A shared `nomad` parent still in use by someone else stays.
                    Err(e)
                        if dir.file_name().is_some_and(|n| n == "nomad" || n.to_string_lossy().ends_with(".slice"))
                            && attempt > 5 =>
                    {
                        eprintln!("left {} in place: {e}", dir.display());
                        break;
                    }
                    Err(e) if attempt == 99 => eprintln!("could not remove {}: {e}", dir.display()),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

/// Why the real root cannot be used, if it cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    if !Path::new(ROOT).join("memory").is_dir() {
        return Some(format!("no cgroup v1 memory controller at {ROOT}/memory"));
    }
    None
}

fn find<'a>(samples: &'a [TaskSample], alloc: &str) -> &'a TaskSample {
    samples.iter().find(|s| s.alloc_id.as_str() == alloc).unwrap_or_else(|| panic!("task of {alloc} not sampled"))
}

/// A printed skip on a developer's machine; a failure when `CI` is set.
fn skip_unless_ci(test: &str, reason: &dyn std::fmt::Display) {
    assert!(std::env::var_os("CI").is_none(), "{test}: {reason} (CI is set: real cgroups must be there)");
    println!("SKIPPED {test}: {reason}");
}

fn measured(list: &abi_stable::std_types::RVec<RString>) -> Vec<&str> {
    list.iter().map(|s| s.as_str()).collect()
}

#[test]
fn busy_task_in_real_cgroups() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = skip_reason() {
        return skip_unless_ci("busy_task_in_real_cgroups", &why);
    }
    let alloc = uuid(1);
    let name = format!("{alloc}.busy");
    let mut guard = Cleanup::default();

    // v1: <controller>/nomad/<alloc>.busy
    let mut procs_files = Vec::new();
    for controller in V1_CONTROLLERS {
        let base = Path::new(ROOT).join(controller);
        if !base.is_dir() {
            continue;
        }
        let dirs = [base.join("nomad"), base.join("nomad").join(&name)];
        for dir in &dirs {
            if let Err(why) = guard.mkdir(dir) {
                return skip_unless_ci("busy_task_in_real_cgroups", &why);
            }
        }
        procs_files.push(dirs[1].join("cgroup.procs"));
    }
    // v2 beside it when the hybrid unified hierarchy is mounted.
    let unified = Path::new(ROOT).join("unified");
    let v2 = unified.join("cgroup.controllers").exists();
    if v2 {
        let slice = unified.join("nomad.slice");
        for dir in [slice.clone(), slice.join("share.slice"), slice.join(format!("share.slice/{name}.scope"))] {
            guard.mkdir(&dir).expect("unified hierarchy writable");
        }
        procs_files.push(slice.join(format!("share.slice/{name}.scope/cgroup.procs")));
    }

    // The child waits on stdin until it is in the cgroups, then execs a fresh shell (so its
    // memory is charged to the new memory cgroup), builds a 4 MB string and spins.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"read go; exec sh -c 'x=$(head -c 4000000 /dev/zero | tr "\0" a); while :; do :; done'"#)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    guard.child = Some(child);
    for file in &procs_files {
        fs::write(file, format!("{pid}\n")).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    }
    stdin.write_all(b"go\n").expect("release the child");
    drop(stdin);
    std::thread::sleep(Duration::from_millis(400));

    let v1_plugin = plugin("{}");
    let v2_module = v2.then(allocd_plugin_cgroup::allocd_plugin_root);
    let v2_plugin = v2_module.map(|module| {
        let config = format!(r#"{{"root":"{}"}}"#, unified.display());
        let new_metrics = module.new_metrics();
        new_metrics(RStr::from(config.as_str()), host()).unwrap().unwrap()
    });

    let first = v1_plugin.sample_tasks().unwrap().tasks;
    let first_v2 = v2_plugin.as_ref().map(|p| p.sample_tasks().unwrap().tasks);
    std::thread::sleep(Duration::from_millis(500));
    let second = v1_plugin.sample_tasks().unwrap().tasks;
    let second_v2 = v2_plugin.as_ref().map(|p| p.sample_tasks().unwrap().tasks);

    // --- v1 ---
    let s1 = find(&first, &alloc);
    assert_eq!(s1.task.as_str(), "busy");
    assert_eq!(s1.usage.cpu.percent, 0.0, "first sample of a tracker is 0.0");
    let s = find(&second, &alloc);
    println!("v1 sample: {s:#?}");
    assert_eq!(s.state, TaskState::RUNNING);
    assert!(s.timestamp > s1.timestamp);
    let (m, c) = (&s.usage.memory, &s.usage.cpu);
    assert!(m.usage > 0, "Usage {}", m.usage);
    assert!(m.rss > 0, "RSS {}", m.rss);
    assert!(m.max_usage >= m.usage);
    assert_eq!(m.mapped_file, 0);
    assert_eq!(
        measured(&m.measured),
        ["RSS", "Cache", "Swap", "Usage", "Max Usage", "Kernel Usage", "Kernel Max Usage"]
    );
    assert!(c.percent > 0.0, "Percent {}", c.percent);
    assert!(c.percent < 250.0, "at most two cores busy: {}", c.percent);
    assert!(c.total_ticks > 0.0);
    assert_eq!(measured(&c.measured), ["System Mode", "User Mode", "Throttled Periods", "Throttled Time", "Percent"]);
    let pids = s.pids.as_ref().expect("Pids is a list");
    let me = pids.iter().find(|p| p.pid == pid).unwrap_or_else(|| panic!("child {pid} not in {pids:?}"));
    assert!(me.usage.memory.rss > 0);
    assert_eq!(measured(&me.usage.memory.measured), ["RSS", "Swap"]);
    assert_eq!(measured(&me.usage.cpu.measured), ["System Mode", "User Mode", "Percent"]);

    // --- v2 (hybrid's unified hierarchy, no controllers: CPU only) through the ABI ---
    if let (Some(first_v2), Some(second_v2)) = (first_v2, second_v2) {
        assert_eq!(find(&first_v2, &alloc).usage.cpu.percent, 0.0);
        let s = find(&second_v2, &alloc);
        println!("v2 sample: {s:#?}");
        assert_eq!(s.state, TaskState::RUNNING);
        assert!(s.usage.cpu.percent > 0.0, "Percent {}", s.usage.cpu.percent);
        assert_eq!(measured(&s.usage.memory.measured), ["RSS", "Cache", "Swap", "Usage"]);
        assert!(s.pids.as_ref().unwrap().iter().any(|p| p.pid == pid));
    } else {
        println!("no cgroup2 hierarchy at {}: v2 part not run", unified.display());
    }

    // The child is killed: the task stays visible (its cgroup exists) but is not running.
    if let Some(mut child) = guard.child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let after = v1_plugin.sample_tasks().unwrap().tasks;
    let s = find(&after, &alloc);
    assert_eq!(s.state, TaskState::EXITED, "{:?}", s.pids);
    if let Some(p) = &v2_plugin {
        assert_eq!(find(&p.sample_tasks().unwrap().tasks, &alloc).state, TaskState::EXITED);
    }

    // Nomad restarts the task: its cgroups are removed and created again under the same name.
    // Descriptors the plugin kept now point at removed cgroups; it must reopen, not report
    // the old figures nor drop the task.
    let task_dirs: Vec<PathBuf> = guard.dirs.iter().filter(|d| d.ends_with(&name)).cloned().collect();
    assert!(!task_dirs.is_empty());
    for dir in &task_dirs {
        fs::remove_dir(dir).unwrap_or_else(|e| panic!("rmdir {}: {e}", dir.display()));
    }
    for dir in &task_dirs {
        fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    let restarted = v1_plugin.sample_tasks().unwrap().tasks;
    let s = find(&restarted, &alloc);
    assert_eq!(s.state, TaskState::EXITED);
    assert!(
        s.usage.memory.usage < find(&second, &alloc).usage.memory.usage,
        "fresh cgroup, fresh figures: {:?}",
        s.usage.memory
    );
    assert_eq!(s.usage.cpu.percent, 0.0, "counters went back to ~0");
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[test]
fn five_hundred_real_task_cgroups() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = skip_reason() {
        return skip_unless_ci("five_hundred_real_task_cgroups", &why);
    }
    let mut guard = Cleanup::default();
    let controllers: Vec<PathBuf> =
        V1_CONTROLLERS.iter().map(|c| Path::new(ROOT).join(c)).filter(|p| p.is_dir()).collect();
    for base in &controllers {
        if let Err(why) = guard.mkdir(&base.join("nomad")) {
            return skip_unless_ci("five_hundred_real_task_cgroups", &why);
        }
    }
    let allocs: Vec<String> = (0..500).map(|i| uuid(1000 + i)).collect();
    for alloc in &allocs {
        for base in &controllers {
            guard.mkdir(&base.join("nomad").join(format!("{alloc}.web"))).expect("mkdir task cgroup");
        }
    }
    let plugin = plugin("{}");
    let count =
        |samples: &[TaskSample]| samples.iter().filter(|s| allocs.iter().any(|a| a == s.alloc_id.as_str())).count();
    assert_eq!(count(&plugin.sample_tasks().unwrap().tasks), 500);
    let rounds = 10u32;
    let (wall, cpu) = (Instant::now(), thread_cpu());
    for _ in 0..rounds {
        assert_eq!(count(&plugin.sample_tasks().unwrap().tasks), 500);
    }
    let (wall, cpu) = (wall.elapsed() / rounds, (thread_cpu() - cpu) / rounds);
    println!(
        "500 real v1 task cgroups ({} build): {wall:?} wall, {cpu:?} CPU per sample = {:.2}% of one core at a 1 s interval",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        cpu.as_secs_f64() * 100.0
    );
    assert!(cpu < Duration::from_millis(if cfg!(debug_assertions) { 500 } else { 50 }), "{cpu:?}");
}
