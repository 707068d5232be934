//! Nomad's wire, round two: Go's `ServeMux` redirects, the empty 404, CORS on host stats, key
//! order at every level, empty answers never compressed, Go's `%q` in error texts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::harness::{ALLOC_ID, Agent, Fixture, TaskCgroups, agent_with_fixture, eventually};

/// A raw HTTP/1.1 exchange, so that the request target reaches the agent exactly as written
/// (HTTP client libraries resolve `.` and `..` before sending).
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

pub fn raw_request(agent: &Agent, method: &str, target: &str, headers: &str) -> RawResponse {
    let addr = agent.base.trim_start_matches("http://");
    let mut socket = TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n");
    socket.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    socket.read_to_end(&mut bytes).unwrap();
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8(bytes[..split].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    RawResponse { status, head, body: bytes[split + 4..].to_vec() }
}

#[test]
fn unclean_paths_are_redirected_as_go_servemux_does() {
    let (_fixture, agent) = agent_with_fixture("");
    let ls = format!("/v1/client/fs/ls/{ALLOC_ID}");
    for (target, location) in [
        ("//v1/client/stats?pretty=1".to_string(), "/v1/client/stats?pretty=1".to_string()),
        ("/v1/client/x/../stats".into(), "/v1/client/stats".into()),
        (format!("/v1/./client//fs/ls/{ALLOC_ID}?path=alloc/logs&x=1"), format!("{ls}?path=alloc/logs&x=1")),
        (format!("/v1/client/fs/ls/{ALLOC_ID}/."), ls.clone()),
        ("/v1/client/fs?a=b".into(), "/v1/client/fs/?a=b".into()),
        ("/v1//client/allocation".into(), "/v1/client/allocation/".into()),
        ("/v1/client/gc/..".into(), "/v1/client".into()),
    ] {
        let moved = raw_request(&agent, "GET", &target, "Origin: http://example.test\r\n");
        assert_eq!(moved.status, 301, "GET {target}: {}", moved.head);
        assert_eq!(moved.header("location"), Some(location.as_str()), "GET {target}");
        assert_eq!(moved.header("content-type"), Some("text/html; charset=utf-8"));
        let href = location.replace('&', "&amp;");
        assert_eq!(String::from_utf8_lossy(&moved.body), format!("<a href=\"{href}\">Moved Permanently</a>.\n\n"));
        assert_eq!(moved.header("access-control-allow-origin"), None, "the mux answers before CORS");
    }
    let post = raw_request(&agent, "POST", "//v1/client/gc", "Content-Length: 0\r\n");
    assert_eq!((post.status, post.header("location")), (301, Some("/v1/client/gc")));
    assert_eq!((post.header("content-type"), post.body.len()), (None, 0), "no body but for GET");
    for clean in ["/v1/client/stats", "/v1/client/fs/", "/v1/client/stats/"] {
        assert_ne!(raw_request(&agent, "GET", clean, "").status, 301, "{clean} is served as it is");
    }

    // A client whose base address ends in `/`, or that joins `/v1/` and `/client/...`, follows.
    let client = reqwest::blocking::Client::new();
    let stats = client.get(format!("{}/", agent.base) + "/v1/client/stats").send().unwrap();
    assert_eq!((stats.status().as_u16(), stats.url().path()), (200, "/v1/client/stats"));
    let stats: serde_json::Value = serde_json::from_slice(&stats.bytes().unwrap()).unwrap();
    assert!(stats["Memory"]["Total"].as_u64().unwrap() > 0);
    let listing = client.get(agent.url("/v1/") + &format!("/client/fs/ls/{ALLOC_ID}?path=alloc/logs")).send().unwrap();
    assert_eq!(listing.status().as_u16(), 200);
    let listing: Vec<serde_json::Value> = serde_json::from_slice(&listing.bytes().unwrap()).unwrap();
    let names: Vec<&str> = listing.iter().map(|entry| entry["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web.stderr.0", "web.stdout.0"], "the query survived the redirect");
}

#[test]
fn unknown_paths_are_404_with_an_empty_body() {
    let (_fixture, agent) = agent_with_fixture("");
    for path in ["/v1/nope", "/v1/client/stats/", "/v1/client/gcx", "/uix/"] {
        let response = agent.get_with(path, &[("Accept-Encoding", "gzip")]);
        assert_eq!((response.status, response.body.len()), (404, 0), "GET {path}: {}", response.text());
        assert_eq!(response.header("content-length"), Some("0"), "GET {path}");
        assert_eq!(response.header("content-type"), None, "GET {path}");
        assert_eq!(response.header("content-encoding"), None, "GET {path}: an empty body is never compressed");
    }
    // Inside the handlers Nomad's texts stay.
    assert_eq!(agent.get("/v1/client/fs/frob/x").text(), "Invalid method");
    assert_eq!(agent.get(&format!("/v1/client/allocation/{ALLOC_ID}/frob")).text(), "resource not found");
}

#[test]
fn host_stats_carry_cors_headers_and_answer_preflights() {
    let (_fixture, agent) = agent_with_fixture("");
    let origin = ("Origin", "http://example.test");
    let stats = agent.get_with("/v1/client/stats", &[origin]);
    assert_eq!(stats.status, 200);
    assert_eq!(stats.header("access-control-allow-origin"), Some("*"));
    assert_eq!(stats.header("access-control-allow-credentials"), Some("true"));
    let vary: Vec<&str> = stats.headers.get_all("vary").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);

    let preflight = raw_request(
        &agent,
        "OPTIONS",
        "/v1/client/stats",
        "Origin: http://example.test\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: X-Nomad-Token\r\nAccept-Encoding: gzip\r\n",
    );
    assert_eq!((preflight.status, preflight.body.len()), (204, 0), "{}", preflight.head);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(preflight.header("access-control-allow-methods"), Some("GET"));
    assert_eq!(preflight.header("access-control-allow-headers"), Some("X-Nomad-Token"));
    assert_eq!(preflight.header("content-type"), None, "the stats handler did not run");
    assert_eq!(preflight.header("content-encoding"), None);
    let varies: Vec<&str> = preflight.head.lines().filter_map(|l| l.strip_prefix("vary: ")).collect();
    assert!(varies.contains(&"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"), "{varies:?}");

    let gc = agent.get_with("/v1/client/gc", &[origin]);
    assert_eq!(gc.header("access-control-allow-origin"), None, "Nomad wraps /v1/client/gc without CORS");
}

/// Deserializes any JSON value, failing on an object whose keys are not in byte order;
/// counts the objects it checked.
struct SortedKeys(usize);

impl<'de> Deserialize<'de> for SortedKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SortedKeysVisitor)
    }
}

struct SortedKeysVisitor;

impl<'de> Visitor<'de> for SortedKeysVisitor {
    type Value = SortedKeys;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SortedKeys, A::Error> {
        let (mut objects, mut previous) = (1, None::<String>);
        while let Some(key) = map.next_key::<String>()? {
            if let Some(previous) = previous.filter(|previous| *previous >= key) {
                return Err(de::Error::custom(format!("key {key:?} after {previous:?}")));
            }
            objects += map.next_value::<SortedKeys>()?.0;
            previous = Some(key);
        }
        Ok(SortedKeys(objects))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SortedKeys, A::Error> {
        let mut objects = 0;
        while let Some(SortedKeys(inner)) = seq.next_element()? {
            objects += inner;
        }
        Ok(SortedKeys(objects))
    }
    fn visit_bool<E>(self, _: bool) -> Result<SortedKeys, E> {
        Ok(SortedKeys(0))
    }
    fn visit_i64<E>(self, _: i64) -> Result<SortedKeys, E> {
        Ok(SortedKeys(0))
    }
    fn visit_u64<E>(self, _: u64) -> Result<SortedKeys, E> {
        Ok(SortedKeys(0))
    }
    fn visit_f64<E>(self, _: f64) -> Result<SortedKeys, E> {
        Ok(SortedKeys(0))
    }
    fn visit_str<E>(self, _: &str) -> Result<SortedKeys, E> {
        Ok(SortedKeys(0))
    }
    fn visit_unit<E>(self) -> Result<SortedKeys, E> {
        Ok(SortedKeys(0))
    }
}

/// Objects in `body` (one JSON value or concatenated frames), each checked for key order.
fn sorted_objects(url: &str, body: &[u8]) -> usize {
    let values = serde_json::Deserializer::from_slice(body).into_iter::<SortedKeys>();
    values.map(|value| value.unwrap_or_else(|e| panic!("{url}: {e}")).0).sum()
}

#[test]
fn every_json_answer_has_its_keys_sorted_at_every_level() {
    let fixture = Fixture::new();
    let cgroups = TaskCgroups::new(&fixture);
    cgroups.running(ALLOC_ID, "web");
    let agent = Agent::start(&["-config", fixture.config(&cgroups.config("")).to_str().unwrap()]);
    let alloc_stats = format!("/v1/client/allocation/{ALLOC_ID}/stats");
    eventually(Duration::from_secs(10), "the task to be sampled", || {
        agent.get(&alloc_stats).json()["Tasks"].get("web").map(|_| ())
    });
    let fs = |op: &str, query: &str| format!("/v1/client/fs/{op}/{ALLOC_ID}?{query}");
    // The least number of objects each answer holds, so nesting is known to be checked.
    let json_answers = [
        ("/v1/client/stats?x".to_string(), 5),
        (format!("{alloc_stats}?x"), 10),
        (fs("ls", "path=alloc/logs"), 2),
        (fs("stat", "path=alloc/logs/web.stdout.0"), 1),
    ];
    for (url, least) in json_answers {
        for url in [url.clone(), format!("{url}&pretty"), format!("{url}&pretty=1")] {
            let response = agent.get(&url);
            assert_eq!(response.status, 200, "{url}: {}", response.text());
            assert!(sorted_objects(&url, &response.body) >= least, "{url}: {}", response.text());
        }
    }
    fixture.write("alloc/logs/web.stdout.1", b"rotated");
    for (url, frames) in [
        (fs("stream", "path=alloc/logs/web.stdout.0&follow=false"), 1),
        (fs("logs", "task=web&type=stdout&follow=false"), 2),
    ] {
        let response = agent.get(&url);
        assert_eq!(sorted_objects(&url, &response.body), frames, "{url}: {}", response.text());
    }
}

#[test]
fn empty_gc_answers_are_never_compressed() {
    let fixture = Fixture::new();
    let cgroups = TaskCgroups::new(&fixture);
    cgroups.running(ALLOC_ID, "web");
    let agent = Agent::start(&["-config", fixture.config(&cgroups.config("")).to_str().unwrap()]);
    let gzip = [("Accept-Encoding", "gzip")];
    eventually(Duration::from_secs(10), "the task to be sampled", || {
        agent.get(&format!("/v1/client/allocation/{ALLOC_ID}/stats")).json()["Tasks"].get("web").map(|_| ())
    });
    cgroups.exited(ALLOC_ID, "web");
    let gc = eventually(Duration::from_secs(10), "the allocation to be collected", || {
        Some(agent.get_with(&format!("/v1/client/allocation/{ALLOC_ID}/gc"), &gzip)).filter(|r| r.status == 200)
    });
    let client_gc = agent.get_with("/v1/client/gc", &gzip);
    for (what, response) in [("allocation GC", gc), ("client GC", client_gc)] {
        assert_eq!((response.status, response.body.len()), (200, 0), "{what}");
        assert_eq!(response.header("content-length"), Some("0"), "{what}");
        assert_eq!(response.header("content-encoding"), None, "{what}");
        assert_eq!(response.header("vary"), Some("Accept-Encoding"), "{what}");
    }
    let stats = agent.get_with("/v1/client/stats", &gzip);
    assert_eq!(stats.header("content-encoding"), Some("gzip"), "a body is still compressed");
}

#[test]
fn error_texts_quote_like_go() {
    let (fixture, agent) = agent_with_fixture("");
    std::fs::create_dir(fixture.alloc_root().join("alloc/data/a\u{200b}b")).unwrap();
    let node = agent.get("/v1/client/stats?node_id=%C2%A0node%09%01");
    assert_eq!((node.status, node.text()), (404, r#"Unknown node "\u00a0node\t\x01""#.to_string()));
    let dir = agent.get(&format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/data/a%E2%80%8Bb"));
    assert_eq!((dir.status, dir.text()), (400, r#"file "alloc/data/a\u200bb" is a directory"#.to_string()));
}
