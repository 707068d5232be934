//! The `allocd alloc` / `allocd node` CLI, run as a separate process against the real agent:
//! listing, prefixes, status, fs, tails, downloads, following across rotation and restarts,
//! tokens and TLS from Nomad's variables.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{ALLOC_ID, Agent, Fixture, agent_with_fixture, allocd_bin, eventually, skip_unless_ci};
use crate::listing::{DONE_ID, UNSEEN_ID, three_allocs};
use crate::security::{acl_agent, make_certs, secret};

/// What a finished CLI run left.
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// The CLI with no `NOMAD_*` variable but those in `env`.
fn command(env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new(allocd_bin());
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("NOMAD_")) {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// Runs the CLI to its end (at most 30 s).
fn cli(env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut child = command(env, args).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("allocd {args:?} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdout = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    Run { code: child.wait().unwrap().code().unwrap_or(-1), stdout, stderr }
}

/// Runs the CLI against `agent`, with a trailing `/` on the address as users type it.
fn against(agent: &Agent, args: &[&str]) -> Run {
    cli(&[("NOMAD_ADDR", &format!("{}/", agent.base))], args)
}

#[test]
fn list_status_and_prefix_ambiguity() {
    let (_fixture, _cgroups, agent) = three_allocs("");
    let list = against(&agent, &["alloc", "list", "-verbose"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let lines: Vec<String> = list.text().lines().map(String::from).collect();
    assert!(lines[0].starts_with("ID  ") && lines[0].contains("Status"), "{lines:?}");
    for (line, (id, status)) in
        lines[1..].iter().zip([(ALLOC_ID, "running"), (DONE_ID, "complete"), (UNSEEN_ID, "unknown")])
    {
        assert!(line.starts_with(id) && line.contains(&format!(" {status} ")), "{line}");
    }
    let short = against(&agent, &["alloc", "list"]).text();
    assert!(short.contains(&format!("\n{}  ", &ALLOC_ID[..8])), "{short}");

    let status = against(&agent, &["alloc", "status", "7c0ff"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.text().contains(&format!("ID            = {UNSEEN_ID}\n")), "{}", status.text());
    assert!(status.text().contains("Client Status = unknown\n"));
    let done = against(&agent, &["alloc", "status", &DONE_ID[..13]]).text();
    assert!(done.contains("Client Status = complete") && done.contains("Task \"job\" is \"dead\""), "{done}");

    let ambiguous = against(&agent, &["alloc", "status", "5fb1"]);
    assert_eq!(ambiguous.code, 1);
    assert!(ambiguous.stderr.contains("Prefix matched multiple allocations"), "{}", ambiguous.stderr);
    assert!(ambiguous.stderr.contains(ALLOC_ID) && ambiguous.stderr.contains(DONE_ID), "{}", ambiguous.stderr);
    let none = against(&agent, &["alloc", "logs", "ff"]);
    assert_eq!((none.code, none.stderr.trim()), (1, "allocd: No allocation(s) with prefix or id \"ff\" found"));
    let one_char = against(&agent, &["alloc", "fs", "5"]);
    assert_eq!(one_char.stderr.trim(), "allocd: Alloc ID must contain at least two characters.");
    let json = against(&agent, &["alloc", "status", "-json", "7c"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&json.stdout).unwrap()["ID"], UNSEEN_ID);
}

#[test]
fn fs_table_file_tail_and_download() {
    let (fixture, agent) = agent_with_fixture("");
    let lines: String = (1..=50).map(|i| format!("line {i}\n")).collect();
    fixture.write("alloc/logs/web.stdout.0", lines.as_bytes());
    let table = against(&agent, &["alloc", "fs", &ALLOC_ID[..6], "alloc/logs"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let rows: Vec<&str> = table.stdout.split(|b| *b == b'\n').map(|r| std::str::from_utf8(r).unwrap()).collect();
    assert!(rows[0].starts_with("Mode") && rows[0].ends_with("Modified Time          Name"), "{:?}", rows[0]);
    assert!(
        rows[2].starts_with("-rw-") && rows[2].contains("  391 B  ") && rows[2].ends_with("  web.stdout.0"),
        "{rows:?}"
    );
    let root = against(&agent, &["alloc", "fs", &ALLOC_ID[..6]]).text();
    assert!(root.contains("  alloc/\n") && root.contains("  web/\n"), "{root}");
    let stat = against(&agent, &["alloc", "fs", "-stat", "-H", &ALLOC_ID[..6], "web/local/conf.json"]).text();
    assert!(stat.lines().nth(1).unwrap().contains("  8  "), "{stat}");

    let file = against(&agent, &["alloc", "fs", &ALLOC_ID[..6], "web/local/conf.json"]);
    assert_eq!(file.stdout, b"{\"a\": 1}");
    let tail = against(&agent, &["alloc", "fs", "-tail", "-n", "2", &ALLOC_ID[..6], "alloc/logs/web.stdout.0"]);
    assert_eq!(tail.text(), "line 49\nline 50\n");
    assert_eq!(against(&agent, &["alloc", "logs", "-tail", &ALLOC_ID[..6]]).text(), lines[lines.len() - 80..]);
    assert_eq!(against(&agent, &["alloc", "logs", "-n", "1", &ALLOC_ID[..6], "web"]).text(), "line 50\n");
    assert_eq!(against(&agent, &["alloc", "logs", "-c", "3", &ALLOC_ID[..6]]).text(), "50\n");
    assert_eq!(against(&agent, &["alloc", "logs", &ALLOC_ID[..6]]).text(), lines);
    assert_eq!(against(&agent, &["alloc", "logs", "-stderr", &ALLOC_ID[..6]]).text(), "");

    // -o: byte-identical, through the cat endpoint, a few MiB of every byte value.
    let blob: Vec<u8> = (0..3 * 1024 * 1024 + 7).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fixture.write("alloc/data/blob.bin", &blob);
    let target = fixture.dir.path().join("download.bin");
    let download =
        against(&agent, &["alloc", "fs", "-o", target.to_str().unwrap(), &ALLOC_ID[..6], "alloc/data/blob.bin"]);
    assert_eq!(download.code, 0, "{}", download.stderr);
    assert!(std::fs::read(&target).unwrap() == blob, "the download differs");

    let stats = against(&agent, &["alloc", "stats", &ALLOC_ID[..6]]).text();
    assert!(stats.starts_with("Task  ") && stats.contains("\n(total)  "), "{stats}");
    let node = against(&agent, &["node", "stats"]).text();
    assert!(node.starts_with("Uptime ") && node.contains("Memory Total     = "), "{node}");

    let directory = against(&agent, &["alloc", "fs", "-o", target.to_str().unwrap(), &ALLOC_ID[..6], "alloc"]);
    assert_eq!(directory.stderr.trim(), "allocd: -o downloads a file; \"alloc\" is a directory");
    let missing = against(&agent, &["alloc", "fs", &ALLOC_ID[..6], "nope"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.starts_with("allocd: Unexpected response code: 404"), "{}", missing.stderr);
}

/// A CLI process whose stdout is collected as it arrives.
struct Follower {
    child: Child,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Follower {
    fn start(env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut child = command(env, args).stderr(Stdio::inherit()).spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self { child, seen }
    }

    fn wait_for(&self, expected: &[u8]) {
        eventually(Duration::from_secs(20), &format!("{:?}", String::from_utf8_lossy(expected)), || {
            let seen = self.seen.lock().unwrap();
            assert!(
                expected.starts_with(&seen) || seen.starts_with(expected),
                "got {:?}",
                String::from_utf8_lossy(&seen)
            );
            (seen.as_slice() == expected).then_some(())
        });
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn logs_follow_across_rotation_and_agent_restart() {
    let fixture = Fixture::new();
    let config = fixture.config("");
    let port = free_port();
    let start =
        || Agent::try_start_on(Command::new(allocd_bin()), &["-config", config.to_str().unwrap()], port).unwrap();
    let agent = start();
    let logs = |index: u32| fixture.alloc_root().join(format!("alloc/logs/web.stdout.{index}"));
    let append = |index: u32, text: &str| {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(logs(index)).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    };
    std::fs::write(logs(0), "a1\n").unwrap();
    let address = agent.base.clone();
    let follower = Follower::start(&[("NOMAD_ADDR", &address)], &["alloc", "logs", "-f", &ALLOC_ID[..8], "web"]);
    let mut expected = String::from("a1\n");
    follower.wait_for(expected.as_bytes());
    append(0, "a2\n");
    expected.push_str("a2\n");
    follower.wait_for(expected.as_bytes());

    // Rotation: the last lines of the old file, then the new file.
    append(0, "a3\n");
    append(1, "b1\n");
    expected.push_str("a3\nb1\n");
    follower.wait_for(expected.as_bytes());

    // The agent goes away; the task keeps writing and rotates again meanwhile.
    agent.terminate();
    append(1, "b2\n");
    append(2, "c1\n");
    std::thread::sleep(Duration::from_millis(700));
    let agent = start();
    expected.push_str("b2\nc1\n");
    follower.wait_for(expected.as_bytes());
    append(2, "c2\n");
    expected.push_str("c2\n");
    follower.wait_for(expected.as_bytes());

    // Killed hard mid-stream: the same again.
    drop(agent);
    append(2, "c3\n");
    let _agent = start();
    expected.push_str("c3\n");
    follower.wait_for(expected.as_bytes());

    // Ctrl-C ends following cleanly.
    let mut follower = follower;
    Command::new("kill").args(["-INT", &follower.child.id().to_string()]).status().unwrap();
    let status = eventually(Duration::from_secs(10), "the follower to exit", || follower.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
}

#[test]
fn follow_ends_when_the_allocation_is_collected() {
    let (fixture, agent) = agent_with_fixture("");
    let mut follower = Follower::start(
        &[("NOMAD_ADDR", &agent.base)],
        &["alloc", "fs", "-f", &ALLOC_ID[..8], "alloc/logs/web.stdout.0"],
    );
    follower.wait_for(b"Hello from the other side");
    std::fs::remove_dir_all(fixture.alloc_root()).unwrap();
    let status = eventually(Duration::from_secs(20), "the follower to exit", || follower.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
}

#[test]
fn acl_token_from_nomad_token() {
    let (_fixture, agent) = acl_agent();
    let address = format!("{}/", agent.base);
    let denied = cli(&[("NOMAD_ADDR", &address)], &["alloc", "list"]);
    assert_eq!((denied.code, denied.stderr.trim()), (1, "allocd: Unexpected response code: 403 (Permission denied)"));
    let allowed =
        cli(&[("NOMAD_ADDR", &address), ("NOMAD_TOKEN", secret("read"))], &["alloc", "status", &ALLOC_ID[..4]]);
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    assert!(allowed.text().contains(ALLOC_ID));
    // read-job alone does not read logs: the fs capability is Nomad's read-logs.
    let logs = cli(&[("NOMAD_ADDR", &address), ("NOMAD_TOKEN", secret("read"))], &["alloc", "logs", &ALLOC_ID[..4]]);
    assert!(logs.stderr.contains("403"), "{}", logs.stderr);
    let flag = cli(&[("NOMAD_ADDR", &address)], &["alloc", "list", "-token", secret("mgmt")]);
    assert_eq!(flag.code, 0, "{}", flag.stderr);
}

#[test]
fn tls_and_mutual_tls_from_nomad_variables() {
    if Command::new("openssl").arg("version").output().is_err() {
        return skip_unless_ci("tls_and_mutual_tls_from_nomad_variables", "openssl is not installed");
    }
    let fixture = Fixture::new();
    let certs = fixture.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let p = |name: &str| certs.join(name).to_string_lossy().into_owned();
    let tls = |verify: bool| {
        format!(
            "tls {{\n  http = true\n  cert_file = {:?}\n  key_file = {:?}\n  ca_file = {:?}\n  verify_https_client = {verify}\n}}\n",
            p("server.pem"),
            p("server-key.pem"),
            p("ca.pem")
        )
    };
    let agent = Agent::start(&["-config", fixture.config(&tls(false)).to_str().unwrap()]);
    let (address, ca) = (agent.base.clone(), p("ca.pem"));
    assert!(address.starts_with("https://"), "{address}");
    let ok = cli(&[("NOMAD_ADDR", &address), ("NOMAD_CACERT", &ca)], &["alloc", "logs", &ALLOC_ID[..4]]);
    assert_eq!((ok.code, ok.text().as_str()), (0, "Hello from the other side"), "{}", ok.stderr);
    assert_eq!(cli(&[("NOMAD_ADDR", &address)], &["alloc", "list"]).code, 1, "an unknown CA is refused");
    let by_name = format!("https://127.0.0.1:{}", address.rsplit(':').next().unwrap());
    let named = [("NOMAD_ADDR", by_name.as_str()), ("NOMAD_CACERT", &ca), ("NOMAD_TLS_SERVER_NAME", "localhost")];
    assert_eq!(cli(&named, &["alloc", "list"]).code, 0);
    assert_eq!(cli(&[("NOMAD_ADDR", &address), ("NOMAD_SKIP_VERIFY", "true")], &["alloc", "list"]).code, 0);
    drop(agent);

    let agent = Agent::start(&["-config", fixture.config(&tls(true)).to_str().unwrap()]);
    let address = agent.base.clone();
    let without = cli(&[("NOMAD_ADDR", &address), ("NOMAD_CACERT", &ca)], &["alloc", "list"]);
    assert_eq!(without.code, 1, "no client certificate: refused");
    let (cert, key) = (p("client.pem"), p("client-key.pem"));
    let mutual = [
        ("NOMAD_ADDR", address.as_str()),
        ("NOMAD_CACERT", &ca),
        ("NOMAD_CLIENT_CERT", &cert),
        ("NOMAD_CLIENT_KEY", &key),
    ];
    let with = cli(&mutual, &["alloc", "list"]);
    assert_eq!(with.code, 0, "{}", with.stderr);
    assert!(with.text().contains(&ALLOC_ID[..8]));
    let stats = cli(&mutual, &["node", "stats", "-json"]);
    assert!(serde_json::from_slice::<serde_json::Value>(&stats.stdout).unwrap()["Memory"].is_object());
}
