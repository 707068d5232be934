//! ls, stat, cat and readat against the real local-disk plugin.

use std::io::Read;
use std::time::Duration;

use crate::harness::{ALLOC_ID, agent_with_fixture, eventually, memory_kib};

fn ls(path: &str) -> String {
    format!("/v1/client/fs/ls/{ALLOC_ID}?path={path}")
}

#[test]
fn ls_lists_sorted_entries_with_nomad_fields() {
    let (_fixture, agent) = agent_with_fixture("");
    let root = agent.get(&format!("/v1/client/fs/ls/{ALLOC_ID}"));
    assert_eq!(root.status, 200);
    assert_eq!(root.header("content-type"), Some("application/json"));
    let entries = root.json();
    let names: Vec<&str> = entries.as_array().unwrap().iter().map(|e| e["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alloc", "web"]);
    assert_eq!(entries[0]["IsDir"], true);
    assert!(root.text().starts_with(r#"[{"FileMode":"d"#), "{}", root.text());
    assert!(!root.text().contains("ContentType"));
    assert_eq!(root.body, agent.get(&ls("/")).body, "path defaults to /");

    let logs = agent.get(&ls("alloc/logs")).json();
    assert_eq!(logs[1]["Name"], "web.stdout.0");
    assert_eq!(logs[1]["Size"], 25);
    assert_eq!(logs[1]["FileMode"], "-rw-r--r--");
    let mod_time = logs[1]["ModTime"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(mod_time).is_ok(), "{mod_time}");

    let pretty = agent.get(&format!("{}&pretty", ls("alloc/logs")));
    assert!(pretty.text().starts_with("[\n    {\n        \"FileMode\": "), "{}", pretty.text());
    assert!(pretty.text().ends_with("]\n"));
}

#[test]
fn stat_reports_content_types_and_names() {
    let (fixture, agent) = agent_with_fixture("");
    fixture.write("web/local/pixel.png", b"\x89PNG\x0d\x0a\x1a\x0a\0\0\0\x0dIHDR");
    let stat = |path: &str| agent.get(&format!("/v1/client/fs/stat/{ALLOC_ID}?path={path}"));
    let text = stat("alloc/logs/web.stdout.0");
    assert_eq!(text.status, 200);
    assert!(
        text.text().starts_with(
            r#"{"ContentType":"text/plain; charset=utf-8","FileMode":"-rw-r--r--","IsDir":false,"ModTime":""#
        ),
        "{}",
        text.text()
    );
    assert_eq!(stat("web/local/conf.json").json()["ContentType"], "application/json");
    assert_eq!(stat("web/local/pixel.png").json()["ContentType"], "image/png");
    assert_eq!(stat("web/local/empty").json()["ContentType"], "application/octet-stream");
    assert_eq!(stat("alloc/").json()["IsDir"], true);
    assert_eq!(stat("/").json()["Name"], ALLOC_ID);
    assert_eq!(stat("web/secrets/token").status, 200, "stat inside secrets/ is allowed");

    let missing = stat("nope");
    assert_eq!(missing.status, 404);
    assert!(
        missing.text().starts_with("stat ") && missing.text().ends_with("/nope: no such file or directory"),
        "{}",
        missing.text()
    );
    assert_eq!(missing.header("content-type"), Some("text/plain; charset=utf-8"));
}

#[test]
fn cat_and_readat_return_bytes_with_untrusted_content_headers() {
    let (_fixture, agent) = agent_with_fixture("");
    let cat = agent.get(&format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/logs/web.stdout.0"));
    assert_eq!(cat.status, 200);
    assert_eq!(cat.text(), "Hello from the other side");
    assert_eq!(cat.header("content-type"), Some("text/plain; charset=utf-8"));

    for url in [
        format!("/v1/client/fs/cat/{ALLOC_ID}?path=web/local/xss.txt"),
        format!("/v1/client/fs/readat/{ALLOC_ID}?path=web/local/xss.txt&offset=0&limit=0"),
    ] {
        let xss = agent.get(&url);
        assert_eq!(xss.text(), "<script>alert(document.domain);</script>");
        assert_eq!(xss.header("content-type"), Some("text/plain"));
        assert_eq!(xss.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(xss.header("x-xss-protection"), Some("1; mode=block"));
        assert_eq!(
            xss.header("content-security-policy"),
            Some("default-src 'none'; style-src 'unsafe-inline'; sandbox")
        );
    }

    let readat = agent.get(&format!("/v1/client/fs/readat/{ALLOC_ID}?path=alloc/logs/web.stdout.0&offset=1&limit=3"));
    assert_eq!(readat.text(), "ell");
    let tail = agent.get(&format!("/v1/client/fs/readat/{ALLOC_ID}?path=/alloc/logs/web.stdout.0&offset=20"));
    assert_eq!(tail.text(), " side", "no limit reads to EOF; a leading / means nothing");
    let beyond = agent.get(&format!("/v1/client/fs/readat/{ALLOC_ID}?path=alloc/logs/web.stdout.0&offset=1000"));
    assert_eq!((beyond.status, beyond.text().as_str()), (200, ""));

    let empty = agent.get(&format!("/v1/client/fs/cat/{ALLOC_ID}?path=web/local/empty"));
    assert_eq!((empty.status, empty.text().as_str()), (200, ""));
    assert_eq!(empty.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(empty.header("content-security-policy"), None);
}

#[test]
fn large_files_stream_intact() {
    let (fixture, agent) = agent_with_fixture("");
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 123).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fixture.write("alloc/data/big.bin", &data);
    let cat = agent.get(&format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/data/big.bin"));
    assert_eq!(cat.status, 200);
    assert_eq!(cat.header("content-type"), Some("application/octet-stream"));
    assert!(cat.body == data, "cat returned {} bytes, differing from the file", cat.body.len());
    let slice =
        agent.get(&format!("/v1/client/fs/readat/{ALLOC_ID}?path=alloc/data/big.bin&offset=1048570&limit=2097200"));
    assert!(slice.body == data[1_048_570..1_048_570 + 2_097_200]);
}

/// Read buffers are kept and lent to the next read: a file read after a larger one, whose last
/// read fills only part of a buffer that held the other file, shows none of the other's bytes.
#[test]
fn reused_read_buffers_show_only_what_each_read_filled() {
    let (fixture, agent) = agent_with_fixture("");
    fixture.write("alloc/data/first.bin", &vec![b'a'; 3 * 1024 * 1024]);
    // Ends 5,000 bytes into a read (more than is copied out of a buffer).
    let second: Vec<u8> = (0..2 * 1024 * 1024 + 5_000).map(|i: u32| b'b' + (i % 7) as u8).collect();
    fixture.write("alloc/data/second.bin", &second);
    for _ in 0..3 {
        let first = agent.get(&format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/data/first.bin"));
        assert!(first.body.iter().all(|&b| b == b'a') && first.body.len() == 3 * 1024 * 1024);
        let cat = agent.get(&format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/data/second.bin"));
        assert!(cat.body == second, "cat returned {} bytes, differing from the file", cat.body.len());
        let tail = agent.get(&format!("/v1/client/fs/readat/{ALLOC_ID}?path=alloc/data/second.bin&offset=2097000"));
        assert!(tail.body == second[2_097_000..], "readat returned {} bytes", tail.body.len());
    }
}

/// Large reads come from a pool all connections share: 200 clients that stop reading a large
/// file take all of it (each would otherwise hold two 512 KiB reads: 200 MiB in all), the agent's
/// memory stays within the pool and each connection's small bound, and the next client still
/// gets its file intact (in small reads).
#[test]
fn stalled_downloads_take_the_large_read_pool_and_others_still_get_their_files() {
    use std::io::Write;
    let (fixture, agent) = agent_with_fixture("limits {\n  http_max_conns_per_client = 0\n}\n");
    let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    fixture.write("alloc/data/big.bin", &data);
    let url = format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/data/big.bin");
    let rss = || memory_kib(agent.child.id(), "VmRSS");
    let before = rss();
    let stalled: Vec<std::net::TcpStream> = (0..200)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(agent.base.trim_start_matches("http://")).unwrap();
            stream.write_all(format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
            stream
        })
        .collect();
    // Until the stalled downloads have filled what they can hold: RSS steady for half a second.
    let mut last = rss();
    let during = eventually(Duration::from_secs(30), "the stalled downloads to settle", || {
        std::thread::sleep(Duration::from_millis(500));
        let now = rss();
        let settled = now.abs_diff(last) < 1024;
        last = now;
        settled.then_some(now)
    });
    println!("RSS {before} KiB before, {during} KiB with 200 stalled downloads of 8 MiB");
    let cat = agent.get(&url);
    assert!(cat.status == 200 && cat.body == data, "cat returned {} bytes, differing from the file", cat.body.len());
    // The pool (16 MiB) plus 128 KiB per stalled connection (25 MiB), with room for the allocator.
    assert!(during < before + 64 * 1024, "RSS grew from {before} KiB to {during} KiB with 200 stalled downloads");
    drop(stalled);
    agent.assert_healthy();
}

#[test]
fn gzip_follows_gorilla_rules() {
    let (_fixture, agent) = agent_with_fixture("");
    let url = format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/logs/web.stdout.0");
    let zipped = agent.get_with(&url, &[("Accept-Encoding", "br, gzip")]);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&zipped.body[..]).read_to_string(&mut text).unwrap();
    assert_eq!(text, "Hello from the other side");
    let with_q = agent.get_with(&url, &[("Accept-Encoding", "gzip;q=1.0")]);
    assert_eq!(with_q.header("content-encoding"), None);
    assert_eq!(with_q.text(), "Hello from the other side");
    let vary: Vec<_> = with_q.headers.get_all("vary").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);

    let stats = agent.get_with("/v1/client/stats", &[("Accept-Encoding", "gzip")]);
    let mut json = String::new();
    flate2::read::GzDecoder::new(&stats.body[..]).read_to_string(&mut json).unwrap();
    assert!(json.starts_with(r#"{"AllocDirStats":"#));
}

#[test]
fn cors_headers_on_fs_routes() {
    let (_fixture, agent) = agent_with_fixture("");
    let response = agent.get_with(&ls("/"), &[("Origin", "http://example.test")]);
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(response.header("access-control-allow-credentials"), Some("true"));
    let client = reqwest::blocking::Client::new();
    let preflight = client
        .request(reqwest::Method::OPTIONS, agent.url(&ls("/")))
        .header("Origin", "http://example.test")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    assert_eq!(preflight.headers()["access-control-allow-methods"], "GET");
}

/// Every bad input: a clear error with Nomad's status and text, and nothing else disturbed.
#[test]
fn bad_input_gets_clear_errors() {
    let (fixture, agent) = agent_with_fixture("");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("passwd"), b"root").unwrap();
    std::os::unix::fs::symlink(outside.path(), fixture.alloc_root().join("alloc/data/escape")).unwrap();
    std::os::unix::fs::symlink("../../web/secrets/token", fixture.alloc_root().join("alloc/data/leak")).unwrap();
    let unknown = "11111111-2222-4333-8444-555555555555";
    let id = ALLOC_ID;
    let cases: Vec<(String, u16, String)> = vec![
        ("/v1/client/fs/ls/".into(), 400, "must provide a valid alloc id".into()),
        ("/v1/client/fs/ls".into(), 404, "Invalid method".into()),
        ("/v1/client/fs/frob/x".into(), 404, "Invalid method".into()),
        (format!("/v1/client/fs/stat/{id}"), 400, "must provide a file name".into()),
        (format!("/v1/client/fs/cat/{id}"), 400, "must provide a file name".into()),
        (
            format!("/v1/client/fs/readat/{id}?path=x"),
            500,
            r#"error parsing offset: strconv.ParseInt: parsing "": invalid syntax"#.into(),
        ),
        (
            format!("/v1/client/fs/readat/{id}?path=x&offset=abc"),
            500,
            r#"error parsing offset: strconv.ParseInt: parsing "abc": invalid syntax"#.into(),
        ),
        (
            format!("/v1/client/fs/readat/{id}?path=x&offset=0&limit=1.5"),
            500,
            r#"error parsing limit: strconv.ParseInt: parsing "1.5": invalid syntax"#.into(),
        ),
        (
            format!("/v1/client/fs/readat/{id}?path=alloc/logs/web.stdout.0&offset=-1"),
            500,
            "can't seek to offset -1: seek alloc/logs/web.stdout.0: invalid argument".into(),
        ),
        (format!("/v1/client/fs/ls/{id}?path=.."), 500, "Path escapes the alloc directory".into()),
        (format!("/v1/client/fs/ls/{id}?path=alloc/../../.."), 500, "Path escapes the alloc directory".into()),
        (format!("/v1/client/fs/ls/{id}?path=%2E%2E%2Fweb"), 500, "Path escapes the alloc directory".into()),
        (format!("/v1/client/fs/stat/{id}?path=../foo"), 500, "Path escapes the alloc directory".into()),
        (format!("/v1/client/fs/cat/{id}?path=../foo"), 400, "Path escapes the alloc directory".into()),
        (format!("/v1/client/fs/readat/{id}?path=../foo&offset=0"), 400, "Path escapes the alloc directory".into()),
        (format!("/v1/client/fs/ls/{id}?path=alloc/data/escape"), 500, "Path escapes the alloc directory".into()),
        (
            format!("/v1/client/fs/cat/{id}?path=alloc/data/escape/passwd"),
            400,
            "Path escapes the alloc directory".into(),
        ),
        (
            format!("/v1/client/fs/cat/{id}?path=web/secrets/token"),
            500,
            "Reading secret file prohibited: web/secrets/token".into(),
        ),
        (
            format!("/v1/client/fs/readat/{id}?path=/web/secrets/token&offset=0"),
            500,
            "Reading secret file prohibited: /web/secrets/token".into(),
        ),
        (
            format!("/v1/client/fs/cat/{id}?path=alloc/data/leak"),
            500,
            "Reading secret file prohibited: alloc/data/leak".into(),
        ),
        (
            format!("/v1/client/fs/cat/{id}?path=web/private/key"),
            500,
            "Reading private file prohibited: web/private/key".into(),
        ),
        (format!("/v1/client/fs/cat/{id}?path=alloc"), 400, r#"file "alloc" is a directory"#.into()),
        (format!("/v1/client/fs/cat/{id}?path=/"), 400, r#"file "/" is a directory"#.into()),
        (format!("/v1/client/fs/ls/{unknown}"), 404, format!("Unknown allocation \"{unknown}\"")),
        (format!("/v1/client/fs/cat/{unknown}?path=x"), 404, format!("Unknown allocation \"{unknown}\"")),
        (
            "/v1/client/fs/stat/foo?path=x".into(),
            400,
            "alloc lookup failed: index error: UUID must be 36 characters".into(),
        ),
        (
            "/v1/client/fs/ls/%2E%2E%2F%2E%2E%2Fetc".into(),
            400,
            "alloc lookup failed: index error: UUID must be 36 characters".into(),
        ),
    ];
    for (url, status, body) in cases {
        let response = agent.get(&url);
        assert_eq!((response.status, response.text()), (status, body.clone()), "GET {url}");
        assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"), "GET {url}");
    }
    let missing = agent.get(&format!("/v1/client/fs/cat/{id}?path=nope"));
    assert_eq!(missing.status, 400);
    assert!(missing.text().ends_with("/nope: no such file or directory"), "{}", missing.text());
    let ls_file = agent.get(&ls("alloc/logs/web.stdout.0"));
    assert_eq!(ls_file.status, 500);
    assert!(
        ls_file.text().starts_with("readdirent ") && ls_file.text().ends_with("not a directory"),
        "{}",
        ls_file.text()
    );
    agent.assert_healthy();
    assert!(fixture.alloc_root().join("web/secrets/token").exists(), "nothing was lost");
}
