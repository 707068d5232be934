//! Racing the sandbox: a hostile task swaps a file for a symlink out, a directory for a link to
//! an outside directory and a file for a FIFO as fast as it can, while clients read the same
//! names through cat, readat and stream. No byte from outside may ever be served and no request
//! may hang (the client timeout is a hang detector, not a performance threshold).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::harness::{ALLOC_ID, Agent, Fixture};

/// The whole content of every outside file. Its length is a multiple of 3, so a stream frame
/// that starts with it carries `STANDARD.encode(MARKER)` verbatim.
const MARKER: &str = "OUTSIDE-THE-ALLOCATION-9f3c1e";
const CLIENT_THREADS: usize = 4;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
const OVERLAY_ID: &str = "7ab1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e13";

/// What the clients saw.
#[derive(Debug, Default)]
struct Tally {
    requests: usize,
    outside_bytes_seen: usize,
    transport_failures: usize,
    slowest: Duration,
    statuses: BTreeMap<u16, usize>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.outside_bytes_seen += other.outside_bytes_seen;
        self.transport_failures += other.transport_failures;
        self.slowest = self.slowest.max(other.slowest);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
    }
}

/// An outside file and an outside directory holding one, both full of `MARKER`.
fn outside_targets(base: &Path) -> (PathBuf, PathBuf) {
    let dir = base.join("outside-dir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("f"), MARKER).unwrap();
    let file = base.join("outside-file");
    std::fs::write(&file, MARKER).unwrap();
    (file, dir)
}

/// `target` as a path relative to `from` that climbs to `/` first: a relative symlink out.
fn climbing(from: &Path, target: &Path) -> PathBuf {
    let up = "../".repeat(from.components().count() - 1);
    PathBuf::from(up).join(target.strip_prefix("/").unwrap())
}

/// Replaces `dir/name` atomically with a hard link to `source` (a file, FIFO or symlink).
fn swap_in(dir: &Path, name: &str, source: &Path) {
    let staging = dir.join(format!(".{name}.next"));
    let _ = std::fs::remove_file(&staging);
    std::fs::hard_link(source, &staging).unwrap();
    std::fs::rename(&staging, dir.join(name)).unwrap();
}

/// The hostile workload in `dir`, until `stop`: `f` is a file or an absolute symlink to an
/// outside file, `d` a directory or a relative symlink to an outside directory, `p` a file or a FIFO.
fn swap_until(dir: PathBuf, outside_file: PathBuf, outside_dir: PathBuf, stop: Arc<AtomicBool>) -> usize {
    let sources = dir.join(".sources");
    std::fs::create_dir_all(sources.join("d")).unwrap();
    std::fs::write(sources.join("file"), "inside").unwrap();
    std::fs::write(sources.join("d/f"), "inside d").unwrap();
    std::os::unix::fs::symlink(&outside_file, sources.join("link-out")).unwrap();
    assert!(Command::new("mkfifo").arg(sources.join("fifo")).status().unwrap().success());
    let (dir_home, dir_link) = (sources.join("d"), dir.join(".d-link"));
    std::os::unix::fs::symlink(climbing(&dir, &outside_dir), &dir_link).unwrap();
    swap_in(&dir, "f", &sources.join("file"));
    swap_in(&dir, "p", &sources.join("file"));
    let mut swaps = 0;
    while !stop.load(Ordering::Relaxed) {
        swap_in(&dir, "f", &sources.join("link-out"));
        swap_in(&dir, "p", &sources.join("fifo"));
        std::fs::rename(&dir_home, dir.join("d")).unwrap();
        swap_in(&dir, "f", &sources.join("file"));
        swap_in(&dir, "p", &sources.join("file"));
        std::fs::rename(dir.join("d"), &dir_home).unwrap();
        std::fs::rename(&dir_link, dir.join("d")).unwrap();
        std::fs::rename(dir.join("d"), &dir_link).unwrap();
        swaps += 8;
        // Leave the agent some of the two cores: still thousands of swaps a second.
        std::thread::sleep(Duration::from_micros(200));
    }
    swaps
}

/// `requests` cat/readat/stream requests on the raced names of `data` (a path in the
/// allocation), spread over the client threads.
fn hammer(agent: &Agent, alloc_id: &str, data: &str, requests: usize) -> Tally {
    let urls: Vec<String> = ["f", "d/f", "p"]
        .iter()
        .flat_map(|name| {
            let path = format!("{data}/{name}");
            [
                format!("/v1/client/fs/cat/{alloc_id}?path={path}"),
                format!("/v1/client/fs/readat/{alloc_id}?path={path}&offset=0&limit=100"),
                format!("/v1/client/fs/stream/{alloc_id}?path={path}&follow=false"),
            ]
        })
        .map(|url| agent.url(&url))
        .collect();
    let urls = Arc::new(urls);
    let threads: Vec<_> = (0..CLIENT_THREADS)
        .map(|thread| {
            let urls = Arc::clone(&urls);
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap();
                let mut tally = Tally::default();
                for i in (thread..requests).step_by(CLIENT_THREADS) {
                    record(&mut tally, &client, &urls[i % urls.len()]);
                    if tally.transport_failures > 0 {
                        break; // A hung agent fails the test now, not after thousands of timeouts.
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for thread in threads {
        total.add(thread.join().unwrap());
    }
    total
}

fn record(tally: &mut Tally, client: &reqwest::blocking::Client, url: &str) {
    let started = Instant::now();
    let outcome = client.get(url).send().and_then(|response| {
        let status = response.status().as_u16();
        response.bytes().map(|body| (status, body))
    });
    tally.slowest = tally.slowest.max(started.elapsed());
    tally.requests += 1;
    match outcome {
        Ok((status, body)) => {
            *tally.statuses.entry(status).or_default() += 1;
            let text = String::from_utf8_lossy(&body);
            if text.contains(MARKER) || text.contains(&STANDARD.encode(MARKER)) {
                tally.outside_bytes_seen += MARKER.len();
            }
        }
        Err(_) => tally.transport_failures += 1,
    }
}

/// Runs the workload in `dir` while the clients read it, and checks the outcome.
fn race(agent: &Agent, alloc_id: &str, dir: PathBuf, data: &str, requests: usize, outside_base: &Path) {
    let (outside_file, outside_dir) = outside_targets(outside_base);
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || swap_until(dir, outside_file, outside_dir, stop))
    };
    let started = Instant::now();
    let tally = hammer(agent, alloc_id, data, requests);
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("race on {alloc_id}: {tally:?}, {swaps} swaps in {:?}", started.elapsed());
    assert_eq!(tally.outside_bytes_seen, 0, "outside bytes were served: {tally:?}");
    assert_eq!(tally.transport_failures, 0, "requests failed or hung: {tally:?}");
    assert_eq!(tally.requests, requests);
    assert!(tally.slowest < CLIENT_TIMEOUT, "{tally:?}");
    assert!(tally.statuses.get(&200).is_some_and(|&ok| ok > 0), "nothing was served at all: {tally:?}");
    assert!(swaps > 0);
    agent.assert_healthy();
}

#[test]
fn local_disk_never_serves_outside_bytes_while_raced() {
    let fixture = Fixture::new();
    let agent = Agent::start(&["-config", fixture.config("").to_str().unwrap()]);
    let dir = fixture.alloc_root().join("alloc/data");
    race(&agent, ALLOC_ID, dir, "alloc/data", 20_000, fixture.dir.path());
}

#[test]
fn overlay_never_serves_outside_bytes_while_raced() {
    let fixture = Fixture::new();
    let lower = fixture.dir.path().join("layers/base");
    let upper = fixture.dir.path().join("upper");
    std::fs::create_dir_all(lower.join("alloc/data")).unwrap();
    std::fs::write(lower.join("alloc/data/f"), "from the lower layer").unwrap();
    std::fs::create_dir_all(upper.join(OVERLAY_ID).join("alloc/data")).unwrap();
    let config = fixture.config(&format!(
        "plugin \"overlay\" {{\n  config {{\n    lower_dirs = [{lower:?}]\n    upper_dir = {upper:?}\n  }}\n}}\n"
    ));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    let dir = upper.join(OVERLAY_ID).join("alloc/data");
    race(&agent, OVERLAY_ID, dir, "alloc/data", 5_000, fixture.dir.path());
}
