//! The built library, loaded and called by the allocd plugin test kit the way the agent loads
//! and calls it: the ABI checks, the exported constructor, every method through the ABI object
//! (with the SDK's panic guard), and failures as the agent maps them.

use allocd_plugin_testkit::{ErrorKind, Library, PluginKinds, exercise_with, host_context, library_path};

fn library() -> Library {
    // `cargo test` does not write the .so: `cargo build` it first (scripts/test-all does).
    Library::open(library_path("driver-metrics")).unwrap_or_else(|reason| panic!("{reason}"))
}

#[test]
fn the_agent_would_load_it_and_every_call_answers() {
    let library = library();
    assert_eq!(library.descriptor.name.as_str(), "driver-metrics");
    assert_eq!(library.descriptor.kinds, PluginKinds::METRICS);

    let dir = tempfile::tempdir().unwrap();
    let status = serde_json::json!({ "allocs": { "5fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e11": {
        "web": { "state": "running", "rss_bytes": 1024, "cpu_percent": 1.0 }
    }}});
    std::fs::write(dir.path().join("status.json"), status.to_string()).unwrap();
    let config = serde_json::json!({ "status_file": "status.json", "cpu_mhz_per_core": 2000 });
    let report = exercise_with(&library, &config, host_context(dir.path(), dir.path()));
    report.assert_contained();
    assert_eq!(report.outcome("sample_tasks"), Some(&Ok("1 tasks, complete: true".to_string())), "{report}");
    assert_eq!(report.outcome("host_stats"), Some(&Ok("none".to_string())), "{report}");
    let labels = report.outcome("task_labels").unwrap().as_ref().unwrap_err();
    assert_eq!(labels.kind(), ErrorKind::UNSUPPORTED, "this plugin knows no job or group");
}

#[test]
fn a_config_mistake_is_refused_as_the_agent_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let refused = library().metrics(&serde_json::json!({}), host_context(dir.path(), dir.path())).err().unwrap();
    assert_eq!(refused.kind(), ErrorKind::INVALID_ARGUMENT);
    assert!(refused.error.message.contains("missing field `status_file`"), "{refused}");
}
