//! Allocation stats.

use crate::harness::{ALLOC_ID, agent_with_fixture};

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
