//! The test kit run against every bundled plugin (`plugins/*`) and the misbehaving test plugin,
//! loaded from the workspace build (`cargo build --workspace` first): every method answers or
//! fails as the agent maps failures, and none panics or hangs.

use std::time::Duration;

use allocd_plugin_testkit::{ErrorKind, Library, exercise, exercise_with, host_context, library_path};

const ALLOC: &str = "5fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e11";

/// The library of `plugin`, or `None` (with the reason printed) when it is not built here;
/// with `CI` set a missing library fails the test.
fn open(plugin: &str) -> Option<Library> {
    let path = library_path(plugin);
    if !path.exists() {
        let reason = format!("{} is missing; run `cargo build --workspace` first", path.display());
        assert!(std::env::var_os("CI").is_none(), "{plugin}: {reason} (CI is set: it must be built)");
        println!("SKIPPED {plugin}: {reason}");
        return None;
    }
    Some(Library::open(&path).unwrap_or_else(|reason| panic!("{reason}")))
}

/// An alloc dir holding [`ALLOC`] with a log file.
fn alloc_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(ALLOC).join("alloc/logs")).unwrap();
    std::fs::write(dir.path().join(ALLOC).join("hello.txt"), "hello").unwrap();
    dir
}

fn ok<'a>(report: &'a allocd_plugin_testkit::Report, method: &str) -> &'a str {
    match report.outcome(method) {
        Some(Ok(summary)) => summary,
        other => panic!("{method}: {other:?}\n{report}"),
    }
}

fn unsupported(report: &allocd_plugin_testkit::Report, method: &str) {
    match report.outcome(method) {
        Some(Err(failure)) if failure.kind() == ErrorKind::UNSUPPORTED && !failure.is_plugin_fault() => {}
        other => panic!("{method}: {other:?}\n{report}"),
    }
}

#[test]
fn host_metrics_measures_the_host() {
    let Some(library) = open("host-metrics") else { return };
    assert_eq!(library.abi_version.to_string(), allocd_plugin_testkit::ABI_VERSION);
    let report = exercise(&library, &serde_json::json!({}));
    report.assert_contained();
    assert_eq!(ok(&report, "host_stats"), "a sample");
    unsupported(&report, "task_labels");
}

#[test]
fn cgroup_samples_without_faults() {
    let Some(library) = open("cgroup") else { return };
    let report = exercise(&library, &serde_json::json!({}));
    report.assert_contained();
    ok(&report, "sample_tasks");
    unsupported(&report, "task_labels");
}

#[test]
fn docker_answers_or_is_unavailable_and_serves_task_labels() {
    let Some(library) = open("docker") else { return };
    // No daemon behind this socket: sampling is "unavailable" (a plugin fault the agent reports
    // as 500 naming the plugin) or an empty partial view, never a panic or a hang.
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("unix://{}", dir.path().join("no-docker.sock").display());
    let report = exercise(&library, &serde_json::json!({ "endpoint": endpoint }));
    report.assert_contained();
    ok(&report, "task_labels");
    if let Some(Err(failure)) = report.outcome("sample_tasks") {
        assert!(failure.kind() == ErrorKind::UNAVAILABLE && failure.is_plugin_fault(), "{report}");
        assert!(failure.describe().starts_with("plugin \"docker\": docker:"), "{report}");
    }
}

#[test]
fn local_disk_serves_every_storage_call() {
    let Some(library) = open("local-disk") else { return };
    let dir = alloc_dir();
    let host = host_context(dir.path(), dir.path());
    let report = exercise_with(&library, &serde_json::json!({ "alloc_dir": dir.path() }), host);
    report.assert_contained();
    assert_eq!(ok(&report, "list_allocs"), "1 allocations");
    assert_eq!(ok(&report, "alloc_index"), "1 allocations");
    assert_eq!(ok(&report, "alloc_info"), "held");
    assert_eq!(ok(&report, "read_at"), "5 bytes");
    match report.outcome("gc (unknown allocation)") {
        Some(Err(failure)) => assert!(failure.kind() == ErrorKind::NOT_FOUND && !failure.is_plugin_fault()),
        other => panic!("gc of an unknown allocation: {other:?}"),
    }
}

#[test]
fn overlay_serves_every_storage_call() {
    let Some(library) = open("overlay") else { return };
    let dir = alloc_dir();
    let host = host_context(dir.path(), dir.path());
    let report = exercise_with(&library, &serde_json::json!({ "upper_dir": dir.path() }), host);
    report.assert_contained();
    assert_eq!(ok(&report, "list_allocs"), "1 allocations");
    assert_eq!(ok(&report, "alloc_index"), "1 allocations");
    assert_eq!(ok(&report, "read_at"), "5 bytes");
}

#[test]
fn panics_and_hangs_map_as_the_agent_maps_them() {
    let Some(library) = open("misbehaving") else { return };
    let report = exercise(&library, &serde_json::json!({ "mode": "panic" }));
    let failure = match report.outcome("list_allocs") {
        Some(Err(failure)) => failure.clone(),
        other => panic!("a panicking call: {other:?}"),
    };
    assert_eq!(failure.kind(), ErrorKind::PANICKED);
    assert!(failure.is_plugin_fault());
    assert!(
        failure.describe().starts_with("plugin \"misbehaving\": plugin panicked: misbehaving plugin panics"),
        "{failure}"
    );
    assert!(!report.uncontained().is_empty(), "a panic is reported as uncontained");

    let storage = library
        .storage(&serde_json::json!({ "mode": "hang" }), host_context(&std::env::temp_dir(), &std::env::temp_dir()));
    let storage = storage.unwrap().expect("a storage backend").with_timeout(Duration::from_millis(200));
    let timed_out = storage.call(|s| s.list_allocs()).unwrap_err();
    assert_eq!(timed_out.kind(), ErrorKind::UNAVAILABLE);
    assert_eq!(timed_out.describe(), "plugin \"misbehaving\": call timed out after 200ms");

    let rejected = library
        .metrics(&serde_json::json!({ "mode": "reject" }), host_context(&std::env::temp_dir(), &std::env::temp_dir()));
    let rejected = rejected.err().expect("the config is rejected");
    assert_eq!(
        (rejected.kind(), rejected.error.message.as_str()),
        (ErrorKind::INVALID_ARGUMENT, "rejecting config on purpose")
    );
}

#[test]
fn a_plugin_built_against_a_newer_abi_is_refused_as_the_agent_refuses_it() {
    let path = library_path("foreign-version");
    if !path.exists() {
        assert!(std::env::var_os("CI").is_none(), "{} is missing", path.display());
        return;
    }
    let refusal = Library::open(&path).err().expect("refused");
    assert!(refusal.contains("built against plugin ABI 1.99.0, newer than this allocd's"), "{refusal}");
}
