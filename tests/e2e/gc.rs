//! Garbage collection on positive evidence only: what the GC endpoints and the policy delete,
//! what they never delete, and how a deletion stays inside the allocation. Task states come
//! from the real cgroup plugin reading a cgroup tree the test controls ([`TaskCgroups`]).

use std::process::{Child, Command};
use std::time::Duration;

use crate::harness::{ALLOC_ID, Agent, Fixture, TaskCgroups, eventually, is_root, skip_unless_ci};

const NOT_ELIGIBLE: &str = "No such allocation on client, or allocation not eligible for GC";
const OTHER: &str = "6fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e12";

fn gc_url(alloc: &str) -> String {
    format!("/v1/client/allocation/{alloc}/gc")
}

/// An agent over the fixture with the controllable cgroup tree.
fn agent(fixture: &Fixture, cgroups: &TaskCgroups, extra_client: &str) -> Agent {
    let config = fixture.config(&cgroups.config(extra_client));
    Agent::start(&["-config", config.to_str().unwrap()])
}

/// The fixture allocation's task `web` running, and an agent that has seen it run.
fn with_running_task(fixture: &Fixture, extra_client: &str) -> (TaskCgroups, Agent) {
    let cgroups = TaskCgroups::new(fixture);
    cgroups.running(ALLOC_ID, "web");
    let agent = agent(fixture, &cgroups, extra_client);
    seen(&agent, ALLOC_ID, "web");
    (cgroups, agent)
}

/// Waits until a GC of `alloc` succeeds (the agent has taken the evidence in).
fn collected_eventually(agent: &Agent, alloc: &str) {
    eventually(Duration::from_secs(30), "the allocation to be collected", || {
        (agent.get(&gc_url(alloc)).status == 200).then_some(())
    });
}

/// Waits until the agent's allocation stats show `task` of `alloc`.
fn seen(agent: &Agent, alloc: &str, task: &str) {
    eventually(Duration::from_secs(30), "the task to be sampled", || {
        agent.get(&format!("/v1/client/allocation/{alloc}/stats")).json()["Tasks"].get(task).map(|_| ())
    });
}

/// Waits until the background deletions under the fixture's alloc dir are done.
fn trash_emptied(fixture: &Fixture, limit: Duration) {
    let trash = fixture.alloc_dir().join(".allocd-trash");
    eventually(limit, "the trash to be emptied", || std::fs::read_dir(&trash).ok()?.next().is_none().then_some(()));
}

/// `dirs` directories of `files` one-byte files under the fixture allocation's `alloc/data`.
fn many_files(fixture: &Fixture, dirs: usize, files: usize) {
    for dir in 0..dirs {
        let path = fixture.alloc_root().join(format!("alloc/data/{dir}"));
        std::fs::create_dir_all(&path).unwrap();
        for file in 0..files {
            std::fs::write(path.join(file.to_string()), b"x").unwrap();
        }
    }
}

#[test]
fn a_finished_allocation_is_collected_once_after_the_grace() {
    let fixture = Fixture::new();
    let (cgroups, agent) = with_running_task(&fixture, "  gc_exit_grace = \"1500ms\"\n");
    let running = agent.get(&gc_url(ALLOC_ID));
    assert_eq!((running.status, running.text().as_str()), (500, NOT_ELIGIBLE), "a running task");

    cgroups.exited(ALLOC_ID, "web");
    let exited_at = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent.get(&gc_url(ALLOC_ID)).status, 500, "within the exit grace");
    collected_eventually(&agent, ALLOC_ID);
    assert!(exited_at.elapsed() >= Duration::from_millis(1500));
    assert!(!fixture.alloc_root().exists(), "out of sight when the answer comes");
    // Its stats were answered from the allocation index: that answer is gone at once too.
    let stats = agent.get(&format!("/v1/client/allocation/{ALLOC_ID}/stats"));
    assert_eq!((stats.status, stats.text()), (404, format!("state for allocation {ALLOC_ID} not found on client")));

    let again = agent.get(&gc_url(ALLOC_ID));
    assert_eq!((again.status, again.text().as_str()), (500, NOT_ELIGIBLE));
    let cat = agent.get(&format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/logs/web.stdout.0"));
    assert_eq!((cat.status, cat.text()), (404, format!("state for allocation {ALLOC_ID} not found on client")));
    assert_eq!(agent.get(&gc_url("11111111-2222-4333-8444-555555555555")).status, 404);
    trash_emptied(&fixture, Duration::from_secs(10));
}

/// A task that is a plain process (raw_exec, a driver no plugin covers).
struct PlainTask(Child);

impl Drop for PlainTask {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn nothing_without_evidence_is_ever_collected() {
    let fixture = Fixture::new();
    let cgroups = TaskCgroups::new(&fixture);
    // The fixture allocation: a plain process writing into it, no cgroup, no container.
    let data = fixture.alloc_root().join("alloc/data/out");
    let _plain = PlainTask(
        Command::new("sh")
            .args(["-c", &format!("while :; do echo x >> {}; sleep 0.05; done", data.display())])
            .spawn()
            .unwrap(),
    );
    // A pending allocation (nothing started) and one whose cgroup task runs.
    let pending = "7fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e17";
    fixture.new_alloc(pending, "web");
    fixture.new_alloc(OTHER, "web");
    cgroups.running(OTHER, "web");
    // And an allocation with an exited task beside a task directory no provider ever saw.
    let mixed = "8fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e18";
    fixture.new_alloc(mixed, "web");
    fixture.new_alloc(mixed, "raw");
    cgroups.running(mixed, "web");
    let policy = "  gc_interval = \"200ms\"\n  gc_max_allocs = 0\n  gc_disk_usage_threshold = 0\n";
    let agent = agent(&fixture, &cgroups, policy);
    seen(&agent, OTHER, "web");
    seen(&agent, mixed, "web");
    cgroups.exited(mixed, "web");
    for alloc in [ALLOC_ID, pending, OTHER, mixed] {
        let gc = agent.get(&gc_url(alloc));
        assert_eq!((gc.status, gc.text().as_str()), (500, NOT_ELIGIBLE), "GC of {alloc}");
    }
    assert_eq!(agent.get("/v1/client/gc").status, 200);
    std::thread::sleep(Duration::from_millis(1500)); // several policy sweeps
    for alloc in [ALLOC_ID, pending, OTHER, mixed] {
        assert!(fixture.alloc_dir().join(alloc).exists(), "{alloc} was deleted");
    }
    let size = std::fs::metadata(&data).unwrap().len();
    std::thread::sleep(Duration::from_millis(300));
    assert!(std::fs::metadata(&data).unwrap().len() > size, "the plain task still writes into its allocation");
}

#[test]
fn client_gc_and_the_policy_collect_terminal_allocations() {
    let fixture = Fixture::new();
    let cgroups = TaskCgroups::new(&fixture);
    fixture.new_alloc(OTHER, "web");
    for alloc in [ALLOC_ID, OTHER] {
        cgroups.running(alloc, "web");
    }
    let agent = agent(&fixture, &cgroups, "");
    seen(&agent, ALLOC_ID, "web");
    seen(&agent, OTHER, "web");
    let other_node = agent.get("/v1/client/gc?node_id=00000000-0000-4000-8000-000000000000");
    assert_eq!(other_node.status, 500);
    cgroups.remove(ALLOC_ID, "web"); // Nomad removes an ended task's cgroup
    cgroups.exited(OTHER, "web");
    eventually(Duration::from_secs(10), "client GC to collect both", || {
        assert_eq!(agent.get("/v1/client/gc").status, 200);
        std::thread::sleep(Duration::from_millis(100));
        (!fixture.alloc_root().exists() && !fixture.alloc_dir().join(OTHER).exists()).then_some(())
    });
}

#[test]
fn the_policy_keeps_at_most_max_allocs_oldest_first() {
    let fixture = Fixture::new();
    let cgroups = TaskCgroups::new(&fixture);
    std::thread::sleep(Duration::from_millis(20));
    fixture.new_alloc(OTHER, "web");
    for alloc in [ALLOC_ID, OTHER] {
        cgroups.running(alloc, "web");
    }
    // The disk threshold out of the way: only the count decides (the host disk may be full).
    let agent =
        agent(&fixture, &cgroups, "  gc_interval = \"200ms\"\n  gc_max_allocs = 1\n  gc_disk_usage_threshold = 100\n");
    seen(&agent, ALLOC_ID, "web");
    seen(&agent, OTHER, "web");
    for alloc in [ALLOC_ID, OTHER] {
        cgroups.exited(alloc, "web");
    }
    eventually(Duration::from_secs(10), "the policy to collect the oldest allocation", || {
        (!fixture.alloc_root().exists()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(600));
    assert!(fixture.alloc_dir().join(OTHER).exists(), "the newest allocation is kept");
}

#[test]
fn gc_can_be_turned_off() {
    let fixture = Fixture::new();
    let (cgroups, agent) =
        with_running_task(&fixture, "  gc_enabled = false\n  gc_interval = \"100ms\"\n  gc_max_allocs = 0\n");
    cgroups.exited(ALLOC_ID, "web");
    std::thread::sleep(Duration::from_millis(600));
    let disabled = "garbage collection is disabled on this agent (client.gc_enabled = false)";
    let gc = agent.get(&gc_url(ALLOC_ID));
    assert_eq!((gc.status, gc.text().as_str()), (500, disabled));
    assert_eq!(agent.get("/v1/client/gc").status, 500);
    assert!(fixture.alloc_root().exists());
}

#[test]
fn a_follow_on_a_collected_allocation_ends() {
    let fixture = Fixture::new();
    let (cgroups, agent) = with_running_task(&fixture, "");
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let url = agent.url(&format!("/v1/client/fs/stream/{ALLOC_ID}?path=alloc/logs/web.stdout.0"));
    let (started_tx, started) = std::sync::mpsc::channel();
    let follower = std::thread::spawn(move || {
        let mut response = client.get(url).send()?;
        let mut body = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = std::io::Read::read(&mut response, &mut buf).unwrap_or(0);
            if n == 0 {
                return Ok::<_, reqwest::Error>(String::from_utf8_lossy(&body).into_owned());
            }
            body.extend_from_slice(&buf[..n]);
            let _ = started_tx.send(());
        }
    });
    started.recv_timeout(Duration::from_secs(10)).expect("the follow starts with the file's bytes");
    cgroups.exited(ALLOC_ID, "web");
    collected_eventually(&agent, ALLOC_ID);
    let body = follower.join().unwrap().expect("the stream ends cleanly");
    assert!(body.contains("file deleted"), "{body}");
}

fn mounted_under(path: &std::path::Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_string_lossy();
    mountinfo.lines().any(|line| line.split(' ').nth(4).is_some_and(|m| m.starts_with(path.as_ref())))
}

#[test]
fn a_deletion_never_leaves_the_allocation() {
    if !is_root() {
        return skip_unless_ci("a_deletion_never_leaves_the_allocation", "bind mounts need root");
    }
    let fixture = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("shared")).unwrap();
    std::fs::write(outside.path().join("shared/precious"), "keep me").unwrap();
    std::fs::write(outside.path().join("file"), "keep me too").unwrap();
    // A bind mount inside the allocation (as Nomad's exec driver makes), symlinks leading out.
    let bind = fixture.alloc_root().join("web/alloc");
    std::fs::create_dir_all(&bind).unwrap();
    let mounted =
        Command::new("mount").args(["--bind"]).arg(outside.path().join("shared")).arg(&bind).status().unwrap();
    assert!(mounted.success(), "mount --bind");
    std::os::unix::fs::symlink(outside.path(), fixture.alloc_root().join("web/local/out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("file"), fixture.alloc_root().join("alloc/data/out")).unwrap();

    let (cgroups, agent) = with_running_task(&fixture, "");
    cgroups.exited(ALLOC_ID, "web");
    collected_eventually(&agent, ALLOC_ID);
    trash_emptied(&fixture, Duration::from_secs(10));
    assert_eq!(std::fs::read_to_string(outside.path().join("shared/precious")).unwrap(), "keep me");
    assert_eq!(std::fs::read_to_string(outside.path().join("file")).unwrap(), "keep me too");
    assert!(!mounted_under(fixture.dir.path()), "no mount is left behind");
}

#[test]
fn a_deletion_cut_by_kill_9_is_finished_at_the_next_start() {
    let fixture = Fixture::new();
    many_files(&fixture, 40, 1000);
    let cgroups = TaskCgroups::new(&fixture);
    cgroups.running(ALLOC_ID, "web");
    let config = fixture.config(&cgroups.config(""));
    let mut agent = Agent::start(&["-config", config.to_str().unwrap()]);
    seen(&agent, ALLOC_ID, "web");
    cgroups.exited(ALLOC_ID, "web");
    collected_eventually(&agent, ALLOC_ID);
    agent.child.kill().unwrap(); // SIGKILL while the 40,000 files are being deleted
    agent.child.wait().unwrap();
    let left = std::fs::read_dir(fixture.alloc_dir().join(".allocd-trash")).unwrap().count();
    println!("trash entries left by kill -9: {left}");

    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    let cat = agent.get(&format!("/v1/client/fs/ls/{ALLOC_ID}?path=/alloc/data"));
    assert_eq!(cat.status, 404, "a half-deleted allocation is never served");
    trash_emptied(&fixture, Duration::from_secs(60));
}

#[test]
fn concurrent_gcs_of_one_allocation_delete_it_once() {
    let fixture = Fixture::new();
    many_files(&fixture, 20, 500);
    let (cgroups, agent) = with_running_task(&fixture, "");
    cgroups.exited(ALLOC_ID, "web");
    std::thread::sleep(Duration::from_millis(500)); // the exit is in the evidence
    let url = agent.url(&gc_url(ALLOC_ID));
    let answers: Vec<u16> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..8).map(|_| scope.spawn(|| crate::harness::get(&url, &[]).status)).collect();
        calls.into_iter().map(|call| call.join().unwrap()).collect()
    });
    assert_eq!(answers.iter().filter(|&&s| s == 200).count(), 1, "exactly one GC deletes: {answers:?}");
    assert!(answers.iter().all(|&s| s == 200 || s == 500), "{answers:?}");
    assert!(!fixture.alloc_root().exists());
}

/// A tmpfs of a fixed size, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Deletion runs in the background, so the disk policy waits for the space to come back before
/// judging again: one allocation over the threshold costs one allocation, not every terminal one.
#[test]
fn the_disk_policy_deletes_only_what_it_needs() {
    if !is_root() {
        return skip_unless_ci("the_disk_policy_deletes_only_what_it_needs", "mounting a tmpfs needs root");
    }
    let fixture = Fixture::new();
    let small = fixture.dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"]).arg(&small).status().unwrap();
    assert!(mounted.success(), "mount tmpfs");
    let _disk = SmallDisk(small.clone());
    let (older, newer) = (ALLOC_ID, OTHER);
    // 20 MiB each in 5,000 files, so that deleting one takes a moment: 62 % of the disk.
    for alloc in [older, newer] {
        std::fs::create_dir_all(small.join(alloc).join("web")).unwrap();
        let data = small.join(alloc).join("alloc/data");
        std::fs::create_dir_all(&data).unwrap();
        for file in 0..5000 {
            std::fs::write(data.join(file.to_string()), [7u8; 4096]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cgroups = TaskCgroups::new(&fixture);
    for alloc in [older, newer] {
        cgroups.running(alloc, "web");
    }
    let config = fixture.config_text(&format!(
        "data_dir = {data:?}\nalloc_dir = {small:?}\nplugin \"host-metrics\" {{}}\n\
         plugin \"local-disk\" {{\n  config {{ alloc_dir = {small:?} }}\n}}\n{}",
        cgroups.config("  gc_interval = \"300ms\"\n  gc_disk_usage_threshold = 50\n"),
        data = fixture.dir.path().join("data"),
    ));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    seen(&agent, older, "web");
    seen(&agent, newer, "web");
    for alloc in [older, newer] {
        cgroups.exited(alloc, "web");
    }
    eventually(Duration::from_secs(30), "the policy to collect the oldest allocation", || {
        (!small.join(older).exists()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3)); // several more sweeps
    assert!(small.join(newer).exists(), "back under the threshold after one deletion: the newer one stays");
    // What the deletion gave back, as the filesystem shows it: the 20 MB of files and their directories.
    let freed = eventually(Duration::from_secs(30), "allocd.gc.bytes_freed", || {
        crate::telemetry::counter(&agent.get("/v1/metrics").json(), "allocd.gc.bytes_freed", &[]).filter(|b| *b > 0)
    });
    assert!((20_480_000..22_000_000).contains(&freed), "bytes freed {freed}");
    drop(agent);
}
