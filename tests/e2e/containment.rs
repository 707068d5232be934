//! Failure containment: a plugin that panics, hangs, rejects its config or was built against
//! a newer plugin ABI costs a request (or refuses startup in one clear line), never the agent.
//! Also the out-of-tree example plugin (`examples/driver-metrics`) loaded by `path =`.
//!
//! The purpose-built plugins live in `tests/plugins/{misbehaving,foreign-version}`; the
//! workspace build puts them beside the binary as `liballocd_plugin_<name>.so`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use allocd_plugin_abi::ABI_VERSION;

use crate::harness::{ALLOC_ID, Agent, Fixture, Response, agent_with_fixture, allocd_bin, build_dir, skip_unless_ci};

/// The library of plugin `name` in the build output directory.
fn library(name: &str) -> PathBuf {
    build_dir().join(format!("liballocd_plugin_{}.so", name.replace('-', "_")))
}

/// A `plugin "misbehaving"` block in `mode`, plus extra settings (`timeout = ...`).
fn misbehaving(mode: &str, settings: &str) -> String {
    format!("plugin \"misbehaving\" {{\n{settings}\n  config {{ mode = {mode:?} }}\n}}\n")
}

/// Runs `allocd agent -config <text>` expecting a startup failure; returns the last stderr line.
fn startup_error(fixture: &Fixture, config: &Path) -> String {
    let output = Command::new(allocd_bin())
        .args(["agent", "-config", config.to_str().unwrap(), "-http-port", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "allocd started with {}:\n{stderr}", fixture.dir.path().display());
    let last = stderr.trim_end().lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("allocd: "), "{stderr}");
    last
}

/// GET with a client-side deadline, so a request the agent never answers fails the test
/// instead of stalling it.
fn get_within(agent: &Agent, path: &str, deadline: Duration) -> Result<Response, String> {
    let client = reqwest::blocking::Client::builder().no_gzip().timeout(deadline).build().unwrap();
    let response = client.get(agent.url(path)).send().map_err(|e| format!("GET {path}: {e}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().map_err(|e| format!("GET {path}: {e}"))?.to_vec();
    Ok(Response { status, headers, body })
}

/// The agent process has not exited.
fn assert_alive(agent: &mut Agent) {
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent exited");
}

/// Sends SIGTERM; `Some(status)` if the agent exits within `limit`.
fn terminate_within(agent: &mut Agent, limit: Duration) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = agent.child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// An allocation ID that no backend holds.
const UNKNOWN_ID: &str = "0b3d7c51-93d4-4c1e-9d0e-3a4c2f1e8b77";

#[test]
fn a_panicking_storage_plugin_fails_requests_not_the_agent() {
    let (_fixture, mut agent) = agent_with_fixture(&misbehaving("panic", ""));
    // local-disk holds ALLOC_ID and answers for it; the panicking backend costs nothing there.
    for path in [
        format!("/v1/client/fs/ls/{ALLOC_ID}?path=alloc/logs"),
        format!("/v1/client/fs/stat/{ALLOC_ID}?path=alloc/logs/web.stdout.0"),
        format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/logs/web.stdout.0"),
        format!("/v1/client/allocation/{ALLOC_ID}/stats"),
    ] {
        let response = agent.get(&path);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
    }
    // An ID no healthy backend holds might be the panicking backend's: 500, clearly.
    for _ in 0..3 {
        let response = agent.get(&format!("/v1/client/fs/ls/{UNKNOWN_ID}?path=/"));
        let text = response.text();
        assert_eq!(response.status, 500, "{text}");
        assert!(text.contains("plugin \"misbehaving\"") && text.contains("panicked"), "{text}");
        assert!(text.contains("alloc_info"), "the panic message is passed on: {text}");
    }
    assert_alive(&mut agent);
    // What does not reach the plugin is untouched.
    assert_eq!(agent.get("/v1/client/stats").status, 200);
    let bad_id = agent.get("/v1/client/fs/ls/not-a-uuid");
    assert_eq!(bad_id.status, 400, "{}", bad_id.text());
    assert_alive(&mut agent);
}

/// A panicking and a hanging backend beside local-disk: after the hung backend's first timeout,
/// local-disk's allocations answer 200 promptly (a hang detector: the bound is generous), and
/// IDs that no healthy backend holds answer 500 promptly.
#[test]
fn healthy_backends_answer_promptly_beside_panicking_and_hanging_ones() {
    let fixture = Fixture::new();
    let hung = format!(
        "plugin \"hung\" {{\n  path = {:?}\n  timeout = \"5s\"\n  config {{ mode = \"hang\" }}\n}}\n",
        library("misbehaving")
    );
    let config = fixture.config(&format!("{}{hung}", misbehaving("panic", "")));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    let ls = format!("/v1/client/fs/ls/{ALLOC_ID}?path=alloc/logs");
    let first = get_within(&agent, &ls, Duration::from_secs(10)).expect("the first lookup waits for one timeout");
    assert_eq!(first.status, 200, "{}", first.text());

    let mut slowest = Duration::ZERO;
    // Long enough to cover several probes of the hung backend (backoff 1 s, then 2 s).
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        for path in [
            ls.clone(),
            format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/logs/web.stdout.0"),
            format!("/v1/client/fs/stream/{ALLOC_ID}?path=alloc/logs/web.stdout.0&follow=false"),
            format!("/v1/client/fs/logs/{ALLOC_ID}?task=web&type=stdout&plain=true"),
        ] {
            let started = Instant::now();
            let response = get_within(&agent, &path, Duration::from_secs(10)).unwrap();
            slowest = slowest.max(started.elapsed());
            assert_eq!(response.status, 200, "{path}: {}", response.text());
        }
        let started = Instant::now();
        let unknown = get_within(&agent, &format!("/v1/client/fs/ls/{UNKNOWN_ID}?path=/"), Duration::from_secs(10));
        let unknown = unknown.unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(unknown.status, 500, "{}", unknown.text());
        assert!(unknown.text().contains("plugin \"misbehaving\""), "{}", unknown.text());
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("slowest lookup after the first timeout: {slowest:?}");
    // Half the plugin's 5 s timeout: a lookup that waited for the hung backend would take it all.
    assert!(slowest < Duration::from_millis(2500), "a lookup waited {slowest:?} for an unhealthy backend");
    let log = agent.terminate_and_collect_stderr();
    let reports = log.lines().filter(|line| line.contains("hung") && line.contains("fail at once")).count();
    assert_eq!(reports, 1, "the hung backend is reported once:\n{log}");
}

#[test]
fn a_panicking_metric_provider_leaves_stats_to_the_others() {
    let fixture = Fixture::new();
    // Listed first, so the sampler asks it for the host sample before host-metrics.
    let config = fixture.config_text(&format!(
        "data_dir = {data:?}\ntelemetry {{ collection_interval = \"200ms\" }}\n{misbehaving}plugin \"host-metrics\" {{}}\nplugin \"local-disk\" {{\n  config {{ alloc_dir = {alloc:?} }}\n}}\n",
        data = fixture.dir.path().join("data"),
        alloc = fixture.alloc_dir(),
        misbehaving = misbehaving("panic-metrics", ""),
    ));
    let mut agent = Agent::start(&["-config", config.to_str().unwrap()]);
    let timestamp = |agent: &Agent| {
        let stats = agent.get("/v1/client/stats");
        assert_eq!(stats.status, 200, "{}", stats.text());
        stats.json()["Timestamp"].as_i64().unwrap()
    };
    let first = timestamp(&agent);
    let deadline = Instant::now() + Duration::from_secs(10);
    while timestamp(&agent) == first {
        assert!(Instant::now() < deadline, "the sampler stopped after the plugin panicked");
        std::thread::sleep(Duration::from_millis(100));
    }
    let alloc_stats = agent.get(&format!("/v1/client/allocation/{ALLOC_ID}/stats"));
    assert_eq!(alloc_stats.status, 200, "{}", alloc_stats.text());
    agent.assert_healthy();
    assert_alive(&mut agent);
}

#[test]
fn a_hanging_plugin_call_times_out_naming_the_plugin() {
    let (_fixture, mut agent) = agent_with_fixture(&misbehaving("hang", "  timeout = \"1s\""));
    let path = format!("/v1/client/fs/ls/{UNKNOWN_ID}?path=/");
    // The first call waits for the timeout; later ones fail at once while the plugin is unhealthy.
    for (attempt, slowest) in [(1, Duration::from_secs(5)), (2, Duration::from_secs(1))] {
        let started = Instant::now();
        let response =
            get_within(&agent, &path, Duration::from_secs(10)).expect("the agent answers a request whose plugin hangs");
        let text = response.text();
        assert_eq!(response.status, 500, "{text}");
        assert!(text.contains("plugin \"misbehaving\"") && text.contains("timed out"), "{text}");
        let took = started.elapsed();
        assert!(took < slowest, "attempt {attempt} answered after {took:?}");
        if attempt == 1 {
            assert!(took >= Duration::from_millis(900), "answered after {took:?}");
        }
    }
    let started = Instant::now();
    assert_eq!(agent.get("/v1/client/stats").status, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "other endpoints do not wait for the plugin");
    assert_alive(&mut agent);
}

/// One allocation whose calls hang (a file on a hung mount) pins one permit, not the backend:
/// its later requests fail at once, and the backend keeps answering for everything else.
#[test]
fn an_allocation_on_a_hung_mount_pins_one_permit_not_the_backend() {
    let settings = "  timeout = \"1s\"\n  max_concurrency = 2";
    let block = format!("plugin \"misbehaving\" {{\n{settings}\n  config {{ hang_for = {UNKNOWN_ID:?} }}\n}}\n");
    let (_fixture, mut agent) = agent_with_fixture(&block);
    let stuck = format!("/v1/client/fs/ls/{UNKNOWN_ID}?path=/");
    let other = "/v1/client/fs/ls/7d1c0a2e-5b3f-4e6a-9c8d-1f2e3a4b5c6d?path=/";
    let first = get_within(&agent, &stuck, Duration::from_secs(10)).unwrap();
    assert_eq!(first.status, 500, "{}", first.text());
    assert!(first.text().contains("timed out"), "{}", first.text());
    // Past two backoffs: the backend is probed and healed meanwhile, and the stuck allocation
    // is asked again and again; with a permit pinned per request, two would exhaust it.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let started = Instant::now();
        let again = get_within(&agent, &stuck, Duration::from_secs(10)).unwrap();
        assert_eq!(again.status, 500, "{}", again.text());
        assert!(started.elapsed() < Duration::from_millis(900), "waited {:?}: {}", started.elapsed(), again.text());
        let _ = get_within(&agent, other, Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let started = Instant::now();
    let answered = get_within(&agent, other, Duration::from_secs(10)).unwrap();
    assert_eq!(answered.status, 404, "the backend still answers for the rest: {}", answered.text());
    assert!(started.elapsed() < Duration::from_millis(900), "waited {:?}", started.elapsed());
    let held = get_within(&agent, &stuck, Duration::from_secs(10)).unwrap();
    assert!(held.text().contains("has not returned"), "{}", held.text());
    assert_eq!(agent.get(&format!("/v1/client/fs/ls/{ALLOC_ID}?path=alloc/logs")).status, 200);
    assert_alive(&mut agent);
}

/// `max_concurrency` bounds the calls a hung plugin can pin; once they are all pinned, probes
/// wait for a permit in the background and requests still fail within the timeout.
#[test]
fn a_hung_plugin_with_no_free_permits_still_times_out() {
    let (_fixture, agent) = agent_with_fixture(&misbehaving("hang", "  timeout = \"1s\"\n  max_concurrency = 1"));
    let path = format!("/v1/client/fs/ls/{UNKNOWN_ID}?path=/");
    for attempt in 1..=3 {
        let response = get_within(&agent, &path, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("attempt {attempt}: no answer: {e}"));
        assert_eq!(response.status, 500, "attempt {attempt}: {}", response.text());
        assert!(response.text().contains("timed out"), "attempt {attempt}: {}", response.text());
        // Past the first backoff, so a later attempt starts a probe.
        std::thread::sleep(Duration::from_millis(1200));
    }
    agent.assert_healthy();
}

#[test]
fn an_agent_with_a_hung_plugin_call_still_shuts_down() {
    let (_fixture, mut agent) = agent_with_fixture(&misbehaving("hang", "  timeout = \"1s\""));
    let response = get_within(&agent, &format!("/v1/client/fs/ls/{UNKNOWN_ID}?path=/"), Duration::from_secs(10));
    assert_eq!(response.map(|r| r.status), Ok(500));
    let status = terminate_within(&mut agent, Duration::from_secs(10)).expect("SIGTERM ends the agent");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_plugin_built_against_a_newer_abi_is_refused_in_one_line() {
    let fixture = Fixture::new();
    let config = fixture.config("plugin \"foreign-version\" {}\n");
    let line = startup_error(&fixture, &config);
    assert!(line.contains("plugin \"foreign-version\""), "{line}");
    assert!(line.contains("liballocd_plugin_foreign_version.so"), "{line}");
    let versions = format!("built against plugin ABI 1.99.0, newer than this allocd's {ABI_VERSION}");
    assert!(line.contains(&versions), "{line}");
}

#[test]
fn plugin_inspect_explains_a_foreign_plugin() {
    let output =
        Command::new(allocd_bin()).args(["plugin", "inspect"]).arg(library("foreign-version")).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "inspect must fail for an unloadable plugin:\n{text}");
    assert!(text.contains(&format!("plugin ABI:      1.99.0 (this allocd: {ABI_VERSION})")), "{text}");
    assert!(text.contains("loadable:        no:") && text.contains("built against plugin ABI 1.99.0, newer"), "{text}");

    let output = Command::new(allocd_bin()).args(["plugin", "inspect"]).arg(library("misbehaving")).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("kinds:           metrics, storage") && text.contains("loadable:        yes"), "{text}");
    assert!(text.contains(&format!("plugin ABI:      {ABI_VERSION} (this allocd: {ABI_VERSION})")), "{text}");
    assert!(text.contains("optional:        MetricsProvider.task_labels (ABI 1.1): provided"), "{text}");
    assert!(text.contains("optional:        StorageBackend.alloc_index (ABI 1.1): provided"), "{text}");
}

#[test]
fn a_plugin_that_rejects_its_config_stops_startup() {
    let fixture = Fixture::new();
    let config = fixture.config(&misbehaving("reject", ""));
    let line = startup_error(&fixture, &config);
    assert!(line.contains("plugin \"misbehaving\""), "{line}");
    assert!(line.contains("rejected its config: rejecting config on purpose"), "{line}");
}

/// The example operators copy (`examples/driver-metrics`), built out of tree and loaded by path.
#[test]
fn the_out_of_tree_example_plugin_reports_task_usage() {
    let library = library("driver-metrics");
    if !library.exists() {
        let reason = format!(
            "{} is missing; build it with \
             `cargo build --manifest-path examples/driver-metrics/Cargo.toml --target-dir target`",
            library.display()
        );
        return skip_unless_ci("the_out_of_tree_example_plugin_reports_task_usage", &reason);
    }
    let fixture = Fixture::new();
    let status_file = fixture.dir.path().join("driver-status.json");
    let write_status = |rss: u64| {
        let status = serde_json::json!({ "allocs": { ALLOC_ID: { "web": {
            "state": "running",
            "rss_bytes": rss,
            "cpu_percent": 12.5,
            "pids": [{ "pid": 4242, "rss_bytes": rss, "cpu_percent": 12.5 }]
        }}}});
        // Write-then-rename, as the README tells driver authors: readers never see half a file.
        let partial = status_file.with_extension("tmp");
        std::fs::write(&partial, status.to_string()).unwrap();
        std::fs::rename(&partial, &status_file).unwrap();
    };
    write_status(52_428_800);
    let config = fixture.config(&format!(
        "telemetry {{ collection_interval = \"200ms\" }}\nplugin \"driver-metrics\" {{\n  path = {library:?}\n  config {{\n    status_file      = {status_file:?}\n    cpu_mhz_per_core = 2000\n  }}\n}}\n"
    ));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);

    let stats = agent.get(&format!("/v1/client/allocation/{ALLOC_ID}/stats"));
    assert_eq!(stats.status, 200, "{}", stats.text());
    let stats = stats.json();
    let web = &stats["Tasks"]["web"]["ResourceUsage"];
    assert_eq!(web["MemoryStats"]["RSS"], 52_428_800, "{stats}");
    assert_eq!(web["MemoryStats"]["Measured"], serde_json::json!(["RSS"]), "{stats}");
    assert_eq!(web["CpuStats"]["Percent"], 12.5, "{stats}");
    assert_eq!(web["CpuStats"]["TotalTicks"], 250.0, "{stats}");
    assert_eq!(web["CpuStats"]["Measured"], serde_json::json!(["Percent"]), "{stats}");
    assert_eq!(stats["Tasks"]["web"]["Pids"]["4242"]["MemoryStats"]["RSS"], 52_428_800, "{stats}");
    assert_eq!(stats["ResourceUsage"]["MemoryStats"]["RSS"], 52_428_800, "a running task counts in the total");
    assert!(stats["Timestamp"].as_i64().unwrap() > 0, "{stats}");

    // The plugin reads the driver's file on every sample.
    write_status(1_048_576);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = agent.get(&format!("/v1/client/allocation/{ALLOC_ID}/stats")).json();
        let rss = stats["Tasks"]["web"]["ResourceUsage"]["MemoryStats"]["RSS"].clone();
        if rss == 1_048_576 {
            break;
        }
        assert!(Instant::now() < deadline, "the new status never showed: RSS {rss}");
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.assert_healthy();
}
