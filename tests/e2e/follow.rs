//! fs/stream and fs/logs: Nomad's framing, following, rotation, lifecycle.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::harness::{ALLOC_ID, Agent, agent_with_fixture, memory_kib};

/// An open streaming response read on a thread (the fleet tests read through a forwarder with it).
pub struct Stream {
    chunks: mpsc::Receiver<Vec<u8>>,
    pub status: u16,
    content_type: Option<String>,
    buffer: Vec<u8>,
    ended: bool,
}

impl Stream {
    pub fn open(agent: &Agent, path_and_query: &str) -> Stream {
        Stream::read(Stream::request(agent, path_and_query))
    }

    /// The response, its body not read yet.
    fn request(agent: &Agent, path_and_query: &str) -> reqwest::blocking::Response {
        let client = reqwest::blocking::Client::builder().timeout(None).build().unwrap();
        client.get(agent.url(path_and_query)).send().unwrap()
    }

    /// Starts reading `response`'s body on a thread of its own.
    fn read(mut response: reqwest::blocking::Response) -> Stream {
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        let (tx, chunks) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match response.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Stream { chunks, status, content_type, buffer: Vec::new(), ended: false }
    }

    /// Reads until `done(buffer)` holds; panics after `limit`.
    pub fn read_until(&mut self, limit: Duration, done: impl Fn(&[u8]) -> bool) -> &[u8] {
        let deadline = Instant::now() + limit;
        while !done(&self.buffer) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.buffer.extend(chunk),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.ended = true;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
            }
        }
        assert!(done(&self.buffer), "condition not met; got {:?}", String::from_utf8_lossy(&self.buffer));
        &self.buffer
    }

    /// Reads to the end of the response (it must end within `limit`).
    pub fn read_to_end(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        while !self.ended {
            match self.chunks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(chunk) => self.buffer.extend(chunk),
                Err(mpsc::RecvTimeoutError::Disconnected) => self.ended = true,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the stream did not end"),
            }
        }
        self.buffer.clone()
    }

    /// Reads frames until their decoded data is `want` bytes long (within `limit`); that data.
    fn data_until(&mut self, want: usize, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let (mut data, mut parsed) = (Vec::new(), 0);
        while data.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk =
                self.chunks.recv_timeout(left).unwrap_or_else(|_| panic!("{} of {want} bytes arrived", data.len()));
            self.buffer.extend(chunk);
            let mut frames =
                serde_json::Deserializer::from_slice(&self.buffer[parsed..]).into_iter::<serde_json::Value>();
            for frame in frames.by_ref().map_while(Result::ok) {
                data.extend(frame["Data"].as_str().map(|d| STANDARD.decode(d).unwrap()).unwrap_or_default());
            }
            parsed += frames.byte_offset();
        }
        self.buffer.drain(..parsed);
        data
    }

    /// True when the response is still open after `wait`.
    fn still_open_after(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match self.chunks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(chunk) => self.buffer.extend(chunk),
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        true
    }
}

/// Concatenated JSON frames → values.
fn frames(bytes: &[u8]) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>().map_while(Result::ok).collect()
}

/// The decoded `Data` of all frames, in order.
pub fn frame_data(bytes: &[u8]) -> Vec<u8> {
    frames(bytes).iter().filter_map(|f| f["Data"].as_str()).flat_map(|d| STANDARD.decode(d).unwrap()).collect()
}

pub fn append(path: &std::path::Path, bytes: &[u8]) {
    std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

fn stream_url(path: &str, extra: &str) -> String {
    format!("/v1/client/fs/stream/{ALLOC_ID}?path={path}{extra}")
}

fn logs_url(extra: &str) -> String {
    format!("/v1/client/fs/logs/{ALLOC_ID}?task=web&type=stdout{extra}")
}

const LOG: &str = "alloc/logs/web.stdout.0";
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn stream_without_follow_ends_with_nomads_frames() {
    let (fixture, agent) = agent_with_fixture("");
    let mut tail = Stream::open(&agent, &stream_url(LOG, "&offset=4&origin=end&follow=false"));
    assert_eq!(tail.status, 200);
    assert_eq!(tail.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    let body = tail.read_to_end(WAIT);
    assert_eq!(frame_data(&body), b"side");
    fixture.write("alloc/logs/xss.txt", b"<script>alert(document.domain);</script>");
    let xss = agent.get(&stream_url("alloc/logs/xss.txt", "&follow=false"));
    assert_eq!(
        xss.text(),
        r#"{"Data":"PHNjcmlwdD5hbGVydChkb2N1bWVudC5kb21haW4pOzwvc2NyaXB0Pg==","File":"alloc/logs/xss.txt","Offset":40}"#
    );
    let keep_slash = agent.get(&stream_url("/alloc/logs/xss.txt", "&follow=false&offset=35"));
    assert_eq!(frames(&keep_slash.body)[0]["File"], "/alloc/logs/xss.txt", "File is the path as given");
}

#[test]
fn a_large_file_streams_in_frames_of_at_most_64_kib_with_running_offsets() {
    // Several large reads (256 KiB) and a tail: each is cut into Nomad's frames of at most 64 KiB.
    let (fixture, agent) = agent_with_fixture("");
    let big: Vec<u8> = (0..(3 * 256 * 1024 + 12_345u32)).map(|i| (i % 253) as u8).collect();
    fixture.write("alloc/data/big.bin", &big);
    let mut stream = Stream::open(&agent, &stream_url("alloc/data/big.bin", "&follow=false"));
    assert_eq!(stream.status, 200);
    let body = stream.read_to_end(WAIT);
    let mut offset = 0;
    for frame in frames(&body) {
        let data = STANDARD.decode(frame["Data"].as_str().unwrap()).unwrap();
        assert!(!data.is_empty() && data.len() <= 64 * 1024, "a frame of {} bytes", data.len());
        offset += data.len() as u64;
        assert_eq!(frame["Offset"], offset, "each frame's Offset is just past its data");
    }
    assert_eq!(frame_data(&body), big);
}

#[test]
fn stream_follows_appends_in_order_with_heartbeats() {
    let (fixture, agent) = agent_with_fixture("");
    let log = fixture.alloc_root().join(LOG);
    let mut follow = Stream::open(&agent, &stream_url(LOG, "&offset=4&origin=end"));
    follow.read_until(WAIT, |b| frame_data(b) == b"side");
    assert!(follow.still_open_after(Duration::from_millis(1100)), "follow keeps the stream open");
    follow.read_until(WAIT, |b| frames(b).iter().any(|f| f.as_object().is_some_and(|o| o.is_empty())));
    for _ in 0..10 {
        append(&log, b"Hello from the other side");
        std::thread::sleep(Duration::from_millis(200));
    }
    let expected = format!("side{}", "Hello from the other side".repeat(10));
    follow.read_until(WAIT, |b| frame_data(b) == expected.as_bytes());
}

#[test]
fn heartbeats_flow_every_second_while_data_does() {
    let (fixture, agent) = agent_with_fixture("");
    let log = fixture.alloc_root().join(LOG);
    let mut follow = Stream::open(&agent, &stream_url(LOG, "&origin=end"));
    let writer = std::thread::spawn(move || {
        for _ in 0..23 {
            append(&log, b"tick\n");
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    assert!(follow.still_open_after(Duration::from_millis(4500)));
    writer.join().unwrap();
    let frames = frames(&follow.buffer);
    let heartbeats = frames.iter().filter(|f| f.as_object().is_some_and(|o| o.is_empty())).count();
    let data = frames.iter().filter(|f| f.get("Data").is_some()).count();
    assert!(data >= 15, "{data} data frames in 4.5 s");
    assert!(heartbeats >= 3, "{heartbeats} heartbeats beside {data} data frames in 4.5 s");
}

#[test]
fn a_truncation_and_the_data_after_it_share_a_frame() {
    let (fixture, agent) = agent_with_fixture("");
    let path = fixture.alloc_root().join("alloc/logs/trunc.txt");
    std::fs::write(&path, b"hello world").unwrap();
    let mut follow = Stream::open(&agent, &stream_url("alloc/logs/trunc.txt", ""));
    follow.read_until(WAIT, |b| frame_data(b) == b"hello world");
    // One syscall: the file shrinks below the read position with bytes already in it.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(3).unwrap();
    let body = follow.read_until(WAIT, |b| frames(b).iter().any(|f| f["FileEvent"] == "file truncated"));
    let event = frames(body).into_iter().find(|f| f["FileEvent"] == "file truncated").unwrap();
    assert_eq!(
        event.to_string(),
        r#"{"Data":"aGVs","File":"alloc/logs/trunc.txt","FileEvent":"file truncated","Offset":3}"#
    );
}

#[test]
fn truncation_and_deletion_mid_follow() {
    let (fixture, agent) = agent_with_fixture("");
    let path = fixture.alloc_root().join("alloc/logs/trunc.txt");
    std::fs::write(&path, b"hel").unwrap();
    let mut follow = Stream::open(&agent, &stream_url("alloc/logs/trunc.txt", ""));
    follow.read_until(WAIT, |b| frame_data(b) == b"hel");
    append(&path, b"lo");
    follow.read_until(WAIT, |b| frame_data(b) == b"hello");
    std::fs::write(&path, b"").unwrap();
    let body = follow.read_until(WAIT, |b| frames(b).iter().any(|f| f["FileEvent"] == "file truncated"));
    let event = frames(body).into_iter().find(|f| f["FileEvent"] == "file truncated").unwrap();
    assert_eq!(event.to_string(), r#"{"File":"alloc/logs/trunc.txt","FileEvent":"file truncated"}"#, "no data yet");
    append(&path, b"world");
    follow.read_until(WAIT, |b| frame_data(b) == b"helloworld");
    std::fs::remove_file(&path).unwrap();
    let body = follow.read_to_end(WAIT);
    let deleted = frames(&body).into_iter().find(|f| f["FileEvent"] == "file deleted").expect("a file deleted frame");
    assert_eq!(deleted["File"], "alloc/logs/trunc.txt");
}

#[test]
fn logs_read_plain_and_json_like_nomad() {
    let (fixture, agent) = agent_with_fixture("");
    let plain = agent.get(&logs_url("&plain=true&origin=end&offset=4"));
    assert_eq!((plain.status, plain.text().as_str()), (200, "side"));
    assert_eq!(plain.header("content-type"), Some("text/plain"));
    let whole = agent.get(&logs_url("&plain=true"));
    assert_eq!(whole.text(), "Hello from the other side");
    let json = agent.get(&logs_url(""));
    assert_eq!(json.header("content-type"), Some("application/json"));
    assert_eq!(frames(&json.body)[0]["File"], LOG);
    assert_eq!(frame_data(&json.body), b"Hello from the other side");

    // Rotated files are read in order; non-follow ends at the newest file's end.
    for (index, text) in [(1, "1"), (2, "2")] {
        fixture.write(&format!("alloc/logs/web.stdout.{index}"), text.as_bytes());
    }
    fixture.write("alloc/logs/web.stdout.0", b"0");
    assert_eq!(agent.get(&logs_url("&plain=true")).text(), "012");
    assert_eq!(agent.get(&logs_url("&plain=true&origin=end&offset=2")).text(), "12");
    let xss_fixture = "<script>alert(document.domain);</script>";
    fixture.write("alloc/logs/web.stderr.0", xss_fixture.as_bytes());
    let xss = agent.get(&format!("/v1/client/fs/logs/{ALLOC_ID}?task=web&type=stderr&plain=true"));
    assert_eq!((xss.text().as_str(), xss.header("content-type")), (xss_fixture, Some("text/plain")));
}

#[test]
fn logs_follow_rotation_and_gaps() {
    let (fixture, agent) = agent_with_fixture("");
    for (index, text) in [(0, "0"), (1, "1"), (2, "2")] {
        fixture.write(&format!("alloc/logs/web.stdout.{index}"), text.as_bytes());
    }
    let mut follow = Stream::open(&agent, &logs_url("&plain=true&follow=true"));
    follow.read_until(WAIT, |b| b == b"012");
    assert!(follow.still_open_after(Duration::from_millis(1100)));
    append(&fixture.alloc_root().join("alloc/logs/web.stdout.2"), b"3");
    follow.read_until(WAIT, |b| b == b"0123");
    // Written to the old file just before the rotation: not lost. Index 12 skips a gap.
    append(&fixture.alloc_root().join("alloc/logs/web.stdout.2"), b"4");
    fixture.write("alloc/logs/web.stdout.12", b"5");
    follow.read_until(WAIT, |b| b == b"012345");
    append(&fixture.alloc_root().join("alloc/logs/web.stdout.12"), b"6");
    follow.read_until(WAIT, |b| b == b"0123456");

    // JSON follow of the same files repeats Nomad's Hello-11-times test shape.
    let mut json = Stream::open(&agent, &logs_url("&follow=true&origin=end&offset=1"));
    json.read_until(WAIT, |b| frame_data(b) == b"6");
    for _ in 0..10 {
        append(&fixture.alloc_root().join("alloc/logs/web.stdout.12"), b"x");
    }
    json.read_until(WAIT, |b| frame_data(b) == b"6xxxxxxxxxx");
}

#[test]
fn stream_and_logs_parameter_errors() {
    let (_fixture, agent) = agent_with_fixture("");
    let unknown = "11111111-2222-4333-8444-555555555555";
    let id = ALLOC_ID;
    let cases: Vec<(String, u16, String)> = vec![
        ("/v1/client/fs/stream/".into(), 400, "must provide a valid alloc id".into()),
        (format!("/v1/client/fs/stream/{id}"), 400, "must provide a file name".into()),
        (
            format!("/v1/client/fs/stream/{id}?path=x&follow=maybe"),
            500,
            r#"failed to parse follow field to boolean: strconv.ParseBool: parsing "maybe": invalid syntax"#.into(),
        ),
        (
            format!("/v1/client/fs/stream/{id}?path=x&offset=z"),
            500,
            r#"error parsing offset: strconv.ParseInt: parsing "z": invalid syntax"#.into(),
        ),
        (format!("/v1/client/fs/stream/{id}?path=x&origin=middle"), 400, "origin must be start or end".into()),
        (format!("/v1/client/fs/stream/{id}?path=alloc"), 400, r#"file "alloc" is a directory"#.into()),
        (format!("/v1/client/fs/stream/{id}?path=../x"), 400, "Path escapes the alloc directory".into()),
        (
            format!("/v1/client/fs/stream/{id}?path={LOG}&offset=-1"),
            500,
            format!("can't seek to offset -1: seek {LOG}: invalid argument"),
        ),
        (format!("/v1/client/fs/stream/{unknown}?path=x"), 404, format!("Unknown allocation \"{unknown}\"")),
        (
            "/v1/client/fs/stream/foo?path=x".into(),
            400,
            "alloc lookup failed: index error: UUID must be 36 characters".into(),
        ),
        ("/v1/client/fs/logs/".into(), 400, "must provide a valid alloc id".into()),
        (format!("/v1/client/fs/logs/{id}"), 400, "must provide task name".into()),
        (format!("/v1/client/fs/logs/{id}?task=web"), 400, "must provide log type (stdout/stderr)".into()),
        (format!("/v1/client/fs/logs/{id}?task=web&type=STDOUT"), 400, "must provide log type (stdout/stderr)".into()),
        (
            format!("/v1/client/fs/logs/{id}?task=web&type=stdout&follow=2"),
            400,
            r#"failed to parse follow field to boolean: strconv.ParseBool: parsing "2": invalid syntax"#.into(),
        ),
        (
            format!("/v1/client/fs/logs/{id}?task=web&type=stdout&plain=x"),
            400,
            r#"failed to parse plain field to boolean: strconv.ParseBool: parsing "x": invalid syntax"#.into(),
        ),
        (
            format!("/v1/client/fs/logs/{id}?task=web&type=stdout&offset=1e3"),
            400,
            r#"error parsing offset: strconv.ParseInt: parsing "1e3": invalid syntax"#.into(),
        ),
        (format!("/v1/client/fs/logs/{id}?task=web&type=stdout&origin=x"), 400, "origin must be start or end".into()),
        (format!("/v1/client/fs/logs/{id}?task=db&type=stdout"), 400, r#"unknown task name "db""#.into()),
        (
            format!("/v1/client/fs/logs/{unknown}?task=web&type=stdout&origin=end&plain=true"),
            404,
            format!("Unknown allocation \"{unknown}\""),
        ),
    ];
    for (url, status, body) in cases {
        let response = agent.get(&url);
        assert_eq!((response.status, response.text()), (status, body.clone()), "GET {url}");
    }
    let missing = agent.get(&stream_url("nope", ""));
    assert_eq!(missing.status, 400);
    assert!(missing.text().contains("no such file or directory"), "{}", missing.text());
    std::fs::remove_file(_fixture.alloc_root().join("alloc/logs/web.stderr.0")).unwrap();
    let no_logs = agent.get(&format!("/v1/client/fs/logs/{id}?task=web&type=stderr&follow=true"));
    assert_eq!(
        (no_logs.status, no_logs.text().as_str()),
        (404, r#"log entry for task "web" and log type "stderr" not found"#)
    );
    agent.assert_healthy();
}

/// inotify watches and open descriptors of the followed file held by the agent.
fn agent_resources(agent: &Agent, file: &std::path::Path) -> (usize, usize) {
    let pid = agent.child.id();
    let mut watches = 0;
    let mut open = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().filter_map(Result::ok) {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if target == file {
            open += 1;
        }
        if target.to_string_lossy().contains("inotify") {
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy()))
                .unwrap_or_default();
            watches += info.lines().filter(|l| l.starts_with("inotify wd:")).count();
        }
    }
    (watches, open)
}

#[test]
fn dropped_followers_release_watches_and_files() {
    let (fixture, agent) = agent_with_fixture("");
    let file = fixture.alloc_root().join(LOG).canonicalize().unwrap();
    for _ in 0..200 {
        let mut stream = std::net::TcpStream::connect(agent.base.trim_start_matches("http://")).unwrap();
        let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", logs_url("&follow=true&plain=true"));
        stream.write_all(request.as_bytes()).unwrap();
        let mut first = [0u8; 64];
        let _ = stream.read(&mut first).unwrap();
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let (watches, open) = agent_resources(&agent, &file);
        if watches == 0 && open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "after 200 dropped followers: {watches} watches, {open} open files remain");
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.assert_healthy();
}

#[test]
fn a_stalled_reader_does_not_grow_memory() {
    let (fixture, agent) = agent_with_fixture("");
    let big: Vec<u8> = (0..64 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    fixture.write("alloc/data/big.bin", &big);
    let rss = || memory_kib(agent.child.id(), "VmRSS") * 1024;
    let before = rss();
    let mut stalled = std::net::TcpStream::connect(agent.base.trim_start_matches("http://")).unwrap();
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", stream_url("alloc/data/big.bin", ""));
    stalled.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let during = rss();
    assert!(during < before + 32 * 1024 * 1024, "RSS grew from {before} to {during} with a stalled reader of 64 MiB");
    agent.assert_healthy();
}

/// A compressed follower whose client left gives its stream slot back at once, although the
/// file never changes (nothing is written for the stream to notice the client by).
#[test]
fn a_gone_compressed_follower_is_released_without_a_write() {
    let (_fixture, agent) = agent_with_fixture("limits {\n  max_streams = 1\n}\n");
    let cat = format!("/v1/client/fs/cat/{ALLOC_ID}?path={LOG}");
    for (plain, encoding) in [("true", "gzip"), ("false", "gzip"), ("true", "deflate"), ("true", "identity")] {
        let mut follower = std::net::TcpStream::connect(agent.base.trim_start_matches("http://")).unwrap();
        let path = logs_url(&format!("&follow=true&plain={plain}"));
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {encoding}\r\n\r\n");
        follower.write_all(request.as_bytes()).unwrap();
        let mut head = [0u8; 12];
        follower.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "plain={plain} {encoding}");
        assert_eq!(agent.get(&cat).status, 429, "the follower holds the only stream slot (cat counts too)");

        drop(follower);
        let left = Instant::now();
        while agent.get(&cat).status != 200 {
            assert!(left.elapsed() < Duration::from_secs(2), "plain={plain} {encoding}: the slot is still held");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Followers of one file share its reads: every one of them gets every byte, in order, and one
/// that stops reading holds back nobody else (it gets its bytes, intact, when it reads again).
#[test]
fn followers_of_one_file_each_get_every_byte_and_a_stalled_one_holds_back_nobody() {
    let (fixture, agent) = agent_with_fixture("");
    let log = fixture.alloc_dir().join(ALLOC_ID).join(LOG);
    let start = std::fs::metadata(&log).unwrap().len().to_string();
    let url = stream_url(LOG, &format!("&offset={start}"));
    // Held without reading: far more than socket buffers and the agent's budget will be written.
    let stalled = Stream::request(&agent, &url);
    let mut followers: Vec<Stream> = (0..8).map(|_| Stream::open(&agent, &url)).collect();
    assert!(followers.iter().all(|f| f.status == 200) && stalled.status() == 200);

    // 8 MiB of lines in appends of varied sizes, so wake-ups and shared reads interleave.
    let mut written = Vec::new();
    for i in 0..2048u32 {
        let line = format!("line {i:05} {}\n", "x".repeat((i as usize * 37) % 8000));
        append(&log, line.as_bytes());
        written.extend_from_slice(line.as_bytes());
    }
    for (n, follower) in followers.iter_mut().enumerate() {
        let data = follower.data_until(written.len(), WAIT * 3);
        assert!(
            data == written,
            "follower {n} got {} bytes that differ from the {} written",
            data.len(),
            written.len()
        );
    }
    // One more line reaches every reader while the stalled follower still has megabytes unread.
    append(&log, b"after the stall\n");
    written.extend_from_slice(b"after the stall\n");
    for follower in &mut followers {
        let data = follower.data_until(b"after the stall\n".len(), WAIT);
        assert_eq!(data, b"after the stall\n");
    }
    let data = Stream::read(stalled).data_until(written.len(), WAIT * 3);
    assert!(
        data == written,
        "the stalled follower got {} bytes that differ from the {} written",
        data.len(),
        written.len()
    );
    agent.assert_healthy();
}
