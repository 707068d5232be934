//! Allocation stats.

use std::time::Duration;

use crate::harness::{ALLOC_ID, Agent, Fixture, TaskCgroups, agent_with_fixture, eventually};
use crate::telemetry::counter;

#[test]
fn alloc_stats_without_task_samples_are_nomads_empty_answer() {
    let (_fixture, agent) = agent_with_fixture("");
    let stats = agent.get(&format!("/v1/client/allocation/{ALLOC_ID}/stats"));
    assert_eq!(stats.status, 200);
    assert_eq!(
        stats.text(),
        r#"{"ResourceUsage":{"CpuStats":{"Measured":null,"Percent":0.0,"SystemMode":0.0,"ThrottledPeriods":0,"ThrottledTime":0,"TotalTicks":0.0,"UserMode":0.0},"DeviceStats":[],"MemoryStats":{"Cache":0,"KernelMaxUsage":0,"KernelUsage":0,"MappedFile":0,"MaxUsage":0,"Measured":null,"RSS":0,"Swap":0,"Usage":0}},"Tasks":{},"Timestamp":0}"#
    );
    let unknown = "11111111-2222-4333-8444-555555555555";
    for (url, status, body) in [
        (format!("/v1/client/allocation/{unknown}/stats"), 404, format!("Unknown allocation \"{unknown}\"")),
        (format!("/v1/client/allocation/{ALLOC_ID}/stats/x"), 404, "resource not found".to_string()),
        (format!("/v1/client/allocation/{ALLOC_ID}/frob"), 404, "resource not found".to_string()),
        (format!("/v1/client/allocation/{ALLOC_ID}"), 404, "resource not found".to_string()),
    ] {
        let response = agent.get(&url);
        assert_eq!((response.status, response.text()), (status, body), "GET {url}");
    }
}

/// How many calls the `local-disk` storage plugin has served.
fn storage_calls(agent: &Agent) -> u64 {
    counter(&agent.get("/v1/metrics").json(), "allocd.plugin.calls", &[("plugin", "local-disk")]).unwrap()
}

/// An agent over the fixture with a running cgroup task `web`, sampling every `interval`, and
/// no GC sweep (which lists the backend) during the test.
fn indexed_agent(interval: &str) -> (Fixture, TaskCgroups, Agent) {
    let fixture = Fixture::new();
    let cgroups = TaskCgroups::new(&fixture);
    cgroups.running(ALLOC_ID, "web");
    let block = cgroups
        .config("  gc_interval = \"1h\"\n")
        .replace("collection_interval = \"100ms\"", &format!("collection_interval = {interval:?}"));
    let agent = Agent::start(&["-config", fixture.config(&block).to_str().unwrap()]);
    (fixture, cgroups, agent)
}

/// Allocation stats of an allocation the backends' index holds ask no storage plugin: not
/// the compact answer, nor `?pretty`, nor one task's.
#[test]
fn indexed_alloc_stats_call_no_storage_plugin() {
    let (_fixture, _cgroups, agent) = indexed_agent("1h");
    let before = storage_calls(&agent);
    let url = format!("/v1/client/allocation/{ALLOC_ID}/stats");
    for query in ["", "?pretty", "?task=web"] {
        for _ in 0..50 {
            let stats = agent.get(&format!("{url}{query}"));
            assert_eq!(stats.status, 200, "{}", stats.text());
            assert!(stats.json()["Tasks"].get("web").is_some(), "{}", stats.text());
        }
    }
    assert_eq!(storage_calls(&agent), before, "an indexed allocation's stats called the storage plugin");
    assert!(before > 0, "the startup listing counted its calls");
}

/// The index never hides an allocation nor keeps a deleted one: one created after the last
/// listing is found at once (the per-request lookup), and one deleted behind the agent's back
/// stops being served at once after any other endpoint heard "not found", and by the next
/// round of samples in any case.
#[test]
fn the_index_follows_allocations_created_and_deleted_behind_its_back() {
    let (fixture, _cgroups, agent) = indexed_agent("1h");
    let new = "6fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e12";
    fixture.add_alloc(new, "api", b"");
    let stats = agent.get(&format!("/v1/client/allocation/{new}/stats"));
    assert_eq!((stats.status, stats.json()["Tasks"].clone()), (200, serde_json::json!({})), "a new allocation");

    let unknown = |id: &str| (404, format!("Unknown allocation \"{id}\""));
    std::fs::remove_dir_all(fixture.alloc_root()).unwrap();
    let ls = agent.get(&format!("/v1/client/fs/ls/{ALLOC_ID}"));
    assert_eq!((ls.status, ls.text()), unknown(ALLOC_ID), "ls of a deleted allocation");
    let stats = agent.get(&format!("/v1/client/allocation/{ALLOC_ID}/stats"));
    assert_eq!((stats.status, stats.text()), unknown(ALLOC_ID), "the stale entry was dropped");

    let (sampled, _cgroups, agent) = indexed_agent("100ms");
    std::fs::remove_dir_all(sampled.alloc_root()).unwrap();
    eventually(Duration::from_secs(30), "the deleted allocation to leave the index", || {
        let stats = agent.get(&format!("/v1/client/allocation/{ALLOC_ID}/stats"));
        ((stats.status, stats.text()) == unknown(ALLOC_ID)).then_some(())
    });
}
