//! The overlay backend through every fs endpoint, beside local-disk.

use std::io::Write;
use std::time::Duration;

use crate::harness::{ALLOC_ID, Agent, Fixture, TaskCgroups, eventually};

const OVERLAY_ID: &str = "7ab1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e13";

fn overlay_agent() -> (Fixture, Agent) {
    let fixture = Fixture::new();
    let base = fixture.dir.path().join("layers/base");
    let app = fixture.dir.path().join("layers/app");
    let upper = fixture.dir.path().join("upper");
    for dir in [
        base.join("web/local"),
        base.join("alloc/logs"),
        app.join("web/local"),
        upper.join(OVERLAY_ID).join("alloc/logs"),
    ] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(base.join("web/local/base.txt"), "from base").unwrap();
    std::fs::write(base.join("web/local/shadowed.txt"), "base version").unwrap();
    std::fs::write(base.join("web/local/removed.txt"), "should be hidden").unwrap();
    std::fs::write(app.join("web/local/shadowed.txt"), "app version").unwrap();
    std::fs::write(app.join("web/local/.wh.removed.txt"), "").unwrap();
    std::fs::write(upper.join(OVERLAY_ID).join("alloc/logs/web.stdout.0"), "upper log\n").unwrap();
    let cgroups = TaskCgroups::new(&fixture);
    cgroups.running(OVERLAY_ID, "web");
    let config = fixture.config(&format!(
        "plugin \"overlay\" {{\n  config {{\n    lower_dirs = [{:?}, {:?}]\n    upper_dir = {:?}\n  }}\n}}\n{}",
        app,
        base,
        upper,
        cgroups.config("")
    ));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    (fixture, agent)
}

#[test]
fn overlay_allocations_are_served_through_the_merged_view() {
    let (fixture, agent) = overlay_agent();
    let id = OVERLAY_ID;
    let listing = agent.get(&format!("/v1/client/fs/ls/{id}?path=web/local")).json();
    let names: Vec<&str> = listing.as_array().unwrap().iter().map(|e| e["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["base.txt", "shadowed.txt"], "whiteouts hide entries and never show");
    assert_eq!(agent.get(&format!("/v1/client/fs/cat/{id}?path=web/local/shadowed.txt")).text(), "app version");
    assert_eq!(
        agent.get(&format!("/v1/client/fs/readat/{id}?path=web/local/base.txt&offset=5&limit=4")).text(),
        "base"
    );
    assert_eq!(agent.get(&format!("/v1/client/fs/stat/{id}?path=web/local/removed.txt")).status, 404);
    assert_eq!(agent.get(&format!("/v1/client/fs/stat/{id}?path=web/local/base.txt")).json()["Size"], 9);
    assert_eq!(agent.get(&format!("/v1/client/fs/ls/{id}?path=../..")).status, 500);
    let logs = agent.get(&format!("/v1/client/fs/logs/{id}?task=web&type=stdout&plain=true"));
    assert_eq!(logs.text(), "upper log\n");
    // The local-disk allocation is still served beside it.
    assert_eq!(agent.get(&format!("/v1/client/fs/ls/{ALLOC_ID}")).status, 200);

    // Following a file of the writable layer.
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let url = agent.url(&format!("/v1/client/fs/logs/{id}?task=web&type=stdout&plain=true&follow=true"));
    let log = fixture.dir.path().join("upper").join(id).join("alloc/logs/web.stdout.0");
    let mut response = client.get(url).send().unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::OpenOptions::new().append(true).open(log).unwrap().write_all(b"appended\n").unwrap();
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("appended") {
        let n = std::io::Read::read(&mut response, &mut buf).unwrap();
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    writer.join().unwrap();

    // GC (once the task has exited) removes only the allocation's upper layer.
    drop(response);
    TaskCgroups::new(&fixture).exited(id, "web");
    eventually(Duration::from_secs(10), "the allocation to be collected", || {
        (agent.get(&format!("/v1/client/allocation/{id}/gc")).status == 200).then_some(())
    });
    assert!(!fixture.dir.path().join("upper").join(id).exists());
    assert!(fixture.dir.path().join("layers/base/web/local/base.txt").exists(), "shared layers are never deleted");
}

#[test]
fn the_same_allocation_in_two_backends_is_a_clear_error() {
    let (fixture, agent) = overlay_agent();
    std::fs::create_dir_all(fixture.dir.path().join("upper").join(ALLOC_ID)).unwrap();
    let response = agent.get(&format!("/v1/client/fs/ls/{ALLOC_ID}"));
    assert_eq!(response.status, 500);
    assert_eq!(
        response.text(),
        format!("allocation \"{ALLOC_ID}\" is held by more than one storage backend: local-disk, overlay")
    );
}
