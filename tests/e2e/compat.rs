//! Plugin ABI compatibility across releases: a plugin built against the previous ABI minor
//! (`tests/plugins/abi-1.0`, built from a vendored copy of `allocd-plugin-abi` 1.0.0) loads
//! into this allocd and serves files and stats, while the methods ABI 1.1 added and it lacks
//! count as "not supported". The refusal of a plugin built against a *newer* ABI is in
//! `containment.rs`.

use std::process::Command;
use std::time::Duration;

use allocd_plugin_abi::ABI_VERSION;

use crate::harness::{ALLOC_ID, Agent, Fixture, allocd_bin, build_dir, eventually, skip_unless_ci};

#[test]
fn a_plugin_pinned_to_the_previous_abi_minor_serves_files_and_stats() {
    let test = "a_plugin_pinned_to_the_previous_abi_minor_serves_files_and_stats";
    let library = build_dir().join("liballocd_plugin_pinned_abi_1_0.so");
    if !library.exists() {
        let reason = format!(
            "{} is missing; build it with \
             `cargo build --manifest-path tests/plugins/abi-1.0/Cargo.toml --target-dir target`",
            library.display()
        );
        return skip_unless_ci(test, &reason);
    }

    let output = Command::new(allocd_bin()).args(["plugin", "inspect"]).arg(&library).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains(&format!("plugin ABI:      1.0.0 (this allocd: {ABI_VERSION})")), "{text}");
    assert!(text.contains("optional:        MetricsProvider.task_labels (ABI 1.1): not provided"), "{text}");
    assert!(text.contains("optional:        StorageBackend.alloc_index (ABI 1.1): not provided"), "{text}");

    let fixture = Fixture::new();
    let status_file = fixture.dir.path().join("status.json");
    let status = serde_json::json!({ "allocs": { ALLOC_ID: { "web": { "rss_bytes": 7_340_032 } } } });
    std::fs::write(&status_file, status.to_string()).unwrap();
    let config = fixture.config_text(&format!(
        "data_dir = {data:?}\ntelemetry {{\n  collection_interval        = \"200ms\"\n  publish_allocation_metrics = true\n  disable_hostname           = true\n}}\nplugin \"host-metrics\" {{}}\n\
         plugin \"pinned-abi-1-0\" {{\n  path = {library:?}\n  config {{\n    alloc_dir   = {alloc:?}\n    status_file = {status_file:?}\n  }}\n}}\n",
        data = fixture.dir.path().join("data"),
        alloc = fixture.alloc_dir(),
    ));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);

    let listing = agent.get(&format!("/v1/client/fs/ls/{ALLOC_ID}?path=/alloc/logs"));
    assert_eq!(listing.status, 200, "{}", listing.text());
    let names: Vec<String> =
        listing.json().as_array().unwrap().iter().map(|e| e["Name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["web.stderr.0", "web.stdout.0"]);
    let cat = agent.get(&format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/logs/web.stdout.0"));
    assert_eq!((cat.status, cat.text().as_str()), (200, "Hello from the other side"));

    let stats = eventually(Duration::from_secs(10), "the pinned plugin's sample", || {
        let stats = agent.get(&format!("/v1/client/allocation/{ALLOC_ID}/stats"));
        (stats.status == 200).then(|| stats.json())
    });
    assert_eq!(stats["Tasks"]["web"]["ResourceUsage"]["MemoryStats"]["RSS"], 7_340_032, "{stats}");

    // Its task metrics carry the labels allocd knows without the 1.1 method, and no others.
    let metrics = agent.get("/v1/metrics").json();
    let rss = metrics["Gauges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["Name"] == "nomad.client.allocs.memory.rss" && g["Labels"]["alloc_id"] == ALLOC_ID)
        .cloned()
        .expect("the task's rss gauge");
    assert_eq!(rss["Labels"], serde_json::json!({ "alloc_id": ALLOC_ID, "task": "web" }), "{rss}");
    agent.assert_healthy();
}
