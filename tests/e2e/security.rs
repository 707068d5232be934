//! ACLs with real tokens, TLS and mutual TLS with curl, and hostile input.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{ALLOC_ID, Agent, Fixture, TaskCgroups, agent_with_fixture, eventually, get};

const TOKENS: &[(&str, &str, &str)] = &[
    // name, secret, policies (space separated); "management" is special
    ("mgmt", "00000000-0000-4000-8000-00000000000a", "management"),
    ("fs", "00000000-0000-4000-8000-00000000000b", "fs"),
    ("logs", "00000000-0000-4000-8000-00000000000c", "logs"),
    ("read", "00000000-0000-4000-8000-00000000000d", "read"),
    ("write", "00000000-0000-4000-8000-00000000000e", "write"),
    ("other", "00000000-0000-4000-8000-00000000000f", "other"),
    ("node-read", "00000000-0000-4000-8000-000000000010", "node-read"),
    ("node-write", "00000000-0000-4000-8000-000000000011", "node-write"),
    ("gc", "00000000-0000-4000-8000-000000000012", "gc"),
    ("denied", "00000000-0000-4000-8000-000000000013", "fs deny"),
];

const POLICIES: &[(&str, &str)] = &[
    // Nomad's one-line HCL1 form, as operators write it, must parse too.
    ("fs", "namespace \"default\" { capabilities = [\"read-fs\"] } node { policy = \"deny\" }\n"),
    ("logs", "namespace \"default\" {\n  capabilities = [\"read-logs\"]\n}\n"),
    ("read", "namespace \"default\" {\n  policy = \"read\"\n}\n"),
    ("write", "namespace \"*\" {\n  policy = \"write\"\n}\n"),
    ("other", "namespace \"other\" {\n  policy = \"write\"\n}\nnode {\n  policy = \"read\"\n}\n"),
    ("node-read", "node {\n  policy = \"read\"\n}\n"),
    ("node-write", "node {\n  policy = \"write\"\n}\n"),
    ("gc", "namespace \"default\" {\n  capabilities = [\"gc-allocation\"]\n}\n"),
    ("deny", "namespace \"default\" {\n  policy = \"deny\"\n}\n"),
    // A policy copied from a Nomad cluster, with rules for what allocd does not serve.
    (
        "nomad-ops",
        "namespace \"*\" {\n  policy = \"read\"\n  variables {\n    path \"*\" { capabilities = [\"read\"] }\n  }\n}\n\
         node { policy = \"read\" }\nagent { policy = \"read\" }\noperator { policy = \"read\" }\n\
         quota { policy = \"read\" }\nplugin { policy = \"list\" }\nhost_volume \"*\" { policy = \"read\" }\n",
    ),
];

pub fn acl_agent() -> (Fixture, Agent) {
    let fixture = Fixture::new();
    let acl_dir = fixture.dir.path().join("acl");
    std::fs::create_dir_all(acl_dir.join("policies")).unwrap();
    for (name, text) in POLICIES {
        std::fs::write(acl_dir.join("policies").join(format!("{name}.hcl")), text).unwrap();
    }
    let mut tokens = String::new();
    for (name, secret, policies) in TOKENS {
        let (kind, list) = if *policies == "management" {
            ("management", String::new())
        } else {
            ("client", policies.split(' ').map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", "))
        };
        tokens.push_str(&format!("token {name:?} {{ secret_id = {secret:?} type = {kind:?} policies = [{list}] }}\n"));
    }
    std::fs::write(acl_dir.join("tokens.hcl"), tokens).unwrap();
    // The fixture's task runs (in a cgroup tree the tests control): GC needs evidence.
    let cgroups = TaskCgroups::new(&fixture);
    cgroups.running(ALLOC_ID, "web");
    let config = fixture.config(&format!(
        "acl {{\n  enabled = true\n  policy_dir = {:?}\n  token_file = {:?}\n}}\n{}",
        acl_dir.join("policies"),
        acl_dir.join("tokens.hcl"),
        cgroups.config("")
    ));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    (fixture, agent)
}

pub fn secret(name: &str) -> &'static str {
    TOKENS.iter().find(|(n, _, _)| *n == name).map(|(_, s, _)| *s).unwrap()
}

/// Asserts which token names are allowed on `url` (everyone else gets 403).
fn assert_matrix(agent: &Agent, url: &str, allowed: &[&str]) {
    let mut callers: Vec<Option<&str>> = TOKENS.iter().map(|(name, _, _)| Some(*name)).collect();
    callers.push(None);
    callers.push(Some("unknown"));
    for caller in callers {
        let headers: Vec<(&str, &str)> = match caller {
            None => vec![],
            Some("unknown") => vec![("X-Nomad-Token", "99999999-0000-4000-8000-000000000000")],
            Some(name) => vec![("X-Nomad-Token", secret(name))],
        };
        let response = agent.get_with(url, &headers);
        let expected_allowed = caller.is_some_and(|name| allowed.contains(&name));
        if expected_allowed {
            assert!(
                response.status < 400,
                "{caller:?} should be allowed on {url}: {} {}",
                response.status,
                response.text()
            );
        } else {
            assert_eq!((response.status, response.text().as_str()), (403, "Permission denied"), "{caller:?} on {url}");
        }
    }
}

#[test]
fn acl_matrices_follow_nomads_capabilities() {
    let (fixture, agent) = acl_agent();
    let id = ALLOC_ID;
    let fs_readers = ["mgmt", "fs", "write"];
    for url in [
        format!("/v1/client/fs/ls/{id}?path=/"),
        format!("/v1/client/fs/stat/{id}?path=alloc"),
        format!("/v1/client/fs/cat/{id}?path=alloc/logs/web.stdout.0"),
        format!("/v1/client/fs/readat/{id}?path=alloc/logs/web.stdout.0&offset=0&limit=2"),
        format!("/v1/client/fs/stream/{id}?path=alloc/logs/web.stdout.0&follow=false"),
    ] {
        assert_matrix(&agent, &url, &fs_readers);
    }
    assert_matrix(&agent, &format!("/v1/client/fs/logs/{id}?task=web&type=stdout"), &["mgmt", "fs", "logs", "write"]);
    assert_matrix(&agent, &format!("/v1/client/allocation/{id}/stats"), &["mgmt", "read", "write"]);
    assert_matrix(&agent, "/v1/client/stats", &["mgmt", "node-read", "node-write", "other"]);

    // The unknown-allocation check comes before the ACL check.
    let unknown = agent.get("/v1/client/fs/ls/11111111-2222-4333-8444-555555555555");
    assert_eq!(unknown.status, 404);
    // Authorization: Bearer works as well as X-Nomad-Token.
    let bearer = format!("Bearer {}", secret("fs"));
    assert_eq!(agent.get_with(&format!("/v1/client/fs/ls/{id}"), &[("Authorization", &bearer)]).status, 200);

    // GC: denial for everyone without submit-job/gc-allocation — checked before anything
    // about the allocation is revealed — then a real collection.
    let second = "6fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e12";
    std::fs::create_dir_all(fixture.alloc_dir().join(second).join("web")).unwrap();
    let cgroups = TaskCgroups::new(&fixture);
    cgroups.running(second, "web");
    let unknown = "11111111-2222-4333-8444-555555555555";
    for name in ["fs", "logs", "read", "other", "node-write", "denied"] {
        // "other" may collect in its own namespace: it learns only that the ID is unknown.
        let allocs: &[&str] = if name == "other" { &[id] } else { &[id, unknown] };
        for alloc in allocs {
            let response =
                agent.get_with(&format!("/v1/client/allocation/{alloc}/gc"), &[("X-Nomad-Token", secret(name))]);
            assert_eq!((response.status, response.text().as_str()), (403, "Permission denied"), "{name} {alloc}");
        }
    }
    let gc = |name: &str, alloc: &str| {
        agent.get_with(&format!("/v1/client/allocation/{alloc}/gc"), &[("X-Nomad-Token", secret(name))]).status
    };
    let stats = format!("/v1/client/allocation/{second}/stats");
    eventually(Duration::from_secs(10), "the second task to be seen", || {
        agent.get_with(&stats, &[("X-Nomad-Token", secret("mgmt"))]).json()["Tasks"].get("web").map(|_| ())
    });
    cgroups.exited(id, "web");
    cgroups.exited(second, "web");
    eventually(Duration::from_secs(10), "a collection", || (gc("gc", id) == 200).then_some(()));
    eventually(Duration::from_secs(10), "a collection", || (gc("write", second) == 200).then_some(()));
    assert_eq!(gc("denied", id), 403, "a collected allocation is not revealed either");
    assert_eq!(gc("gc", id), 500);
    assert_eq!(agent.get("/v1/client/gc").status, 403);
    assert_eq!(agent.get_with("/v1/client/gc", &[("X-Nomad-Token", secret("node-read"))]).status, 403);
    assert_eq!(agent.get_with("/v1/client/gc", &[("X-Nomad-Token", secret("node-write"))]).status, 200);
}

#[test]
fn tokens_never_reach_the_logs() {
    let (_fixture, agent) = acl_agent();
    for _ in 0..3 {
        agent.get_with("/v1/client/stats", &[("X-Nomad-Token", secret("mgmt"))]);
    }
    let pid = agent.child.id().to_string();
    let stderr = agent.terminate_and_collect_stderr();
    assert!(!stderr.contains(secret("mgmt")), "a token appeared in the agent's log (pid {pid})");
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate with openssl.
pub fn make_certs(dir: &Path) {
    make_certs_for(dir, &[]);
}

/// [`make_certs`] with `ips` among the certificates' addresses too (test hosts of their own).
pub fn make_certs_for(dir: &Path, ips: &[std::net::IpAddr]) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
        assert!(status.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&status.stderr));
    };
    let extra: String = ips.iter().map(|ip| format!(",IP:{ip}")).collect();
    std::fs::write(dir.join("san.cnf"), format!("subjectAltName=IP:127.0.0.1,DNS:localhost{extra}\n")).unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=allocd test CA",
    ]);
    for name in ["server", "client"] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ]);
    }
}

fn curl(args: &[&str]) -> (bool, String) {
    let output = Command::new("curl").args(["-s", "--max-time", "10"]).args(args).output().expect("curl is installed");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn tls_and_mutual_tls_with_curl() {
    let fixture = Fixture::new();
    let certs = fixture.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let p = |name: &str| certs.join(name).to_string_lossy().into_owned();
    let tls_block = |verify: bool| {
        format!(
            "tls {{\n  http = true\n  cert_file = {:?}\n  key_file = {:?}\n  ca_file = {:?}\n  verify_https_client = {verify}\n}}\n",
            p("server.pem"),
            p("server-key.pem"),
            p("ca.pem")
        )
    };
    let agent = Agent::start(&["-config", fixture.config(&tls_block(false)).to_str().unwrap()]);
    assert!(agent.base.starts_with("https://"), "{}", agent.base);
    let url = agent.url(&format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/logs/web.stdout.0"));
    assert_eq!(curl(&["--cacert", &p("ca.pem"), &url]), (true, "Hello from the other side".to_string()));
    assert!(!curl(&[&url]).0, "an untrusted certificate is refused by curl");
    let plain = agent.url("/v1/client/stats").replace("https://", "http://");
    assert!(!curl(&["-f", &plain]).0, "plain HTTP is not served on the TLS port");
    drop(agent);

    let agent = Agent::start(&["-config", fixture.config(&tls_block(true)).to_str().unwrap()]);
    let url = agent.url("/v1/client/stats");
    assert!(!curl(&["--cacert", &p("ca.pem"), &url]).0, "no client certificate: refused");
    let (ok, body) = curl(&["--cacert", &p("ca.pem"), "--cert", &p("client.pem"), "--key", &p("client-key.pem"), &url]);
    assert!(ok && body.starts_with(r#"{"AllocDirStats":"#), "{body}");
}

#[test]
fn hostile_input_gets_clear_errors_and_the_agent_keeps_serving() {
    let (fixture, agent) = agent_with_fixture("limits {\n  max_streams = 2\n}\n");
    let root = fixture.alloc_root();
    let fifo = root.join("alloc/data/fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    std::os::unix::fs::symlink("/dev/zero", root.join("alloc/data/zero")).unwrap();
    std::os::unix::fs::symlink("loop", root.join("alloc/data/loop")).unwrap();
    let device = root.join("alloc/data/null");
    let have_device = Command::new("mknod").arg(&device).args(["c", "1", "3"]).status().is_ok_and(|s| s.success());
    let mut deep = root.join("alloc/data");
    for _ in 0..64 {
        deep = deep.join("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f"), b"deep").unwrap();
    let raw_name = std::ffi::OsStr::new(unsafe_free_non_utf8());
    std::fs::write(root.join("alloc/data").join(raw_name), b"x").unwrap();
    let id = ALLOC_ID;
    let long = "a/".repeat(3000);
    let deep_path = format!("alloc/data/{}f", "d/".repeat(64));
    let cases: Vec<(String, u16)> = vec![
        (format!("/v1/client/fs/cat/{id}?path=alloc/data/fifo"), 500),
        (format!("/v1/client/fs/stat/{id}?path=alloc/data/fifo"), 200),
        (format!("/v1/client/fs/cat/{id}?path=alloc/data/zero"), 400),
        (format!("/v1/client/fs/cat/{id}?path=alloc%00/logs"), 400),
        (format!("/v1/client/fs/ls/{id}?path=%2e%2e%2f%2e%2e"), 500),
        (format!("/v1/client/fs/ls/{id}?path=..%2F..%2Fetc"), 500),
        (format!("/v1/client/fs/cat/{id}?path={long}"), 400),
        (format!("/v1/client/fs/readat/{id}?path=alloc/logs/web.stdout.0&offset=9223372036854775807&limit=10"), 200),
        (format!("/v1/client/fs/readat/{id}?path=alloc/logs/web.stdout.0&offset=99999999999999999999"), 500),
        (format!("/v1/client/fs/readat/{id}?path=alloc/logs/web.stdout.0&offset=0&limit=-5"), 200),
        (format!("/v1/client/fs/logs/{id}?task=web&type=stdout&offset=-9223372036854775808&plain=true"), 200),
        (format!("/v1/client/fs/cat/{id}?path={deep_path}"), 200),
        (format!("/v1/client/fs/ls/{id}?path=alloc/data"), 200),
        (format!("/v1/client/fs/stat/{id}?path=alloc/data/%FF%FE"), 404),
    ];
    let mut cases = cases;
    cases.push((format!("/v1/client/fs/cat/{id}?path=alloc/data/loop"), 400));
    cases.push((format!("/v1/client/fs/stream/{id}?path=alloc/data/fifo&follow=false"), 500));
    if have_device {
        cases.push((format!("/v1/client/fs/cat/{id}?path=alloc/data/null"), 500));
        cases.push((format!("/v1/client/fs/stat/{id}?path=alloc/data/null"), 200));
    }
    for (url, status) in &cases {
        let response = agent.get(url);
        assert_eq!(response.status, *status, "GET {url}: {}", response.text());
        if *status >= 400 {
            assert!(!response.text().is_empty(), "GET {url}: an error needs a message");
        }
    }
    // Too-large request heads are refused by the server (431), not the handlers.
    let huge = "x".repeat(64 * 1024);
    assert_eq!(agent.get_with("/v1/client/stats", &[("X-Big", &huge)]).status, 431);
    // At most `max_streams` concurrent streams; the third is refused with 429.
    let follow = agent.url(&format!("/v1/client/fs/stream/{id}?path=alloc/logs/web.stdout.0"));
    let open: Vec<_> = (0..2).map(|_| reqwest::blocking::get(&follow).unwrap()).collect();
    let third = get(&agent.url(&format!("/v1/client/fs/stream/{id}?path=alloc/logs/web.stdout.0&follow=false")), &[]);
    assert_eq!(third.status, 429);
    drop(open);
    agent.assert_healthy();
}

/// A file name that is not UTF-8.
fn unsafe_free_non_utf8() -> &'static std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b"bad\xff\xfename")
}
