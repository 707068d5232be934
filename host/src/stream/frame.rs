//! Nomad's stream framing (`client/lib/streamframer`) and the sink that writes it.
//!
//! JSON mode writes concatenated `StreamFrame` objects — keys sorted (`Data, File, FileEvent,
//! Offset`), every field omitted when empty, `Data` base64 — at most 64 KiB of data per frame,
//! and a `{}` heartbeat every second whether or not data flows (Nomad's framer runs a ticker;
//! clients use it as a keep-alive). An event and the data read right after it share a frame,
//! as Nomad sends a truncation. Plain mode writes only the data bytes.
//! Unlike Nomad's framer there is no 200 ms batch window: a frame leaves as soon as a read
//! returns, so followers see new bytes in milliseconds; reads at the data rate fill 64 KiB
//! frames anyway.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;

use super::body::{self, BodyReceiver, BodySender};

/// Maximum data bytes per frame (Nomad's `streamFrameSize`).
pub const FRAME_SIZE: usize = 64 * 1024;
/// How often a JSON stream sends `{}`.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

pub const FILE_DELETED: &str = "file deleted";
pub const FILE_TRUNCATED: &str = "file truncated";

#[derive(Serialize)]
struct Frame<'a> {
    #[serde(rename = "Data", skip_serializing_if = "str::is_empty")]
    data: &'a str,
    #[serde(rename = "File", skip_serializing_if = "str::is_empty")]
    file: &'a str,
    #[serde(rename = "FileEvent", skip_serializing_if = "str::is_empty")]
    file_event: &'a str,
    #[serde(rename = "Offset", skip_serializing_if = "is_zero")]
    offset: u64,
}

fn is_zero(offset: &u64) -> bool {
    *offset == 0
}

/// Encodes one frame as Nomad does.
pub fn encode(file: &str, event: &str, data: &[u8], offset: u64) -> Vec<u8> {
    let data = STANDARD.encode(data);
    serde_json::to_vec(&Frame { data: &data, file, file_event: event, offset }).expect("frames always encode")
}

/// The client went away; the stream should end.
#[derive(Debug)]
pub struct Disconnected;

/// Where a stream's output goes.
pub struct Sink {
    tx: BodySender,
    plain: bool,
    next_heartbeat: Instant,
}

impl Sink {
    /// A sink and the receiving end for the response body.
    pub fn new(plain: bool) -> (Self, BodyReceiver) {
        let (tx, rx) = body::channel();
        (Self { tx, plain, next_heartbeat: Instant::now() + HEARTBEAT }, rx)
    }

    /// Sends `data` read from `file`, ending at position `end`, in frames of at most 64 KiB;
    /// the first frame also carries `event` when there is one.
    pub async fn data(&mut self, file: &str, event: &str, data: &[u8], end: u64) -> Result<(), Disconnected> {
        if self.plain {
            return self.write(Bytes::copy_from_slice(data)).await;
        }
        let mut start = end - data.len() as u64;
        let mut event = event;
        for piece in data.chunks(FRAME_SIZE) {
            start += piece.len() as u64;
            self.heartbeat_if_due().await?;
            self.write(Bytes::from(encode(file, event, piece, start))).await?;
            event = "";
        }
        Ok(())
    }

    /// Sends an event-only frame (JSON mode only).
    pub async fn event(&mut self, file: &str, event: &str, offset: u64) -> Result<(), Disconnected> {
        if self.plain { Ok(()) } else { self.write(Bytes::from(encode(file, event, &[], offset))).await }
    }

    /// Appends an error's text: after the first byte the status can no longer change.
    pub async fn error(&mut self, message: &str) -> Result<(), Disconnected> {
        self.write(Bytes::from(message.to_owned())).await
    }

    /// When the next heartbeat is due (JSON mode), or `None` in plain mode.
    pub fn heartbeat_due(&self) -> Option<Instant> {
        (!self.plain).then_some(self.next_heartbeat)
    }

    /// Sends `{}` when its second has come; like Go's ticker, a tick missed while the client
    /// was not reading is dropped rather than sent in a burst.
    pub async fn heartbeat_if_due(&mut self) -> Result<(), Disconnected> {
        let now = Instant::now();
        match self.heartbeat_due() {
            Some(due) if now >= due => {
                let next = due + HEARTBEAT;
                self.next_heartbeat = if next > now { next } else { now + HEARTBEAT };
                self.write(Bytes::from_static(b"{}")).await
            }
            _ => Ok(()),
        }
    }

    /// Resolves when the client has gone away.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    async fn write(&mut self, bytes: Bytes) -> Result<(), Disconnected> {
        self.tx.send(bytes).await.map_err(|_| Disconnected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_nomads_bytes() {
        let frame = encode("alloc/logs/web.stdout.0", "", b"<script>alert(document.domain);</script>", 40);
        assert_eq!(
            String::from_utf8(frame).unwrap(),
            r#"{"Data":"PHNjcmlwdD5hbGVydChkb2N1bWVudC5kb21haW4pOzwvc2NyaXB0Pg==","File":"alloc/logs/web.stdout.0","Offset":40}"#
        );
        assert_eq!(
            String::from_utf8(encode("x", FILE_TRUNCATED, &[], 0)).unwrap(),
            r#"{"File":"x","FileEvent":"file truncated"}"#
        );
        assert_eq!(String::from_utf8(encode("", "", &[], 0)).unwrap(), "{}");
    }

    #[tokio::test]
    async fn data_is_split_into_64k_frames_with_end_offsets() {
        let (mut sink, mut rx) = Sink::new(false);
        let data = vec![b'a'; FRAME_SIZE + 10];
        // The frames exceed the body budget: the sink waits for them to be read.
        tokio::spawn(async move { sink.data("f", FILE_TRUNCATED, &data, 100 + data.len() as u64).await.unwrap() });
        let mut frames = Vec::new();
        while let Some(frame) = rx.recv().await {
            let value: serde_json::Value = serde_json::from_slice(&frame).unwrap();
            frames.push((value["Offset"].as_u64().unwrap(), value["FileEvent"].as_str().map(str::to_owned)));
        }
        let end = 100 + FRAME_SIZE as u64;
        assert_eq!(
            frames,
            [(end, Some(FILE_TRUNCATED.to_owned())), (end + 10, None)],
            "the event rides the first frame"
        );
    }
}
