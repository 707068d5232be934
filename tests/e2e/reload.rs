//! SIGHUP: tokens, policies, certificates and the log level change without a restart; a bad
//! reload keeps what runs; the signal never stops the agent. Logs: JSON lines, no colour codes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;

use crate::harness::{ALLOC_ID, Agent, Fixture, eventually};
use crate::security::make_certs;

fn hangup(agent: &Agent) {
    let status = Command::new("kill").args(["-HUP", &agent.child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// The agent is still running and answering after `what`.
fn assert_running(agent: &mut Agent, what: &str) {
    std::thread::sleep(Duration::from_millis(200));
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent exited after {what}");
}

const READER: &str = "00000000-0000-4000-8000-0000000000a1";
const OTHER: &str = "00000000-0000-4000-8000-0000000000a2";

fn write_tokens(path: &Path, secrets: &[&str]) {
    let tokens: String = secrets
        .iter()
        .enumerate()
        .map(|(i, secret)| {
            format!(
                "token \"t{i}\" {{\n  secret_id = {secret:?}\n  type = \"client\"\n  policies = [\"node-read\"]\n}}\n"
            )
        })
        .collect();
    std::fs::write(path, tokens).unwrap();
}

fn node_stats(agent: &Agent, token: &str) -> u16 {
    agent.get_with("/v1/client/stats", &[("X-Nomad-Token", token)]).status
}

#[test]
fn sighup_reloads_tokens_and_log_level_and_a_bad_reload_keeps_them() {
    let fixture = Fixture::new();
    let acl = fixture.dir.path().join("acl");
    std::fs::create_dir_all(acl.join("policies")).unwrap();
    std::fs::write(
        acl.join("policies/node-read.hcl"),
        "node {\n  policy = \"read\"\n}\nagent {\n  policy = \"read\"\n}\n",
    )
    .unwrap();
    let tokens = acl.join("tokens.hcl");
    write_tokens(&tokens, &[READER, OTHER]);
    let acl_block =
        format!("acl {{\n  enabled = true\n  policy_dir = {:?}\n  token_file = {tokens:?}\n}}\n", acl.join("policies"));
    let config = fixture.config(&format!("log_level = \"info\"\n{acl_block}"));
    let mut agent = Agent::start(&["-config", config.to_str().unwrap()]);
    assert_eq!((node_stats(&agent, READER), node_stats(&agent, OTHER)), (200, 200));

    write_tokens(&tokens, &[OTHER]);
    fixture.config(&format!("log_level = \"debug\"\n{acl_block}"));
    hangup(&agent);
    eventually(Duration::from_secs(10), "the removed token to stop working", || {
        (node_stats(&agent, READER) == 403).then_some(())
    });
    assert_eq!(node_stats(&agent, OTHER), 200);
    assert_running(&mut agent, "a reload");

    std::fs::write(&tokens, "token \"broken\" {").unwrap();
    hangup(&agent);
    assert_running(&mut agent, "a failed reload");
    assert_eq!((node_stats(&agent, OTHER), node_stats(&agent, READER)), (200, 403), "the old tokens stay");
    let log = agent.terminate_and_collect_stderr();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(log.contains("reload failed, keeping the running configuration"), "{log}");
    // The failed reload reads the policies (logging the ignored agent rule at debug level).
    assert!(log.lines().any(|line| line.contains("DEBUG")), "log_level = \"debug\" took effect:\n{log}");
    assert!(log.lines().all(|line| !line.starts_with(' ')), "one line per record:\n{log}");
    assert!(!log.contains('\x1b'), "no colour codes when stderr is not a terminal");
}

#[test]
fn a_reload_names_the_edited_settings_that_wait_for_a_restart() {
    let fixture = Fixture::new();
    let config = fixture.config("log_level = \"info\"\n");
    let mut agent = Agent::start(&["-config", config.to_str().unwrap()]);
    fixture.config("log_level = \"debug\"\nlimits {\n  max_streams = 7\n}\nclient {\n  gc_max_allocs = 3\n}\n");
    hangup(&agent);
    assert_running(&mut agent, "a reload with restart-only edits");
    // (the reload itself takes milliseconds; its lines are read once the agent has stopped)
    std::thread::sleep(Duration::from_secs(2));
    let log = agent.terminate_and_collect_stderr();
    assert!(log.contains("configuration reloaded"), "{log}");
    let warning = log.lines().find(|line| line.contains("not applied")).unwrap_or_else(|| panic!("{log}"));
    assert!(warning.contains("WARN") && warning.contains("client, limits"), "{warning}");
    assert!(!warning.contains("log_level"), "log_level was applied: {warning}");
}

#[test]
fn sighup_never_stops_the_agent() {
    let mut agent = Agent::start(&["-dev"]);
    for _ in 0..5 {
        hangup(&agent);
    }
    assert_running(&mut agent, "five SIGHUPs in -dev");
    assert_eq!(agent.get("/v1/agent/health").status, 200);
}

fn curl_cert_ok(ca: &Path, url: &str) -> bool {
    let output = Command::new("curl").args(["-sf", "--max-time", "10", "--cacert"]).arg(ca).arg(url).output().unwrap();
    output.status.success()
}

/// A follow stream over TLS with curl, its frames written to `out`.
fn follow_with_curl(ca: &Path, url: &str, out: &Path) -> Child {
    Command::new("curl")
        .args(["-sN", "--max-time", "30", "--cacert"])
        .arg(ca)
        .arg(url)
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sighup_rotates_the_certificate_and_open_streams_continue() {
    let fixture = Fixture::new();
    let [old, new, live] = ["certs-old", "certs-new", "certs-live"].map(|d| fixture.dir.path().join(d));
    for dir in [&old, &new, &live] {
        std::fs::create_dir_all(dir).unwrap();
    }
    make_certs(&old);
    make_certs(&new);
    let install = |from: &Path| {
        for file in ["server.pem", "server-key.pem"] {
            std::fs::copy(from.join(file), live.join(file)).unwrap();
        }
    };
    install(&old);
    let tls = format!(
        "tls {{\n  http = true\n  cert_file = {:?}\n  key_file = {:?}\n}}\n",
        live.join("server.pem"),
        live.join("server-key.pem")
    );
    let mut agent = Agent::start(&["-config", fixture.config(&tls).to_str().unwrap()]);
    let stats = agent.url("/v1/client/stats");
    assert!(curl_cert_ok(&old.join("ca.pem"), &stats));
    let frames = fixture.dir.path().join("frames");
    let stream =
        agent.url(&format!("/v1/client/fs/stream/{ALLOC_ID}?path=alloc/logs/web.stdout.0&origin=end&offset=0"));
    let mut follower = follow_with_curl(&old.join("ca.pem"), &stream, &frames);
    eventually(Duration::from_secs(10), "the stream's first bytes", || {
        (std::fs::metadata(&frames).ok()?.len() > 0).then_some(())
    });

    install(&new);
    hangup(&agent);
    eventually(Duration::from_secs(10), "new connections to get the new certificate", || {
        curl_cert_ok(&new.join("ca.pem"), &stats).then_some(())
    });
    assert!(!curl_cert_ok(&old.join("ca.pem"), &stats), "the old certificate is gone for new connections");
    let appended = b"written after the rotation\n";
    let log = fixture.alloc_root().join("alloc/logs/web.stdout.0");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, appended))
        .unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(appended);
    eventually(Duration::from_secs(10), "the open stream to deliver the appended bytes", || {
        std::fs::read_to_string(&frames).ok()?.contains(&encoded).then_some(())
    });

    std::fs::write(live.join("server.pem"), "not a certificate").unwrap();
    hangup(&agent);
    assert_running(&mut agent, "a reload with a broken certificate");
    assert!(curl_cert_ok(&new.join("ca.pem"), &stats), "a broken certificate file keeps the one in use");
    let _ = follower.kill();
    let _ = follower.wait();
    let log = agent.terminate_and_collect_stderr();
    assert!(log.contains("reload failed, keeping the running configuration: tls: "), "{log}");
}

#[test]
fn log_json_writes_one_object_per_line() {
    let fixture = Fixture::new();
    let config = fixture.config("log_json = true\n");
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    hangup(&agent);
    std::thread::sleep(Duration::from_millis(300));
    let log = agent.terminate_and_collect_stderr();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect();
    assert!(lines.iter().any(|line| line["message"] == "allocd listening"), "{log}");
    assert!(lines.iter().all(|line| line["level"].is_string() && line["timestamp"].is_string()));
    assert!(!log.contains('\x1b'));
}
