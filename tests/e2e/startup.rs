//! Starting the agent: `-dev`, and the one-line startup errors for broken configurations.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Agent, Fixture, allocd_bin, build_dir, eventually};

/// Runs `allocd agent -config <text>` expecting a startup failure; returns stderr.
fn startup_error(fixture: &Fixture, config_text: &str) -> String {
    let config = fixture.config_text(config_text);
    let output = Command::new(allocd_bin())
        .args(["agent", "-config", config.to_str().unwrap(), "-http-port", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "allocd started with a broken config:\n{config_text}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let last = stderr.trim_end().lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("allocd: "), "{stderr}");
    last
}

fn base_config(fixture: &Fixture) -> String {
    format!("data_dir = {:?}\n", fixture.dir.path().join("data"))
}

#[test]
fn dev_mode_serves_a_sample_allocation_whose_log_grows() {
    let agent = Agent::start(&["-dev"]);
    let banner: Vec<String> = std::iter::from_fn(|| agent.stdout.recv_timeout(Duration::from_secs(5)).ok())
        .take_while(|line| !line.contains("Try:"))
        .collect();
    let id_after = |label: &str| {
        banner
            .iter()
            .find_map(|line| line.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {label} in the banner: {banner:?}"))
            .to_string()
    };
    let (alloc_id, finished) = (id_after("live allocation:"), id_after("finished allocation:"));
    let url = format!("/v1/client/fs/stat/{alloc_id}?path=alloc/logs/demo.stdout.0");
    let size = || agent.get(&url).json()["Size"].as_i64().unwrap();
    let first = size();
    let deadline = Instant::now() + Duration::from_secs(10);
    while size() <= first {
        assert!(Instant::now() < deadline, "the demo log does not grow");
        std::thread::sleep(Duration::from_millis(200));
    }
    let listing = agent.get(&format!("/v1/client/fs/ls/{alloc_id}?path=/")).json();
    let names: Vec<&str> = listing.as_array().unwrap().iter().map(|e| e["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alloc", "demo"]);
    assert_eq!(agent.get("/v1/client/stats").status, 200);

    // The tour's GC: the live sample is refused, the finished one collected once its task ends.
    let live_gc = agent.get(&format!("/v1/client/allocation/{alloc_id}/gc"));
    assert_eq!(live_gc.status, 500, "{}", live_gc.text());
    eventually(Duration::from_secs(10), "the finished sample to be collected", || {
        (agent.get(&format!("/v1/client/allocation/{finished}/gc")).status == 200).then_some(())
    });
    assert_eq!(agent.get(&format!("/v1/client/fs/ls/{alloc_id}?path=/")).status, 200, "the live one stays");
    assert!(agent.terminate().success(), "SIGTERM ends the agent cleanly");
}

#[test]
fn missing_library_is_one_line_naming_the_file() {
    let fixture = Fixture::new();
    let line = startup_error(&fixture, &format!("{}plugin \"nope\" {{}}\n", base_config(&fixture)));
    assert!(
        line.contains("plugin \"nope\"") && line.contains("liballocd_plugin_nope.so: no such plugin library"),
        "{line}"
    );
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused() {
    let fixture = Fixture::new();
    let garbage = fixture.dir.path().join("libgarbage.so");
    std::fs::write(&garbage, b"not an ELF file").unwrap();
    let line = startup_error(&fixture, &format!("{}plugin \"g\" {{ path = {garbage:?} }}\n", base_config(&fixture)));
    assert!(line.contains("libgarbage.so: cannot be loaded"), "{line}");

    // A real shared library without an allocd root module (a proc-macro from the build).
    let deps = build_dir().join("deps");
    let foreign = std::fs::read_dir(&deps)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "so") && !p.to_string_lossy().contains("allocd_plugin"))
        .expect("a proc-macro .so in target/*/deps");
    let line = startup_error(&fixture, &format!("{}plugin \"f\" {{ path = {foreign:?} }}\n", base_config(&fixture)));
    assert!(line.contains("not an allocd plugin"), "{line}");
}

#[test]
fn a_constructor_that_rejects_its_config_stops_startup() {
    let fixture = Fixture::new();
    let line = startup_error(
        &fixture,
        &format!("{}plugin \"local-disk\" {{\n  config {{ bogus = 1 }}\n}}\n", base_config(&fixture)),
    );
    assert!(
        line.contains("plugin \"local-disk\"") && line.contains("rejected its config") && line.contains("bogus"),
        "{line}"
    );
    let line = startup_error(
        &fixture,
        &format!(
            "{}plugin \"local-disk\" {{\n  config {{ alloc_dir = \"/nonexistent/allocs\" }}\n}}\n",
            base_config(&fixture)
        ),
    );
    assert!(line.contains("alloc_dir /nonexistent/allocs is not a directory"), "{line}");
}

#[test]
fn config_mistakes_are_reported() {
    let fixture = Fixture::new();
    let line = startup_error(&fixture, "data_dir = ");
    assert!(line.contains("allocd.hcl"), "{line}");
    let line = startup_error(&fixture, &format!("{}no_such_setting = 1\n", base_config(&fixture)));
    assert!(line.contains("no_such_setting"), "{line}");
    let line = startup_error(&fixture, "plugin \"host-metrics\" {}\n");
    assert!(line.contains("data_dir is not set"), "{line}");
}

#[test]
fn plugin_inspect_describes_the_bundle() {
    let library = build_dir().join("liballocd_plugin_local_disk.so");
    let output = Command::new(allocd_bin()).args(["plugin", "inspect"]).arg(&library).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("name:            local-disk") && text.contains("kinds:           storage"), "{text}");
    assert!(text.contains("loadable:        yes"), "{text}");
}

/// Runs `allocd <args>`; returns the exit code, stdout and stderr.
fn run_allocd(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(allocd_bin()).args(args).output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

#[test]
fn bad_durations_and_limits_are_one_line_naming_the_key() {
    let fixture = Fixture::new();
    let cases = [
        ("telemetry { collection_interval = \"0s\" }", "telemetry.collection_interval"),
        ("client { gc_interval = \"0s\" }", "client.gc_interval"),
        ("client { gc_interval = \"-5m\" }", "client.gc_interval"),
        ("client { gc_interval = \"99999999999999999999h\" }", "client.gc_interval"),
        ("plugin \"local-disk\" { timeout = \"0s\" }", "plugin \"local-disk\" timeout"),
        ("plugin \"local-disk\" { max_concurrency = 0 }", "plugin \"local-disk\" max_concurrency"),
        ("limits { max_header_bytes = 1024 }", "limits.max_header_bytes"),
        ("limits { max_streams = 0 }", "limits.max_streams"),
        ("limits { max_streams = -1 }", "limits.max_streams"),
        ("limits { http_max_conns_total = 0 }", "limits.http_max_conns_total"),
        ("limits { http_max_conns_per_client = 1.5 }", "limits.http_max_conns_per_client"),
    ];
    for (setting, key) in cases {
        let config = fixture.config_text(&format!("{}{setting}\n", base_config(&fixture)));
        let (code, _, stderr) = run_allocd(&["agent", "-config", config.to_str().unwrap(), "-http-port", "0"]);
        assert!(code != 0 && code != 101, "{setting}: exit code {code}\n{stderr}");
        assert!(!stderr.contains("panicked"), "{setting}: {stderr}");
        let lines: Vec<&str> = stderr.trim_end().lines().collect();
        assert_eq!(lines.len(), 1, "{setting}: {stderr}");
        assert!(lines[0].starts_with("allocd: config ") && lines[0].contains(key), "{setting}: {stderr}");
    }
}

#[test]
fn agent_help_log_levels_and_plain_logs() {
    let (code, stdout, _) = run_allocd(&["agent", "-help"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("Usage: allocd"), "{stdout}");

    let (code, _, stderr) = run_allocd(&["agent", "-dev", "-log-level", "loud"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("allocd: -log-level \"loud\": unknown level"), "{stderr}");

    // stderr is a pipe here, not a terminal: no colour codes.
    let fixture = Fixture::new();
    let config = fixture.config("");
    let agent = Agent::start(&["-config", config.to_str().unwrap(), "-log-level", "DEBUG"]);
    let log = agent.terminate_and_collect_stderr();
    assert!(log.contains("DEBUG") || log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a log that is not a terminal:\n{log}");
}

/// The text after `cannot be loaded:` in `allocd plugin inspect FILE`.
fn inspect_reason(library: &std::path::Path) -> String {
    let (code, stdout, _) = run_allocd(&["plugin", "inspect", library.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    let (_, reason) = stdout.split_once("cannot be loaded:").unwrap_or_else(|| panic!("{stdout}"));
    reason.trim().to_string()
}

#[test]
fn plugin_inspect_gives_the_loaders_reason() {
    let fixture = Fixture::new();
    let garbage = fixture.dir.path().join("libgarbage.so");
    std::fs::write(&garbage, b"not an ELF file").unwrap();
    let reason = inspect_reason(&garbage);
    assert!(reason.contains("libgarbage.so") && reason.contains("file too short"), "{reason}");

    // A plugin whose dependency is missing: the bundled local-disk with its libgcc_s
    // dependency renamed (same length, so the ELF stays valid).
    let library = std::fs::read(build_dir().join("liballocd_plugin_local_disk.so")).unwrap();
    let (needed, missing) = (b"libgcc_s.so.1\0".as_slice(), b"libnope.so.11\0".as_slice());
    let at = library.windows(needed.len()).position(|w| w == needed).expect("the plugin links libgcc_s");
    let mut patched = library.clone();
    patched[at..at + needed.len()].copy_from_slice(missing);
    let broken = fixture.dir.path().join("liballocd_plugin_broken.so");
    std::fs::write(&broken, patched).unwrap();
    let reason = inspect_reason(&broken);
    assert!(reason.contains("libnope.so.11: cannot open shared object file"), "{reason}");
}
