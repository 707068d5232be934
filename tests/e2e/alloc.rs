//! Allocation stats and garbage collection.

use std::time::{Duration, Instant};

use crate::harness::{ALLOC_ID, agent_with_fixture};

#[test]
fn alloc_stats_without_task_samples_are_nomads_empty_answer() {
    let (_fixture, agent) = agent_with_fixture("");
    let stats = agent.get(&format!("/v1/client/allocation/{ALLOC_ID}/stats"));
    assert_eq!(stats.status, 200);
    assert_eq!(
        stats.text(),
        r#"{"ResourceUsage":{"MemoryStats":{"RSS":0,"Cache":0,"Swap":0,"MappedFile":0,"Usage":0,"MaxUsage":0,"KernelUsage":0,"KernelMaxUsage":0,"Measured":null},"CpuStats":{"SystemMode":0.0,"UserMode":0.0,"TotalTicks":0.0,"ThrottledPeriods":0,"ThrottledTime":0,"Percent":0.0,"Measured":null},"DeviceStats":[]},"Tasks":{},"Timestamp":0}"#
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

#[test]
fn gc_deletes_a_terminal_allocation_once() {
    let (fixture, agent) = agent_with_fixture("");
    let url = format!("/v1/client/allocation/{ALLOC_ID}/gc");
    let first = agent.get(&url);
    assert_eq!((first.status, first.text().as_str(), first.header("content-type")), (200, "", None));
    assert!(!fixture.alloc_root().exists(), "the allocation directory is gone");
    let again = agent.get(&url);
    assert_eq!(
        (again.status, again.text().as_str()),
        (500, "No such allocation on client, or allocation not eligible for GC")
    );
    let cat = agent.get(&format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/logs/web.stdout.0"));
    assert_eq!((cat.status, cat.text()), (404, format!("state for allocation {ALLOC_ID} not found on client")));
    let unknown = agent.get("/v1/client/allocation/11111111-2222-4333-8444-555555555555/gc");
    assert_eq!(unknown.status, 404);
}

#[test]
fn client_gc_collects_every_terminal_allocation() {
    let (fixture, agent) = agent_with_fixture("");
    let second = fixture.alloc_dir().join("6fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e12");
    std::fs::create_dir_all(second.join("alloc/logs")).unwrap();
    let other_node = agent.get("/v1/client/gc?node_id=00000000-0000-4000-8000-000000000000");
    assert_eq!(other_node.status, 500);
    let gc = agent.get("/v1/client/gc");
    assert_eq!((gc.status, gc.text().as_str()), (200, ""));
    let deadline = Instant::now() + Duration::from_secs(10);
    while fixture.alloc_root().exists() || second.exists() {
        assert!(Instant::now() < deadline, "client GC did not collect the terminal allocations");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn gc_policy_keeps_at_most_max_allocs() {
    let (fixture, agent) = agent_with_fixture("client {\n  gc_interval = \"200ms\"\n  gc_max_allocs = 1\n}\n");
    let newer = fixture.alloc_dir().join("6fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e12");
    std::thread::sleep(Duration::from_millis(20));
    std::fs::create_dir_all(newer.join("alloc/logs")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fixture.alloc_root().exists() {
        assert!(Instant::now() < deadline, "the policy did not collect the oldest allocation");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(600));
    assert!(newer.exists(), "the newest allocation is kept");
    drop(agent);
}

#[test]
fn a_follow_on_a_collected_allocation_ends() {
    let (_fixture, agent) = agent_with_fixture("");
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let url = agent.url(&format!("/v1/client/fs/stream/{ALLOC_ID}?path=alloc/logs/web.stdout.0"));
    let follower = std::thread::spawn(move || client.get(url).send().and_then(|r| r.text()));
    std::thread::sleep(Duration::from_millis(500));
    let gc = agent.get(&format!("/v1/client/allocation/{ALLOC_ID}/gc"));
    assert_eq!(gc.status, 200, "{}", gc.text());
    let body = follower.join().unwrap().expect("the stream ends cleanly");
    assert!(body.contains("file deleted"), "{body}");
}
