//! Reading and following a task log or a file through Nomad's framed stream endpoints
//! (`fs/logs`, `fs/stream`), so that following survives rotation, dropped connections and
//! agent restarts without losing or repeating a byte.
//!
//! Every frame names its file and the offset just past its data, so the reader always knows
//! its [`Position`]. After a reconnect it asks for the stream from that position (for logs:
//! the retained log files before the current one, summed, plus the offset, as Nomad's
//! `origin=start` counts) and drops whatever a frame repeats of what was already printed: a
//! frame of an older log file, or the part of one before the position. A 404 (the allocation
//! was collected) ends following cleanly.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::http::{Api, is_not_found, query};

/// Nomad's `StreamFrame`; a heartbeat is all defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct Frame {
    data: String,
    file: String,
    file_event: String,
    offset: u64,
}

/// Turns the bytes of a framed stream into frames, keeping a frame cut between chunks.
#[derive(Default)]
struct Frames {
    pending: Vec<u8>,
}

impl Frames {
    fn push(&mut self, chunk: &[u8]) -> anyhow::Result<Vec<Frame>> {
        self.pending.extend_from_slice(chunk);
        let mut stream = serde_json::Deserializer::from_slice(&self.pending).into_iter::<Frame>();
        let mut frames = Vec::new();
        let mut used = 0;
        loop {
            match stream.next() {
                Some(Ok(frame)) => frames.push(frame),
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => anyhow::bail!("a stream frame did not decode: {e}"),
                None => break,
            }
            used = stream.byte_offset();
        }
        self.pending.drain(..used);
        Ok(frames)
    }
}

/// The file the last frame named and the offset just past its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub file: String,
    pub offset: u64,
}

/// What is read: a task's log (across its rotated files) or one file.
pub enum Source {
    Logs { alloc: String, task: String, kind: &'static str },
    File { alloc: String, path: String },
}

impl Source {
    /// The order of a frame's file: a log's rotation index, 0 for a single file.
    fn order(&self, file: &str) -> u64 {
        match self {
            Source::Logs { .. } => file.rsplit('.').next().and_then(|i| i.parse().ok()).unwrap_or(0),
            Source::File { .. } => 0,
        }
    }

    /// The request for the stream from `origin`/`offset`.
    fn url(&self, origin: &str, offset: u64, follow: bool) -> String {
        let (offset, follow) = (offset.to_string(), follow.to_string());
        match self {
            Source::Logs { alloc, task, kind } => {
                let q = query(&[
                    ("task", task),
                    ("type", kind),
                    ("origin", origin),
                    ("offset", &offset),
                    ("follow", &follow),
                ]);
                format!("/v1/client/fs/logs/{alloc}?{q}")
            }
            Source::File { alloc, path } => {
                let q = query(&[("path", path), ("origin", origin), ("offset", &offset), ("follow", &follow)]);
                format!("/v1/client/fs/stream/{alloc}?{q}")
            }
        }
    }

    /// The request that resumes at `from` (from the start when `None`).
    async fn resume_url(&self, api: &Api, from: Option<&Position>, follow: bool) -> anyhow::Result<String> {
        let Some(from) = from else { return Ok(self.url("start", 0, follow)) };
        let Source::Logs { alloc, task, kind } = self else { return Ok(self.url("start", from.offset, follow)) };
        let listing = api.json(&format!("/v1/client/fs/ls/{alloc}?{}", query(&[("path", "alloc/logs")]))).await?;
        let prefix = format!("{task}.{kind}.");
        let current = self.order(&from.file);
        let files: Vec<(u64, u64)> = (listing.as_array().into_iter().flatten())
            .filter_map(|e| {
                Some((e["Name"].as_str()?.strip_prefix(&prefix)?.parse::<u64>().ok()?, e["Size"].as_u64()?))
            })
            .collect();
        let before: u64 = files.iter().filter(|(index, _)| *index < current).map(|(_, size)| size).sum();
        // Rotated away meanwhile: resume at the start of the next retained file.
        let within = if files.iter().any(|(index, _)| *index == current) { from.offset } else { 0 };
        Ok(self.url("start", before + within, follow))
    }

    /// The bytes of `frame` not yet printed, moving `at` past them.
    fn accept(&self, at: &mut Option<Position>, frame: &Frame) -> anyhow::Result<Vec<u8>> {
        let data = STANDARD.decode(&frame.data)?;
        if frame.file.is_empty() {
            return Ok(Vec::new()); // a heartbeat
        }
        let start = frame.offset.saturating_sub(data.len() as u64);
        let skip = match at {
            Some(p) if frame.file_event == "file truncated" && p.file == frame.file => 0,
            Some(p) if self.order(&frame.file) < self.order(&p.file) => return Ok(Vec::new()),
            Some(p) if self.order(&frame.file) == self.order(&p.file) => p.offset.saturating_sub(start),
            _ => 0,
        };
        if frame.file_event == "file truncated" || skip < data.len() as u64 || at.is_none() {
            *at = Some(Position { file: frame.file.clone(), offset: frame.offset });
        }
        Ok(data.get(skip as usize..).unwrap_or_default().to_vec())
    }

    /// Reads one response to its end, printing new bytes to `out` (or collecting them when
    /// `out` is a buffer) and moving `at`.
    async fn read(&self, api: &Api, url: &str, at: &mut Option<Position>, out: &mut dyn Write) -> anyhow::Result<()> {
        let mut response = api.get(url).await?;
        let mut frames = Frames::default();
        while let Some(chunk) = response.chunk().await? {
            for frame in frames.push(&chunk)? {
                let bytes = self.accept(at, &frame)?;
                if !bytes.is_empty() {
                    out.write_all(&bytes)?;
                    out.flush()?;
                }
            }
        }
        Ok(())
    }

    /// The last `back` bytes (without following) and the position after them.
    pub async fn last_bytes(&self, api: &Api, back: u64) -> anyhow::Result<(Vec<u8>, Option<Position>)> {
        let (mut bytes, mut at) = (Vec::new(), None);
        self.read(api, &self.url("end", back, false), &mut at, &mut bytes).await?;
        Ok((bytes, at))
    }

    /// Prints everything from `at` on, without following.
    pub async fn print(&self, api: &Api, mut at: Option<Position>, out: &mut dyn Write) -> anyhow::Result<()> {
        let url = self.resume_url(api, at.as_ref(), false).await?;
        self.read(api, &url, &mut at, out).await
    }

    /// Prints everything from `at` on and follows until the allocation is gone, reconnecting
    /// (with a growing pause, at most 2 s) whenever the connection ends.
    pub async fn follow(&self, api: &Api, mut at: Option<Position>, out: &mut dyn Write) -> anyhow::Result<()> {
        let mut pause = Duration::from_millis(100);
        // The position at the last reported outage: one line per outage, not per retry.
        let mut reported = None;
        loop {
            let result = match self.resume_url(api, at.as_ref(), true).await {
                Ok(url) => self.read(api, &url, &mut at, out).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if is_not_found(&e) => {
                    eprintln!("allocd: stopped following: {e:#}");
                    return Ok(());
                }
                Err(e) if e.downcast_ref::<super::http::StatusError>().is_some() => return Err(e),
                Err(e) if e.downcast_ref::<std::io::Error>().is_some() => return Err(e),
                Err(e) if reported.as_ref() != Some(&at) => {
                    eprintln!("allocd: connection lost ({e:#}); reconnecting");
                    (reported, pause) = (Some(at.clone()), Duration::from_millis(100));
                }
                Err(_) => {}
                Ok(()) => pause = Duration::from_millis(100),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// The last `lines` lines of `data` (a final newline ends the last line, it does not start one).
pub fn last_lines(data: &[u8], lines: u64) -> &[u8] {
    if lines == 0 {
        return &[];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let newlines = body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n');
    let start = newlines.map(|(i, _)| i + 1).nth(lines as usize - 1).unwrap_or(0);
    &data[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(file: &str, data: &[u8], offset: u64) -> Frame {
        Frame { data: STANDARD.encode(data), file: file.into(), file_event: String::new(), offset }
    }

    #[test]
    fn frames_cut_anywhere_decode_whole() {
        let text = br#"{"Data":"aGk=","File":"f","Offset":2}{}{"Data":"eA==","File":"f","Offset":3}"#;
        for cut in 0..text.len() {
            let mut frames = Frames::default();
            let mut all = frames.push(&text[..cut]).unwrap();
            all.extend(frames.push(&text[cut..]).unwrap());
            assert_eq!(all.len(), 3, "cut at {cut}");
            assert_eq!((all[2].file.as_str(), all[2].offset), ("f", 3));
        }
    }

    #[test]
    fn resumed_frames_are_not_repeated() {
        let logs = Source::Logs { alloc: "a".into(), task: "web".into(), kind: "stdout" };
        let mut at = Some(Position { file: "alloc/logs/web.stdout.1".into(), offset: 4 });
        assert!(logs.accept(&mut at, &frame("alloc/logs/web.stdout.0", b"old", 3)).unwrap().is_empty());
        assert_eq!(logs.accept(&mut at, &frame("alloc/logs/web.stdout.1", b"abcdef", 6)).unwrap(), b"ef");
        assert_eq!(at.as_ref().unwrap().offset, 6);
        assert!(logs.accept(&mut at, &frame("alloc/logs/web.stdout.1", b"ef", 6)).unwrap().is_empty());
        assert_eq!(logs.accept(&mut at, &frame("alloc/logs/web.stdout.2", b"new", 3)).unwrap(), b"new");
        assert_eq!(at, Some(Position { file: "alloc/logs/web.stdout.2".into(), offset: 3 }));
        assert!(logs.accept(&mut at, &Frame::default()).unwrap().is_empty(), "heartbeat");
    }

    #[test]
    fn last_lines_like_tail() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"a\nb\n", 0), b"");
    }
}
