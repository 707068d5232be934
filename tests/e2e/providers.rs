//! Allocation stats from real metric providers, through allocd's HTTP API: task cgroups
//! created here, and a container on the real Docker Engine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Agent, Fixture, RealTaskCgroup, eventually, is_root, random_alloc_id, skip_unless_ci};

fn new_alloc(fixture: &Fixture, task: &str) -> String {
    let id = random_alloc_id();
    fixture.new_alloc(&id, task);
    id
}

/// Runs `docker`; `Err` carries stderr.
fn docker(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker").args(args).output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

struct Container(String);

/// The job, task group and namespace labels Nomad's docker driver puts on a task's container
/// (with `extra_labels` allowing them), as the test containers carry them.
const NOMAD_LABELS: [(&str, &str); 3] = [
    ("com.hashicorp.nomad.job_name", "shop"),
    ("com.hashicorp.nomad.task_group_name", "front"),
    ("com.hashicorp.nomad.namespace", "prod"),
];

/// Builds the test image (or skips `test`), makes an allocation with task `web`, and runs
/// `command` in a container named and labelled as Nomad's docker driver does.
fn task_container(fixture: &Fixture, test: &str, command: &[&str]) -> Option<(String, Container)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/docker-test-image.sh");
    let built = Command::new("bash").arg(&script).output().unwrap();
    if !built.status.success() {
        let reason = format!("no usable Docker Engine here: {}", String::from_utf8_lossy(&built.stderr).trim());
        skip_unless_ci(test, &reason);
        return None;
    }
    let id = new_alloc(fixture, "web");
    let name = format!("web-{id}");
    let mut labels = vec![format!("com.hashicorp.nomad.alloc_id={id}")];
    labels.extend(NOMAD_LABELS.iter().map(|(key, value)| format!("{key}={value}")));
    let label_args = labels.iter().flat_map(|label| ["--label", label.as_str()]);
    let run: Vec<&str> = ["run", "-d", "--name", &name]
        .into_iter()
        .chain(label_args)
        .chain(["allocd-test-busybox:latest"])
        .chain(command.iter().copied())
        .collect();
    docker(&run).expect("the task container starts");
    Some((id, Container(name)))
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

#[test]
fn docker_container_stats_and_gc_through_http() {
    let fixture = Fixture::new();
    let test = "docker_container_stats_and_gc_through_http";
    let Some((id, container)) = task_container(&fixture, test, &["sh", "-c", "while :; do :; done"]) else {
        return;
    };
    let config = fixture.config(
        "plugin \"docker\" {\n  config { stats_interval = \"500ms\" }\n}\nclient {\n  gc_exit_grace = \"1s\"\n}\n\
         telemetry {\n  publish_allocation_metrics = true\n  disable_hostname = true\n}\n",
    );
    let agent = Agent::start(&["-config", config.to_str().unwrap(), "-log-level", "warn"]);
    let url = format!("/v1/client/allocation/{id}/stats");
    let stats = eventually(Duration::from_secs(30), "a docker sample with CPU use", || {
        let stats = agent.get(&url).json();
        (stats["Tasks"]["web"]["ResourceUsage"]["CpuStats"]["Percent"].as_f64()? > 0.0).then_some(stats)
    });
    let task = &stats["Tasks"]["web"];
    assert!(task["ResourceUsage"]["MemoryStats"]["Usage"].as_u64().unwrap() > 0);
    assert!(task["Pids"].is_null(), "docker reports no per-process data");
    assert_eq!(
        task["ResourceUsage"]["CpuStats"]["Measured"],
        serde_json::json!(["Throttled Periods", "Throttled Time", "Percent"])
    );
    assert!(stats["ResourceUsage"]["CpuStats"]["Percent"].as_f64().unwrap() > 0.0, "running tasks are summed");
    assert_eq!(stats["Timestamp"], task["Timestamp"]);
    let only = agent.get(&format!("{url}?task=nope")).json();
    assert_eq!(only["Tasks"], serde_json::json!({}));

    // The container's Nomad labels label the task's metrics.
    let metrics = agent.get("/v1/metrics").json();
    let usage = metrics["Gauges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["Name"] == "nomad.client.allocs.memory.usage" && g["Labels"]["alloc_id"] == id.as_str())
        .cloned()
        .expect("the task's memory usage gauge");
    let labels =
        serde_json::json!({ "job": "shop", "task_group": "front", "alloc_id": id, "task": "web", "namespace": "prod" });
    assert_eq!(usage["Labels"], labels, "{usage}");

    let gc = agent.get(&format!("/v1/client/allocation/{id}/gc"));
    assert_eq!(
        (gc.status, gc.text().as_str()),
        (500, "No such allocation on client, or allocation not eligible for GC")
    );
    // A stopped container is the positive evidence: collected once stopped (after the grace).
    docker(&["stop", "-t", "0", &container.0]).expect("the task container stops");
    eventually(Duration::from_secs(30), "the allocation to become terminal and collected", || {
        (agent.get(&format!("/v1/client/allocation/{id}/gc")).status == 200).then_some(())
    });
    assert!(!fixture.alloc_dir().join(&id).exists());
}

#[test]
fn cgroup_task_stats_and_gc_through_http() {
    let fixture = Fixture::new();
    let id = new_alloc(&fixture, "busy");
    let cgroup = match RealTaskCgroup::create(&id, "busy") {
        Ok(cgroup) => cgroup,
        Err(reason) if !is_root() => {
            return skip_unless_ci(
                "cgroup_task_stats_and_gc_through_http",
                &format!("cannot create cgroups: {reason}"),
            );
        }
        Err(reason) => panic!("root could not create task cgroups: {reason}"),
    };
    let pid = cgroup.child.id().to_string();
    // A failing provider beside it (no Docker daemon there) must not keep this task "running".
    let absent = fixture.dir.path().join("no-docker.sock");
    let config = fixture.config(&format!(
        "telemetry {{ collection_interval = \"250ms\" }}\nclient {{ gc_exit_grace = \"2s\" }}\nplugin \"cgroup\" {{}}\nplugin \"docker\" {{ config {{ endpoint = \"unix://{}\" }} }}\n",
        absent.display()
    ));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    let url = format!("/v1/client/allocation/{id}/stats");
    let stats = eventually(Duration::from_secs(20), "a rising Percent and charged memory for the busy task", || {
        let stats = agent.get(&url).json();
        let usage = &stats["Tasks"]["busy"]["ResourceUsage"];
        let busy = usage["CpuStats"]["Percent"].as_f64()? > 10.0;
        let charged = usage["MemoryStats"]["RSS"].as_u64()? > 0 && usage["MemoryStats"]["Usage"].as_u64()? > 0;
        (busy && charged).then_some(stats)
    });
    let task = &stats["Tasks"]["busy"];
    assert!(task["Pids"][&pid].is_object(), "the busy process is in Pids: {}", task["Pids"]);
    assert_eq!(stats["ResourceUsage"]["DeviceStats"], serde_json::json!([]));
    assert!(stats["ResourceUsage"]["MemoryStats"]["Measured"].is_array());

    let gc = agent.get(&format!("/v1/client/allocation/{id}/gc"));
    assert_eq!(gc.status, 500, "a running allocation is not collected");
    // Killed, and its cgroup removed as Nomad does: collected, but only after the grace.
    let stopped = Instant::now();
    drop(cgroup);
    eventually(Duration::from_secs(20), "the task to stop and the allocation to be collected", || {
        (agent.get(&format!("/v1/client/allocation/{id}/gc")).status == 200).then_some(())
    });
    assert!(stopped.elapsed() >= Duration::from_secs(2), "collected within the exit grace");
    let after = agent.get(&url);
    assert_eq!(after.status, 404);
}

/// A real cgroup task that exits while the agent is stopped is recognised at the next start
/// from the evidence kept in `data_dir`; a task still running after a restart is not collected.
#[test]
fn cgroup_task_that_exits_while_the_agent_is_down() {
    let fixture = Fixture::new();
    let (ended, lasting) = (new_alloc(&fixture, "busy"), new_alloc(&fixture, "busy"));
    let cgroups = [RealTaskCgroup::create(&ended, "busy"), RealTaskCgroup::create(&lasting, "busy")];
    let [Ok(ended_task), Ok(_lasting_task)] = cgroups else {
        if !is_root() {
            return skip_unless_ci("cgroup_task_that_exits_while_the_agent_is_down", "cannot create cgroups");
        }
        panic!("root could not create task cgroups");
    };
    let config = fixture.config(
        "telemetry { collection_interval = \"200ms\" }\nclient { gc_exit_grace = \"0s\" }\nplugin \"cgroup\" {}\n",
    );
    let start = || Agent::start(&["-config", config.to_str().unwrap()]);
    let agent = start();
    let evidence = fixture.dir.path().join("data/client/task-evidence.json");
    eventually(Duration::from_secs(10), "both tasks in the evidence file", || {
        let text = std::fs::read_to_string(&evidence).ok()?;
        (text.contains(&ended) && text.contains(&lasting)).then_some(())
    });
    agent.terminate();
    drop(ended_task); // the task ends and its cgroup goes while no agent runs
    let agent = start();
    eventually(Duration::from_secs(10), "the ended allocation to be collected", || {
        (agent.get(&format!("/v1/client/allocation/{ended}/gc")).status == 200).then_some(())
    });
    let refused = agent.get(&format!("/v1/client/allocation/{lasting}/gc"));
    assert_eq!(refused.status, 500, "a task still running after the restart is live");
    assert!(fixture.alloc_dir().join(&lasting).exists());
}

/// A unix socket in front of the Docker Engine that the test can make stop answering: while
/// paused it accepts connections and never replies, as a hung daemon does.
struct DockerProxy {
    socket: PathBuf,
    answering: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DockerProxy {
    fn start(dir: &Path) -> Self {
        use std::sync::atomic::Ordering;
        let socket = dir.join("docker-proxy.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let answering = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = answering.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let flag = flag.clone();
                std::thread::spawn(move || {
                    if !flag.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_secs(30)); // hold it, say nothing
                        return;
                    }
                    let Ok(daemon) = std::os::unix::net::UnixStream::connect("/var/run/docker.sock") else { return };
                    let (mut up_read, mut up_write) = (daemon.try_clone().unwrap(), daemon);
                    let (mut down_read, mut down_write) = (client.try_clone().unwrap(), client);
                    let upstream = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut down_read, &mut up_write);
                        let _ = up_write.shutdown(std::net::Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut up_read, &mut down_write);
                    let _ = down_write.shutdown(std::net::Shutdown::Both);
                    let _ = upstream.join();
                });
            }
        });
        Self { socket, answering }
    }

    fn answer(&self, yes: bool) {
        self.answering.store(yes, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A stopped container collects its allocation only once the provider can see it stopped:
/// never during a daemon outage, never before the provider's first listing after a restart.
#[test]
fn docker_outages_and_restarts_prove_nothing() {
    let fixture = Fixture::new();
    let test = "docker_outages_and_restarts_prove_nothing";
    let Some((id, container)) = task_container(&fixture, test, &["sleep", "3600"]) else { return };
    let proxy = DockerProxy::start(fixture.dir.path());
    let config = fixture.config(&format!(
        "plugin \"docker\" {{\n  config {{\n    endpoint = \"unix://{}\"\n    stats_interval = \"300ms\"\n  }}\n}}\n\
         telemetry {{ collection_interval = \"200ms\" }}\nclient {{ gc_exit_grace = \"0s\" }}\n",
        proxy.socket.display()
    ));
    let start = || Agent::start(&["-config", config.to_str().unwrap(), "-log-level", "warn"]);
    let gc = |agent: &Agent| agent.get(&format!("/v1/client/allocation/{id}/gc")).status;
    let agent = start();
    eventually(Duration::from_secs(30), "the running container to be seen", || {
        agent.get(&format!("/v1/client/allocation/{id}/stats")).json()["Tasks"].get("web").map(|_| ())
    });
    assert_eq!(gc(&agent), 500, "running");

    // The daemon stops answering; the container stops meanwhile: nothing proves it.
    proxy.answer(false);
    std::thread::sleep(Duration::from_secs(6)); // the plugin's 5 s request deadline passes
    docker(&["stop", "-t", "0", &container.0]).expect("the container stops");
    for _ in 0..10 {
        assert_eq!(gc(&agent), 500, "collected during a daemon outage");
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.terminate();

    // A restart while the daemon is still silent: no listing yet, no evidence.
    let agent = start();
    for _ in 0..10 {
        assert_eq!(gc(&agent), 500, "collected before the provider's first listing");
        std::thread::sleep(Duration::from_millis(200));
    }
    proxy.answer(true);
    eventually(Duration::from_secs(60), "a full listing to show the stopped container", || {
        (gc(&agent) == 200).then_some(())
    });
    assert!(!fixture.alloc_dir().join(&id).exists());
}
