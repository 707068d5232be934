//! `/v1/allocations` and `/v1/allocation/:id`: statuses from the task evidence, prefixes.

use std::time::Duration;

use crate::harness::{ALLOC_ID, Agent, Fixture, TaskCgroups, eventually};

/// Exited after it was seen running.
pub const DONE_ID: &str = "5fb1a5c8-9999-4b52-8a7e-0d3d1a7f9e22";
/// No provider has ever seen it.
pub const UNSEEN_ID: &str = "7c0ffee0-1111-4222-8333-944455556666";

/// An agent over three allocations: `web` of [`ALLOC_ID`] running, `job` of [`DONE_ID`]
/// complete, [`UNSEEN_ID`] unknown; `extra` HCL is added to the config.
pub fn three_allocs(extra: &str) -> (Fixture, TaskCgroups, Agent) {
    let fixture = Fixture::new();
    fixture.add_alloc(DONE_ID, "job", b"done\n");
    fixture.add_alloc(UNSEEN_ID, "side", b"");
    let cgroups = TaskCgroups::new(&fixture);
    cgroups.running(ALLOC_ID, "web");
    cgroups.running(DONE_ID, "job");
    let config = fixture.config(&format!("{}{extra}", cgroups.config("")));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    let status = |id: &str| agent.get(&format!("/v1/allocation/{id}")).json()["ClientStatus"].clone();
    eventually(Duration::from_secs(10), "the job seen running", || (status(DONE_ID) == "running").then_some(()));
    cgroups.exited(DONE_ID, "job");
    eventually(Duration::from_secs(10), "the job complete", || (status(DONE_ID) == "complete").then_some(()));
    (fixture, cgroups, agent)
}

#[test]
fn list_and_prefix_with_live_exited_and_unknown_allocations() {
    let (_fixture, _cgroups, agent) = three_allocs("");
    let list = agent.get("/v1/allocations").json();
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|s| s["ID"].as_str().unwrap()).collect();
    assert_eq!(ids, [ALLOC_ID, DONE_ID, UNSEEN_ID], "sorted by ID");
    let statuses: Vec<&str> = list.as_array().unwrap().iter().map(|s| s["ClientStatus"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["running", "complete", "unknown"]);
    let done = &list[1];
    assert_eq!(done["TaskStates"]["job"]["State"], "dead");
    assert_eq!(done["TaskStates"]["job"]["Failed"], false);
    assert!(done["ModifyTime"].as_i64().unwrap() >= done["CreateTime"].as_i64().unwrap());
    assert_eq!(list[0]["TaskStates"]["web"]["State"], "running");
    assert_eq!(list[2]["TaskStates"]["side"]["State"], "pending");
    assert_eq!(list[0]["Namespace"], "default");
    assert_eq!(list[0]["NodeID"].as_str().unwrap().len(), 36);
    let keys: Vec<&String> = list[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["ClientStatus", "CreateTime", "ID", "ModifyTime", "Namespace", "NodeID", "TaskStates"]);

    let prefixed = |prefix: &str| -> Vec<String> {
        let list = agent.get(&format!("/v1/allocations?prefix={prefix}")).json();
        list.as_array().unwrap().iter().map(|s| s["ID"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(prefixed("5fb1a5c8"), [ALLOC_ID, DONE_ID]);
    assert_eq!(prefixed("7c"), [UNSEEN_ID]);
    assert!(prefixed("ff").is_empty());
    assert_eq!(agent.get("/v1/allocations?namespace=other").text(), "[]");
    assert_eq!(agent.get("/v1/allocations?namespace=*").json(), list);

    let one = agent.get(&format!("/v1/allocation/{ALLOC_ID}"));
    assert_eq!(one.json(), list[0]);
    for missing in ["7c0ffee0-1111-4222-8333-000000000000", "7c0ffee0"] {
        let answer = agent.get(&format!("/v1/allocation/{missing}"));
        assert_eq!((answer.status, answer.text().as_str()), (404, "alloc not found"));
    }
}
