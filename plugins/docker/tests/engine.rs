//! Against the real Docker Engine: a Nomad-shaped task container is sampled, its pause container
//! is not.
//!
//! No registry is reachable, so the test builds its image locally: a rootfs holding a static
//! busybox (`bin/busybox` plus `sh` and `sleep` links) is packed with `tar` and loaded with
//! `docker import` as `allocd-test-busybox:latest`. It then runs, with the alloc label Nomad sets:
//! * `web-<uuid>`: a shell busy loop limited to half a core (`--cpus 0.5`, so throttling moves);
//! * `nomad_init_<uuid>`: a pause container running `sleep 3600`, which must be excluded.
//!
//! Needs the `docker` CLI with a running daemon, `tar`, and a statically linked `busybox` (Debian:
//! `apt-get install -y busybox-static`). When one is missing the test prints why and passes
//! without running. Containers are removed by a guard, also when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use allocd_plugin_docker::DockerMetrics;
use allocd_plugin_sdk::abi_stable::std_types::RStr;
use allocd_plugin_sdk::{HostContext, LogLevel, TaskReport, TaskSample, TaskState};
use allocd_plugin_sdk::{MetricsPlugin, PluginConfig};

const IMAGE: &str = "allocd-test-busybox:latest";
const ALLOC_LABEL: &str = "com.hashicorp.nomad.alloc_id";
const DEADLINE: Duration = Duration::from_secs(20);

extern "C" fn no_log(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

fn plugin(json: &str) -> DockerMetrics {
    let host = HostContext { log: no_log, data_dir: "".into(), alloc_dir: "".into() };
    DockerMetrics::new(&PluginConfig { json: json.to_string(), host }).expect("plugin starts")
}

/// Runs a command; `Err` carries its stderr (or the spawn error).
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A statically linked busybox (a dynamic one would not start in an empty rootfs).
fn static_busybox() -> Result<PathBuf, String> {
    let path = ["/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("no busybox binary (apt-get install -y busybox-static)")?;
    let elf = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if has_interpreter(&elf) {
        return Err(format!("{} is dynamically linked (apt-get install -y busybox-static)", path.display()));
    }
    Ok(path)
}

/// Whether a 64-bit little-endian ELF has a PT_INTERP program header (is dynamically linked).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |at: usize| elf.get(at..at + 2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |at: usize| elf.get(at..at + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()) as usize);
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false; // not what we can inspect; let docker tell
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| elf.get(phoff + i * phentsize..phoff + i * phentsize + 4) == Some(&3u32.to_le_bytes()[..]))
}

/// Builds `allocd-test-busybox:latest` from the host's busybox, unless it exists already.
fn build_image(busybox: &Path) -> Result<(), String> {
    if run("docker", &["image", "inspect", "--format", "{{.Id}}", IMAGE]).is_ok() {
        return Ok(());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rootfs = dir.path().join("rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    std::fs::copy(busybox, bin.join("busybox")).map_err(|e| e.to_string())?;
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).map_err(|e| e.to_string())?;
    }
    let tarball = dir.path().join("rootfs.tar");
    run("tar", &["-C", rootfs.to_str().unwrap(), "-cf", tarball.to_str().unwrap(), "."])?;
    run("docker", &["import", tarball.to_str().unwrap(), IMAGE])?;
    Ok(())
}

/// Why the engine test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if let Err(e) = run("docker", &["version", "--format", "{{.Server.Version}}"]) {
        return Some(format!("no usable docker daemon: {e}"));
    }
    if let Err(e) = run("tar", &["--version"]) {
        return Some(format!("no tar: {e}"));
    }
    static_busybox().err()
}

/// Removes the named containers when dropped.
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        let mut args = vec!["rm", "-f"];
        args.extend(self.0.iter().map(String::as_str));
        let _ = run("docker", &args);
    }
}

fn uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid").expect("kernel uuid").trim().to_string()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn names(
    list: &allocd_plugin_sdk::abi_stable::std_types::RVec<allocd_plugin_sdk::abi_stable::std_types::RString>,
) -> Vec<&str> {
    list.iter().map(|s| s.as_str()).collect()
}

#[test]
fn samples_a_task_container_and_skips_its_pause_container() {
    if let Some(reason) = unavailable() {
        let test = "samples_a_task_container_and_skips_its_pause_container";
        assert!(std::env::var_os("CI").is_none(), "{test}: {reason} (CI is set: the Docker Engine must be there)");
        println!("SKIPPED {test}: {reason}");
        return;
    }
    build_image(&static_busybox().unwrap()).expect("image builds");

    let alloc = uuid();
    let task = format!("web-{alloc}");
    let pause = format!("nomad_init_{alloc}");
    let _cleanup = Containers(vec![task.clone(), pause.clone()]);
    let label = format!("{ALLOC_LABEL}={alloc}");
    let common = ["run", "-d", "--network", "none", "--label", &label];
    let task_args =
        [&common[..], &["--cpus", "0.5", "--name", &task, IMAGE, "sh", "-c", "while :; do :; done"]].concat();
    run("docker", &task_args).expect("task container starts");
    run("docker", &[&common[..], &["--name", &pause, IMAGE, "sleep", "3600"]].concat())
        .expect("pause container starts");

    let plugin = plugin(r#"{"stats_interval":"500ms"}"#);
    let started = Instant::now();
    // Before the first listing the report is partial (no evidence); after it, complete.
    let mine = |report: TaskReport| -> Vec<TaskSample> {
        if !report.complete {
            assert!(report.tasks.is_empty(), "a partial report before the first listing");
            return Vec::new();
        }
        report.tasks.into_iter().filter(|s| s.alloc_id.as_str() == alloc).collect()
    };
    let sample = loop {
        let samples = mine(plugin.sample_tasks().expect("sample_tasks"));
        assert!(samples.iter().all(|s| s.task.as_str() == "web"), "only the task container is sampled: {samples:#?}");
        if let Some(s) = samples.first() {
            let (m, c) = (&s.usage.memory, &s.usage.cpu);
            if m.usage > 0 && m.rss > 0 && c.percent > 0.0 {
                break s.clone();
            }
        }
        assert!(started.elapsed() < DEADLINE, "no complete sample of {task} within {DEADLINE:?}: {samples:#?}");
        std::thread::sleep(Duration::from_millis(250));
    };
    println!("sampled after {:?}: {sample:#?}", started.elapsed());

    assert_eq!(sample.alloc_id.as_str(), alloc);
    assert_eq!(sample.state, TaskState::RUNNING);
    assert_eq!(sample.pids, None.into(), "Docker reports no per-process data");
    assert!(
        (sample.timestamp - now_ns()).abs() < 60_000_000_000,
        "timestamp {} is the daemon's read time",
        sample.timestamp
    );
    let (m, c) = (&sample.usage.memory, &sample.usage.cpu);
    assert_eq!((m.kernel_usage, m.kernel_max_usage), (0, 0));
    if m.max_usage > 0 {
        assert_eq!(names(&m.measured), ["RSS", "Cache", "Swap", "Usage", "Max Usage"]);
    } else {
        assert_eq!(names(&m.measured), ["RSS", "Cache", "Swap", "Usage"]);
    }
    assert_eq!(names(&c.measured), ["Throttled Periods", "Throttled Time", "Percent"]);
    assert!(c.percent < 100.0, "limited to half a core: {}", c.percent);
    assert!(c.total_ticks > 0.0);
    assert!(c.user_mode > 0.0, "a busy loop runs in user mode");

    // The pause container is running and labelled, yet never reported.
    let running = run("docker", &["ps", "--filter", &format!("name={pause}"), "--format", "{{.Names}}"]).unwrap();
    assert_eq!(running, pause);

    // A stopped container is reported exited: the positive evidence GC needs.
    run("docker", &["stop", "-t", "0", &task]).expect("task container stops");
    let stopped = Instant::now();
    while mine(plugin.sample_tasks().unwrap()).first().map(|s| s.state) != Some(TaskState::EXITED) {
        assert!(stopped.elapsed() < Duration::from_secs(10), "a stopped container is not reported exited");
        std::thread::sleep(Duration::from_millis(250));
    }

    // A removed container leaves the samples within a few cycles.
    run("docker", &["rm", "-f", &task]).expect("task container removed");
    let removed = Instant::now();
    while !mine(plugin.sample_tasks().unwrap()).is_empty() {
        assert!(removed.elapsed() < Duration::from_secs(10), "samples of a removed container linger");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn absent_daemon_is_reported_as_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let json = format!(r#"{{"endpoint":"unix://{}/docker.sock","stats_interval":"100ms"}}"#, dir.path().display());
    let plugin = plugin(&json);
    std::thread::sleep(Duration::from_millis(300));
    let error = plugin.sample_tasks().unwrap_err();
    assert_eq!(error.kind, allocd_plugin_sdk::ErrorKind::UNAVAILABLE, "{error}");
    let started = Instant::now();
    drop(plugin);
    assert!(started.elapsed() < Duration::from_secs(1), "the collector thread stops promptly");
}

#[test]
fn elf_interpreter_check() {
    assert!(!has_interpreter(b"not an elf"));
    if let Ok(sh) = std::fs::read("/bin/sh") {
        // Debian's dash is dynamically linked; only meaningful where that holds.
        if sh.windows(8).any(|w| w == b"ld-linux") {
            assert!(has_interpreter(&sh));
        }
    }
}
