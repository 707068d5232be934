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

use std::pin::Pin;
use std::time::Duration;

use base64_simd::STANDARD as BASE64;
use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use super::body::{self, BodyReceiver, BodySender};

/// Maximum data bytes per frame (Nomad's `streamFrameSize`).
pub const FRAME_SIZE: usize = 64 * 1024;
/// How often a JSON stream sends `{}`.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

pub const FILE_DELETED: &str = "file deleted";
pub const FILE_TRUNCATED: &str = "file truncated";

/// Encodes one frame as Nomad does.
pub fn encode(file: &str, event: &str, data: &[u8], offset: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(file, event, data.len()));
    encode_into(&mut out, file, event, data, offset);
    out
}

/// An upper bound of a frame's size, for reserving its buffer (names needing escapes may
/// grow past it; the buffer then grows once).
fn encoded_len(file: &str, event: &str, data_len: usize) -> usize {
    BASE64.encoded_length(data_len) + file.len() + event.len() + 64
}

/// Appends one frame to `out`: the bytes serde_json writes for Nomad's `StreamFrame` (keys in
/// order, empty fields omitted), with the base64 written straight into the buffer.
pub fn encode_into(out: &mut Vec<u8>, file: &str, event: &str, data: &[u8], offset: u64) {
    let mut separator = b'{';
    let mut key = |out: &mut Vec<u8>, name: &str| {
        out.push(separator);
        separator = b',';
        out.extend_from_slice(name.as_bytes());
    };
    if !data.is_empty() {
        key(out, "\"Data\":\"");
        BASE64.encode_append(data, out);
        out.push(b'"');
    }
    for (name, value) in [("\"File\":", file), ("\"FileEvent\":", event)] {
        if !value.is_empty() {
            key(out, name);
            serde_json::to_writer(&mut *out, value).expect("writing to a Vec cannot fail");
        }
    }
    if offset != 0 {
        key(out, "\"Offset\":");
        out.extend_from_slice(itoa::Buffer::new().format(offset).as_bytes());
    }
    if separator == b'{' {
        out.push(b'{');
    }
    out.push(b'}');
}

/// The client went away; the stream should end.
#[derive(Debug)]
pub struct Disconnected;

/// Where a stream's output goes.
pub struct Sink {
    tx: BodySender,
    /// Fires when the next heartbeat is due; `None` in plain mode (bytes only: no frames, no
    /// heartbeats). It lives as long as the sink and is re-armed once per heartbeat: a
    /// follower waits after every append, and a timer armed per wait cost a timer-wheel entry
    /// each time.
    heartbeat: Option<Pin<Box<Sleep>>>,
}

impl Sink {
    /// A sink and the receiving end for the response body.
    pub fn new(plain: bool) -> (Self, BodyReceiver) {
        let (tx, rx) = body::channel();
        let heartbeat = (!plain).then(|| Box::pin(tokio::time::sleep(HEARTBEAT)));
        (Self { tx, heartbeat }, rx)
    }

    fn plain(&self) -> bool {
        self.heartbeat.is_none()
    }

    /// Sends `data` read from `file`, ending at position `end`, in frames of at most 64 KiB;
    /// the first frame also carries `event` when there is one.
    pub async fn data(&mut self, file: &str, event: &str, data: &Bytes, end: u64) -> Result<(), Disconnected> {
        if self.plain() {
            return self.write(data.clone()).await;
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
        if self.plain() { Ok(()) } else { self.write(Bytes::from(encode(file, event, &[], offset))).await }
    }

    /// Appends an error's text: after the first byte the status can no longer change.
    pub async fn error(&mut self, message: &str) -> Result<(), Disconnected> {
        self.write(Bytes::from(message.to_owned())).await
    }

    /// What a stream waiting for its file also waits for: the client leaving, and the next
    /// heartbeat coming due (never, in plain mode; then call [`Sink::heartbeat_if_due`]).
    pub fn idle_events(&mut self) -> (impl Future<Output = ()> + '_, impl Future<Output = ()> + '_) {
        let timer = self.heartbeat.as_mut();
        let heartbeat = async move {
            match timer {
                Some(timer) => timer.await,
                None => std::future::pending().await,
            }
        };
        (self.tx.closed(), heartbeat)
    }

    /// Sends `{}` when its second has come; like Go's ticker, a tick missed while the client
    /// was not reading is dropped rather than sent in a burst.
    pub async fn heartbeat_if_due(&mut self) -> Result<(), Disconnected> {
        let now = Instant::now();
        let Some(timer) = self.heartbeat.as_mut() else { return Ok(()) };
        let due = timer.deadline();
        if now < due {
            return Ok(());
        }
        let next = due + HEARTBEAT;
        timer.as_mut().reset(if next > now { next } else { now + HEARTBEAT });
        self.write(Bytes::from_static(b"{}")).await
    }

    async fn write(&mut self, bytes: Bytes) -> Result<(), Disconnected> {
        self.tx.send(bytes).await.map_err(|_| Disconnected)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;

    /// The frame as serde_json wrote it before frames were written by hand.
    #[derive(Serialize)]
    struct SerdeFrame<'a> {
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

    proptest! {
        #[test]
        fn frames_are_byte_identical_to_serde_json(
            file in "\\PC{0,12}|[\"\\\\\u{0}-\u{1f}\u{7f}<>&\u{2028}é]{0,6}",
            event in prop_oneof![Just(""), Just(FILE_TRUNCATED), Just(FILE_DELETED)],
            data in proptest::collection::vec(any::<u8>(), 0..300),
            offset in prop_oneof![Just(0u64), any::<u64>()],
        ) {
            use base64::Engine;
            let base64 = base64::engine::general_purpose::STANDARD.encode(&data);
            let expected = serde_json::to_vec(&SerdeFrame { data: &base64, file: &file, file_event: event, offset }).unwrap();
            prop_assert_eq!(String::from_utf8(encode(&file, event, &data, offset)).unwrap(), String::from_utf8(expected).unwrap());
        }
    }

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
        let data = Bytes::from(vec![b'a'; FRAME_SIZE + 10]);
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
