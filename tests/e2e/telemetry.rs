//! `/v1/metrics` (JSON and Prometheus, Nomad's names), `/v1/agent/health`, and allocd's own
//! metrics counting misbehaving plugins.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{
    ALLOC_ID, Agent, Fixture, RealTaskCgroup, TaskCgroups, build_dir, eventually, is_root, random_alloc_id,
    skip_unless_ci,
};

/// The telemetry switches every test here turns on.
const PUBLISH: &str = "publish_node_metrics = true\n    publish_allocation_metrics = true\n    \
                       prometheus_metrics = true\n    disable_hostname = true";

/// An agent with a running cgroup task `web` in [`ALLOC_ID`], sampling every `interval`, with
/// `telemetry_keys` in its telemetry block.
pub fn agent_with_task(interval: &str, telemetry_keys: &str) -> (Fixture, TaskCgroups, Agent) {
    let fixture = Fixture::new();
    let cgroups = TaskCgroups::new(&fixture);
    cgroups.running(ALLOC_ID, "web");
    let block = cgroups.config("").replace(
        "collection_interval = \"100ms\"",
        &format!("collection_interval = {interval:?}\n    {telemetry_keys}"),
    );
    let config = fixture.config(&block);
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    (fixture, cgroups, agent)
}

/// The value of the series `name{labels}` whose label text contains every one of `labels`.
pub fn series(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = rest.rsplit_once(' ')?;
        let matches = (set.is_empty() || set.starts_with('{')) && labels.iter().all(|label| set.contains(label));
        matches.then(|| value.parse().unwrap())
    })
}

fn prometheus(agent: &Agent) -> String {
    let response = agent.get("/v1/metrics?format=prometheus");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    response.text()
}

/// The value of the JSON counter named `name` whose labels include `labels`.
pub fn counter(display: &serde_json::Value, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    let counters = display["Counters"].as_array()?;
    let found = counters.iter().find(|c| c["Name"] == name && labels.iter().all(|(k, v)| c["Labels"][*k] == *v))?;
    found["Count"].as_u64()
}

/// The JSON gauge named `name` whose labels include `labels`.
fn gauge(display: &serde_json::Value, name: &str, labels: &[(&str, &str)]) -> Option<serde_json::Value> {
    display["Gauges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["Name"] == name && labels.iter().all(|(k, v)| g["Labels"][*k] == *v))
        .cloned()
}

#[test]
fn nomads_host_and_task_metrics_in_both_forms() {
    let (_fixture, _cgroups, agent) = agent_with_task("100ms", PUBLISH);
    eventually(Duration::from_secs(10), "the task's sample", || {
        let text = prometheus(&agent);
        series(&text, "nomad_client_allocs_memory_rss", &[&format!("alloc_id=\"{ALLOC_ID}\""), "task=\"web\""])
            .map(|_| text)
    });
    let host = agent.get("/v1/client/stats").json();
    let node_id = std::fs::read_to_string(_fixture.dir.path().join("data/client/node-id")).unwrap();
    let text = prometheus(&agent);
    assert!(text.contains("# HELP nomad_client_host_memory_total nomad_client_host_memory_total\n# TYPE nomad_client_host_memory_total gauge\n"), "{text}");
    let total = series(&text, "nomad_client_host_memory_total", &[&format!("node_id=\"{node_id}\"")]).unwrap();
    let expected = host["Memory"]["Total"].as_f64().unwrap();
    assert!((total - expected).abs() / expected < 1e-6, "{total} vs {expected}");
    for name in ["available", "used", "free"] {
        assert!(series(&text, &format!("nomad_client_host_memory_{name}"), &[]).is_some(), "memory {name}");
    }
    let cpu0 = host["CPU"][0]["CPU"].as_str().unwrap();
    for name in ["total", "total_percent", "total_ticks", "user", "system", "idle"] {
        let found = series(&text, &format!("nomad_client_host_cpu_{name}"), &[&format!("cpu=\"{cpu0}\"")]);
        assert!(found.is_some(), "cpu {name}:\n{text}");
    }
    if let Some(disk) = host["DiskStats"].as_array().and_then(|disks| disks.first()) {
        let label = format!("disk=\"{}\"", disk["Device"].as_str().unwrap());
        for name in ["size", "used", "available", "used_percent", "inodes_percent"] {
            assert!(series(&text, &format!("nomad_client_host_disk_{name}"), &[&label]).is_some(), "disk {name}");
        }
    }
    assert!(series(&text, "nomad_client_uptime", &[]).is_some());
    let task = [format!("alloc_id=\"{ALLOC_ID}\""), "task=\"web\"".to_string()];
    let task: Vec<&str> = task.iter().map(String::as_str).collect();
    assert_eq!(series(&text, "nomad_client_allocs_memory_rss", &task), Some(4096.0), "the cgroup's anon bytes");
    for name in ["total_percent", "system", "user", "throttled_time", "throttled_periods", "total_ticks"] {
        assert!(series(&text, &format!("nomad_client_allocs_cpu_{name}"), &task).is_some(), "task cpu {name}");
    }
    let families = text.lines().filter(|line| line.starts_with("# TYPE nomad_")).count();
    let lines = text.lines().filter(|line| !line.starts_with('#')).count();
    println!("prometheus form: {families} nomad families, {lines} series lines, {} bytes", text.len());

    let response = agent.get("/v1/metrics");
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.text();
    assert!(body.starts_with("{\"Counters\":[{\"Count\":"), "{body}");
    let display = response.json();
    let timestamp = display["Timestamp"].as_str().unwrap();
    assert!(timestamp.ends_with(":00 +0000 UTC") || timestamp.ends_with("0 +0000 UTC"), "{timestamp}");
    assert_eq!(display["Points"], serde_json::json!([]));
    let total = gauge(&display, "nomad.client.host.memory.total", &[("node_id", &node_id)]).expect("memory total");
    assert!((total["Value"].as_f64().unwrap() - expected).abs() / expected < 1e-6);
    let rss = gauge(&display, "nomad.client.allocs.memory.rss", &[("alloc_id", ALLOC_ID), ("task", "web")]).unwrap();
    assert_eq!(rss["Value"], 4096.0);
    assert_eq!(rss["Labels"].as_object().unwrap().len(), 2);
    let names: Vec<&str> = display["Gauges"].as_array().unwrap().iter().map(|g| g["Name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "gauges sorted by name (then labels), as go-metrics displays them");
    assert!(agent.get("/v1/metrics?pretty").text().starts_with("{\n    \"Counters\": ["));
}

#[test]
fn the_telemetry_switches_gate_what_is_published() {
    let (_fixture, _cgroups, agent) = agent_with_task("100ms", "");
    let refused = agent.get("/v1/metrics?format=prometheus");
    assert_eq!((refused.status, refused.text().as_str()), (415, "Prometheus is not enabled"));
    let display = agent.get("/v1/metrics").json();
    let names: Vec<&str> = display["Gauges"].as_array().unwrap().iter().map(|g| g["Name"].as_str().unwrap()).collect();
    assert!(names.iter().all(|name| !name.starts_with("nomad.")), "nothing of Nomad's unless asked: {names:?}");
    let counters = display["Counters"].as_array().unwrap();
    assert!(counters.iter().any(|c| c["Name"] == "allocd.plugin.calls"), "allocd's own metrics always");
    let post = reqwest::blocking::Client::new().post(agent.url("/v1/metrics")).send().unwrap();
    assert_eq!(post.status().as_u16(), 405);
    assert_eq!(post.text().unwrap(), "Invalid method");

    let (_fixture, _cgroups, agent) = agent_with_task("100ms", "publish_node_metrics = true");
    let display = agent.get("/v1/metrics").json();
    let hostname = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let host_gauge = format!("nomad.{hostname}.client.host.memory.total");
    assert!(gauge(&display, &host_gauge, &[]).is_some(), "go-metrics puts the hostname into gauge names by default");
    assert!(display["Gauges"].as_array().unwrap().iter().all(|g| !g["Name"].as_str().unwrap().contains("allocs")));
}

/// The sampler is the only caller of metric plugins: with a 1 h interval, no scrape calls one.
/// (The storage backend is left out: the GC's periodic sweep may call it while a slow machine
/// scrapes.)
#[test]
fn scraping_calls_no_plugin() {
    let (_fixture, _cgroups, agent) = agent_with_task("1h", PUBLISH);
    let calls = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("allocd_plugin_calls{") && !l.contains("plugin=\"local-disk\""))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
            .sum()
    };
    let before = calls(&prometheus(&agent));
    let started = Instant::now();
    let scrapes = 200;
    for _ in 0..scrapes {
        prometheus(&agent);
        agent.get("/v1/metrics");
    }
    let per_scrape = started.elapsed() / (2 * scrapes);
    assert_eq!(calls(&prometheus(&agent)), before, "a scrape made a plugin call");
    assert!(before > 0.0, "the startup sample counted its calls");
    println!("scrape round trip (debug build, both forms): {per_scrape:?}");
}

fn misbehaving_library() -> String {
    format!("{:?}", build_dir().join("liballocd_plugin_misbehaving.so"))
}

#[test]
fn own_metrics_count_panics_and_timeouts() {
    let fixture = Fixture::new();
    let library = misbehaving_library();
    let config = fixture.config(&format!(
        "telemetry {{\n  prometheus_metrics = true\n}}\n\
         plugin \"panicky\" {{\n  path = {library}\n  config {{ mode = \"panic\" }}\n}}\n\
         plugin \"hung\" {{\n  path = {library}\n  timeout = \"300ms\"\n  config {{ mode = \"hang\" }}\n}}\n"
    ));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    let unknown = "/v1/client/fs/ls/00000000-0000-4000-8000-000000000000";
    agent.get(unknown);
    agent.get(unknown);
    let text = prometheus(&agent);
    assert!(series(&text, "allocd_plugin_panics", &["plugin=\"panicky\""]).unwrap() >= 1.0, "{text}");
    assert!(series(&text, "allocd_plugin_timeouts", &["plugin=\"hung\""]).unwrap() >= 1.0, "{text}");
    assert!(series(&text, "allocd_plugin_skipped", &["plugin=\"hung\""]).unwrap() >= 1.0, "the second call skips");
    assert!(series(&text, "allocd_plugin_call_seconds_count", &["plugin=\"local-disk\""]).unwrap() >= 1.0);
    assert!(text.contains("# TYPE allocd_plugin_call_seconds histogram\n"));
    assert!(series(&text, "allocd_plugin_call_seconds_bucket", &["plugin=\"local-disk\"", "le=\"+Inf\""]).is_some());
    assert!(series(&text, "allocd_http_requests", &["code=\"500\""]).unwrap() >= 2.0);
    for name in ["allocd_streams_open", "allocd_follow_watched_paths", "allocd_follow_polls", "allocd_gc_collections"] {
        assert_eq!(series(&text, name, &[]), Some(0.0), "{name}");
    }
    let display = agent.get("/v1/metrics").json();
    let sample =
        display["Samples"].as_array().unwrap().iter().find(|s| s["Labels"]["plugin"] == "local-disk").cloned().unwrap();
    for key in ["Count", "Max", "Mean", "Min", "Name", "Rate", "Stddev", "Sum"] {
        assert!(!sample[key].is_null(), "{key}: {sample}");
    }
}

#[test]
fn health_follows_plugin_failures_and_recoveries() {
    let fixture = Fixture::new();
    let flag = fixture.dir.path().join("failing");
    std::fs::write(&flag, "").unwrap();
    let config = fixture.config(&format!(
        "telemetry {{\n  collection_interval = \"200ms\"\n}}\n\
         plugin \"flaky\" {{\n  path = {}\n  config {{\n    mode = \"panic-metrics\"\n    while_exists = {flag:?}\n  }}\n}}\n",
        misbehaving_library()
    ));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    let failing = eventually(Duration::from_secs(10), "health to fail", || {
        let response = agent.get("/v1/agent/health");
        (response.status == 500).then_some(response)
    });
    let body: serde_json::Value = serde_json::from_slice(&failing.body).unwrap();
    assert_eq!(body["client"]["ok"], false);
    let message = body["client"]["message"].as_str().unwrap();
    assert!(message.contains("plugin \"flaky\" metric provider") && message.contains("panic"), "{message}");
    assert!(
        failing.text().starts_with("{\"client\":{\"ok\":false,\"message\":"),
        "Nomad's error text: {}",
        failing.text()
    );

    std::fs::remove_file(&flag).unwrap();
    let healthy = eventually(Duration::from_secs(15), "health to recover", || {
        let response = agent.get("/v1/agent/health");
        (response.status == 200).then_some(response)
    });
    assert_eq!(healthy.text(), r#"{"client":{"message":"ok","ok":true}}"#);
    assert_eq!(healthy.header("content-type"), Some("application/json"));
}

/// A Prometheus server on loopback; killed on drop.
struct Prometheus {
    child: std::process::Child,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Debian's `prometheus` scraping `target` (host:port) every second.
    fn start(dir: &std::path::Path, target: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: allocd\n    metrics_path: /v1/metrics\n    \
                 params:\n      format: [prometheus]\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("prometheus.err")).unwrap())
            .spawn()
            .expect("starting prometheus");
        Self { child, base: format!("http://127.0.0.1:{port}") }
    }

    /// The value of the one series `query` selects, once Prometheus has it.
    fn query(&self, query: &str) -> Option<f64> {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let response = client.get(format!("{}/api/v1/query", self.base)).query(&[("query", query)]).send().ok()?;
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().ok()?).ok()?;
        let result = body["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{query} selects one series: {body}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }
}

/// A real Prometheus scrapes the agent while a real cgroup task runs: Nomad's names for the
/// host and the task, with the values the agent's own endpoints show.
#[test]
fn a_real_prometheus_scrapes_nomads_names() {
    const TEST: &str = "a_real_prometheus_scrapes_nomads_names";
    if which("prometheus").is_none() {
        return skip_unless_ci(TEST, "prometheus is not installed");
    }
    let fixture = Fixture::new();
    let id = random_alloc_id();
    fixture.new_alloc(&id, "busy");
    let _task = match RealTaskCgroup::create(&id, "busy") {
        Ok(task) => task,
        Err(reason) if !is_root() => return skip_unless_ci(TEST, &format!("cannot create cgroups: {reason}")),
        Err(reason) => panic!("root could not create task cgroups: {reason}"),
    };
    let config = fixture.config(&format!(
        "telemetry {{\n    collection_interval = \"250ms\"\n    {PUBLISH}\n}}\nplugin \"cgroup\" {{}}\n"
    ));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    let stats_url = format!("/v1/client/allocation/{id}/stats");
    let rss_of = |stats: &serde_json::Value| stats["Tasks"]["busy"]["ResourceUsage"]["MemoryStats"]["RSS"].as_f64();
    eventually(Duration::from_secs(20), "the task's memory charged", || {
        rss_of(&agent.get(&stats_url).json()).filter(|rss| *rss > 1e6)
    });
    let prometheus = Prometheus::start(fixture.dir.path(), agent.base.strip_prefix("http://").unwrap());
    let memory = eventually(Duration::from_secs(60), "Prometheus to scrape the host memory", || {
        prometheus.query("nomad_client_host_memory_total")
    });
    let expected = agent.get("/v1/client/stats").json()["Memory"]["Total"].as_f64().unwrap();
    assert!((memory - expected).abs() / expected < 1e-6, "Prometheus has {memory}, the agent {expected}");
    let rss_query = format!("nomad_client_allocs_memory_rss{{alloc_id=\"{id}\",task=\"busy\"}}");
    let rss = eventually(Duration::from_secs(30), "the task's rss", || prometheus.query(&rss_query));
    let shown = rss_of(&agent.get(&stats_url).json()).unwrap();
    // The busy loop allocates once; the figures may differ by what the shell touched between samples.
    assert!((rss - shown).abs() / shown < 0.1, "Prometheus has rss {rss}, the allocation's stats {shown}");
    let up = prometheus.query("up{job=\"allocd\"}");
    assert_eq!(up, Some(1.0), "every scrape parsed");
}

/// `allocd.http.bytes_served` counts what leaves for the client, per endpoint: the bytes of an
/// identity answer, the compressed bytes of a gzip one.
#[test]
fn bytes_served_per_endpoint() {
    let (fixture, _cgroups, agent) = agent_with_task("1h", PUBLISH);
    let data = fixture.alloc_dir().join(ALLOC_ID).join("alloc/data");
    std::fs::create_dir_all(&data).unwrap();
    let text: String = (0..20_000).map(|i| format!("line {i} of a log\n")).collect();
    std::fs::write(data.join("log"), &text).unwrap();
    let served = |endpoint: &str| {
        let display = agent.get("/v1/metrics").json();
        counter(&display, "allocd.http.bytes_served", &[("endpoint", endpoint)]).unwrap_or(0)
    };
    let cat = format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/data/log");
    let before = served("client/fs/cat");
    assert_eq!(agent.get(&cat).body.len(), text.len());
    assert_eq!(served("client/fs/cat") - before, text.len() as u64);
    let compressed = crate::harness::get(&agent.url(&cat), &[("Accept-Encoding", "gzip")]);
    assert_eq!(compressed.header("content-encoding"), Some("gzip"));
    assert!(compressed.body.len() < text.len() / 4);
    assert_eq!(served("client/fs/cat") - before, (text.len() + compressed.body.len()) as u64);
    assert!(served("client/stats") == 0 && served("metrics") > 0, "only what was asked for");
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(program)).find(|path| path.is_file())
}

/// `allocd.follow.followers` counts the responses following a file while they last.
#[test]
fn followers_are_counted_while_they_follow() {
    let (_fixture, _cgroups, agent) = agent_with_task("1h", PUBLISH);
    let followers = || {
        let text = prometheus(&agent);
        series(&text, "allocd_follow_followers", &[]).unwrap()
    };
    assert_eq!(followers(), 0.0);
    let client = reqwest::blocking::Client::new();
    let follow = |path: &str| client.get(agent.url(path)).send().unwrap();
    let open = vec![
        follow(&format!("/v1/client/fs/stream/{ALLOC_ID}?path=alloc/logs/web.stdout.0&follow=true")),
        follow(&format!("/v1/client/fs/logs/{ALLOC_ID}?task=web&type=stdout&follow=true&plain=true")),
        follow(&format!("/v1/client/fs/logs/{ALLOC_ID}?task=web&type=stdout")),
    ];
    assert!(open.iter().all(|response| response.status() == 200));
    eventually(Duration::from_secs(10), "two followers", || (followers() == 2.0).then_some(()));
    drop(open);
    eventually(Duration::from_secs(10), "the followers to leave", || (followers() == 0.0).then_some(()));
}
