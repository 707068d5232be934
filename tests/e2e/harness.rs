//! Starting the real agent over a temp directory and talking to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub const ALLOC_ID: &str = "5fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e11";

/// The agent binary under test.
pub fn allocd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_allocd"))
}

/// A temp dir holding a data dir, an alloc dir with one Nomad-layout allocation, a config.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let fixture = Self { dir: tempfile::tempdir().unwrap() };
        let root = fixture.alloc_root();
        for dir in ["alloc/logs", "alloc/data", "alloc/tmp", "web/local", "web/secrets", "web/tmp", "web/private"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        fixture.write("alloc/logs/web.stdout.0", b"Hello from the other side");
        fixture.write("alloc/logs/web.stderr.0", b"");
        fixture.write("web/secrets/token", b"s3cr3t");
        fixture.write("web/private/key", b"k3y");
        fixture.write("web/local/xss.txt", b"<script>alert(document.domain);</script>");
        fixture.write("web/local/conf.json", b"{\"a\": 1}");
        fixture.write("web/local/empty", b"");
        fixture
    }

    pub fn alloc_dir(&self) -> PathBuf {
        self.dir.path().join("alloc")
    }

    /// Creates allocation `id` with the shared `alloc/logs` and task `task`'s directory.
    pub fn new_alloc(&self, id: &str, task: &str) {
        std::fs::create_dir_all(self.alloc_dir().join(id).join("alloc/logs")).unwrap();
        std::fs::create_dir_all(self.alloc_dir().join(id).join(task).join("local")).unwrap();
    }

    pub fn alloc_root(&self) -> PathBuf {
        self.alloc_dir().join(ALLOC_ID)
    }

    /// Adds another Nomad-layout allocation `id` with one task and its stdout log.
    pub fn add_alloc(&self, id: &str, task: &str, stdout: &[u8]) {
        let root = self.alloc_dir().join(id);
        for dir in ["alloc/logs", "alloc/data", "alloc/tmp"]
            .into_iter()
            .map(String::from)
            .chain(["local", "secrets", "tmp", "private"].iter().map(|d| format!("{task}/{d}")))
        {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join(format!("alloc/logs/{task}.stdout.0")), stdout).unwrap();
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) {
        std::fs::write(self.alloc_root().join(rel), bytes).unwrap();
    }

    /// The standard config, plus `extra` HCL.
    pub fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "data_dir = {data:?}\nplugin \"host-metrics\" {{}}\nplugin \"local-disk\" {{\n  config {{ alloc_dir = {alloc:?} }}\n}}\n{extra}",
            data = self.dir.path().join("data"),
            alloc = self.alloc_dir(),
        );
        self.config_text(&text)
    }

    pub fn config_text(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("allocd.hcl");
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A running agent; killed on drop.
pub struct Agent {
    pub child: Child,
    pub base: String,
    pub stdout: mpsc::Receiver<String>,
    /// Everything the agent logged so far, filled by `stderr_reader` until the agent exits.
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    /// Starts `allocd agent <args> -http-port 0` and waits for its listening line.
    pub fn start(args: &[&str]) -> Agent {
        Self::try_start(args).unwrap_or_else(|stderr| panic!("allocd did not start:\n{stderr}"))
    }

    /// Starts the agent; `Err(stderr)` when it exits before listening.
    pub fn try_start(args: &[&str]) -> Result<Agent, String> {
        Self::try_start_command(Command::new(allocd_bin()), args)
    }

    /// Starts `allocd agent <args> -http-port 0` through `command` (the binary itself, or a
    /// shell that sets something up and execs it).
    pub fn try_start_command(command: Command, args: &[&str]) -> Result<Agent, String> {
        Self::try_start_on(command, args, 0)
    }

    /// Starts `allocd agent <args> -http-port <port>` through `command` (a fixed port lets a
    /// test restart the agent where its clients reconnect).
    pub fn try_start_on(mut command: Command, args: &[&str], port: u16) -> Result<Agent, String> {
        let mut child = command
            .arg("agent")
            .args(args)
            .args(["-http-port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning allocd");
        let (tx, stdout) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let lines = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        loop {
            match stdout.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("==> allocd listening on ") {
                        let (base, stderr_reader) = (addr.trim().to_string(), Some(stderr_reader));
                        return Ok(Agent { child, base, stdout, stderr, stderr_reader });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = stderr_reader.join();
                    return Err(std::mem::take(&mut *stderr.lock().unwrap()));
                }
            }
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    pub fn get(&self, path_and_query: &str) -> Response {
        get(&self.url(path_and_query), &[])
    }

    pub fn get_with(&self, path_and_query: &str, headers: &[(&str, &str)]) -> Response {
        get(&self.url(path_and_query), headers)
    }

    /// The agent still answers a good request (bad input disturbed nothing).
    pub fn assert_healthy(&self) {
        let ls = self.get(&format!("/v1/client/fs/ls/{ALLOC_ID}?path=alloc/logs"));
        assert_eq!(ls.status, 200, "{}", ls.text());
        assert_eq!(self.get("/v1/client/stats").status, 200);
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().unwrap()
    }

    /// What the agent has logged so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM, waits, and returns everything the agent logged.
    pub fn terminate_and_collect_stderr(mut self) -> String {
        let reader = self.stderr_reader.take();
        let log = Arc::clone(&self.stderr);
        self.terminate();
        if let Some(reader) = reader {
            let _ = reader.join();
        }
        std::mem::take(&mut *log.lock().unwrap())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A buffered HTTP response.
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// GET without automatic decompression, so tests see the wire.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Response {
    let client = reqwest::blocking::Client::builder().no_gzip().timeout(Duration::from_secs(30)).build().unwrap();
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().unwrap().to_vec();
    Response { status, headers, body }
}

/// An agent over a fresh fixture with the standard config.
pub fn agent_with_fixture(extra_config: &str) -> (Fixture, Agent) {
    let fixture = Fixture::new();
    let config = fixture.config(extra_config);
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    (fixture, agent)
}

/// The build output directory holding the binary and the plugin libraries.
pub fn build_dir() -> PathBuf {
    allocd_bin().parent().map(Path::to_path_buf).unwrap()
}

/// A cgroup v2 tree inside the fixture, read by the real cgroup plugin, so tests decide what
/// the GC evidence says: a task *running* lists a live pid (this test process), an *exited*
/// one lists none, a *removed* one is gone from the tree.
pub struct TaskCgroups {
    root: PathBuf,
}

impl TaskCgroups {
    pub fn new(fixture: &Fixture) -> Self {
        let root = fixture.dir.path().join("cgroup");
        std::fs::create_dir_all(root.join("nomad.slice/share.slice")).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        Self { root }
    }

    /// The plugin block, a short sampling interval, and a `client` block holding
    /// `extra_client` (with no exit grace unless it sets one).
    pub fn config(&self, extra_client: &str) -> String {
        let grace = if extra_client.contains("gc_exit_grace") { "" } else { "  gc_exit_grace = \"0s\"\n" };
        format!(
            "plugin \"cgroup\" {{\n  config {{\n    root = {root:?}\n    mode = \"v2\"\n  }}\n}}\n\
             telemetry {{\n  collection_interval = \"100ms\"\n}}\n\
             client {{\n{grace}{extra_client}}}\n",
            root = self.root
        )
    }

    fn scope(&self, alloc: &str, task: &str) -> PathBuf {
        self.root.join(format!("nomad.slice/share.slice/{alloc}.{task}.scope"))
    }

    pub fn running(&self, alloc: &str, task: &str) {
        self.write(alloc, task, &format!("{}\n", std::process::id()));
    }

    pub fn exited(&self, alloc: &str, task: &str) {
        self.write(alloc, task, "");
    }

    pub fn remove(&self, alloc: &str, task: &str) {
        std::fs::remove_dir_all(self.scope(alloc, task)).unwrap();
    }

    fn write(&self, alloc: &str, task: &str, procs: &str) {
        let scope = self.scope(alloc, task);
        std::fs::create_dir_all(&scope).unwrap();
        for (name, text) in [
            ("memory.stat", "anon 4096\nfile 0\n"),
            ("memory.current", "4096\n"),
            ("cpu.stat", "usage_usec 1\nuser_usec 1\nsystem_usec 0\nnr_throttled 0\nthrottled_usec 0\n"),
            ("cgroup.procs", procs),
        ] {
            std::fs::write(scope.join(name), text).unwrap();
        }
    }
}

/// Polls `probe` until it returns `Some`, or panics after `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Skips a test whose real component is missing: a printed reason on a developer's machine,
/// a failure when `CI` is set (a skip must never pass as "ok" there).
pub fn skip_unless_ci(test: &str, reason: &str) {
    assert!(std::env::var_os("CI").is_none(), "{test}: {reason} (CI is set: the component must be there)");
    println!("SKIPPED {test}: {reason}");
}

/// The agent's resident memory in KiB (`VmRSS`, or `VmHWM` for the peak) from /proc.
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with(&format!("{field}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Raises this test process's open-file limit to its hard limit, for tests that open
/// thousands of connections; fails when the hard limit is below `needed`.
pub fn raise_own_open_file_limit(needed: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(hard >= needed, "this test needs {needed} open files; the hard limit is {hard}");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// A real v1 task cgroup `nomad/<alloc_id>.<task>` under every mounted controller, holding a
/// busy process that has charged about 4 MB of memory to it; killed and removed on drop.
pub struct RealTaskCgroup {
    dirs: Vec<PathBuf>,
    pub child: std::process::Child,
}

impl RealTaskCgroup {
    pub fn create(alloc_id: &str, task: &str) -> Result<Self, String> {
        let root = Path::new("/sys/fs/cgroup");
        let mut dirs = Vec::new();
        for controller in ["memory", "cpuacct", "cpu,cpuacct", "cpu", "freezer", "pids"] {
            let base = root.join(controller);
            if !base.join("cgroup.procs").exists() || std::fs::symlink_metadata(&base).is_ok_and(|m| m.is_symlink()) {
                continue;
            }
            let dir = base.join("nomad").join(format!("{alloc_id}.{task}"));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            dirs.push(dir);
        }
        if !dirs.iter().any(|d| d.starts_with(root.join("memory"))) {
            return Err("no cgroup v1 memory controller".into());
        }
        // Memory is charged to the cgroup it is allocated in: allocate after the move.
        let busy = "sleep 0.5; x=$(head -c 4000000 /dev/zero | tr '\\0' a); while :; do :; done";
        let child = Command::new("sh").args(["-c", busy]).spawn().map_err(|e| e.to_string())?;
        let cgroup = RealTaskCgroup { dirs, child };
        for dir in &cgroup.dirs {
            std::fs::write(dir.join("cgroup.procs"), cgroup.child.id().to_string())
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(cgroup)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RealTaskCgroup {
    fn drop(&mut self) {
        self.stop();
        for dir in &self.dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Whether the tests run as root (creating cgroups and mounts needs it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
}

/// A fresh random allocation ID.
pub fn random_alloc_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap().trim().to_string()
}
