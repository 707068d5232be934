//! `GET /v1/client/stats` through the real host-metrics plugin.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::agent_with_fixture;

#[test]
fn host_stats_have_nomads_shape_and_encoding() {
    let (_fixture, agent) = agent_with_fixture("");
    let response = agent.get("/v1/client/stats");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let text = response.text();
    assert!(text.starts_with(r#"{"AllocDirStats":{"Available":"#), "keys sorted: {text}");
    let stats = response.json();
    let keys: Vec<&str> = stats.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected =
        ["Memory", "CPU", "DiskStats", "AllocDirStats", "DeviceStats", "Uptime", "Timestamp", "CPUTicksConsumed"];
    expected.sort();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert!(stats["Memory"]["Total"].as_u64().unwrap() > 0);
    assert!(stats["Memory"]["Used"].as_u64().unwrap() <= stats["Memory"]["Total"].as_u64().unwrap());
    let cpus = stats["CPU"].as_array().unwrap();
    assert!(!cpus.is_empty());
    for cpu in cpus {
        assert!(cpu["CPU"].as_str().unwrap().starts_with("cpu"));
        assert_eq!(cpu["Total"], cpu["TotalPercent"]);
        for field in ["User", "System", "Idle", "TotalPercent"] {
            assert!((0.0..=100.0).contains(&cpu[field].as_f64().unwrap()), "{field}: {cpu}");
        }
    }
    let ticks: f64 = cpus.iter().map(|c| c["TotalTicks"].as_f64().unwrap()).sum();
    assert!((ticks - stats["CPUTicksConsumed"].as_f64().unwrap()).abs() < 1e-6);
    assert_eq!(stats["AllocDirStats"]["Device"], "");
    assert_eq!(stats["AllocDirStats"]["Mountpoint"], "");
    assert!(stats["AllocDirStats"]["Size"].as_u64().unwrap() > 0);
    assert!(stats["DeviceStats"].is_null());
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
    let timestamp = stats["Timestamp"].as_i64().unwrap();
    assert!((now_ns - timestamp).abs() < 60_000_000_000, "Timestamp is Unix ns");
    // go-msgpack floats always carry a decimal point.
    let bare_integer_float = regex_like_find(&text, &["\"User\":", "\"Idle\":", "\"UsedPercent\":", "\"TotalTicks\":"]);
    assert!(bare_integer_float.is_none(), "float without a decimal point: {bare_integer_float:?}");

    let pretty = agent.get("/v1/client/stats?pretty").text();
    assert!(pretty.starts_with("{\n    \"AllocDirStats\": {\n        \"Available\": "), "{pretty}");
    assert!(pretty.ends_with("}\n"));
    assert_eq!(agent.get("/v1/client/stats?pretty=0").text().lines().count(), 1);
}

/// Finds a float field whose value is written as a bare integer (e.g. `"User":0,`).
fn regex_like_find<'a>(text: &'a str, fields: &[&str]) -> Option<&'a str> {
    fields.iter().find_map(|field| {
        text.match_indices(field).find_map(|(at, _)| {
            let value = &text[at + field.len()..];
            let end = value.find([',', '}']).unwrap_or(value.len());
            let number = &value[..end];
            (!number.contains(['.', 'e'])).then_some(number)
        })
    })
}

#[test]
fn samples_refresh_in_the_background_and_node_id_is_checked() {
    let (_fixture, agent) = agent_with_fixture("telemetry { collection_interval = \"100ms\" }");
    let first = agent.get("/v1/client/stats").json()["Timestamp"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = agent.get("/v1/client/stats").json()["Timestamp"].as_i64().unwrap();
        if now > first {
            break;
        }
        assert!(Instant::now() < deadline, "the sample never refreshed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let other = agent.get("/v1/client/stats?node_id=00000000-0000-4000-8000-000000000000");
    assert_eq!((other.status, other.text().as_str()), (404, "Unknown node \"00000000-0000-4000-8000-000000000000\""));
}
