//! Moving file bytes from a storage backend to an HTTP body.
//!
//! * [`body`] is the byte-bounded channel every streamed response body goes through.
//! * [`compress`] is gzip/deflate of response bodies, in parallel slices off the async workers.
//! * [`raw`] serves cat and readat: `read_at` chunks of the body budget.
//! * [`frame`] is Nomad's stream framing and the output [`frame::Sink`] (JSON or plain).
//! * [`follow`] reads one file and follows it (inotify via [`watch`], plus a poll timer).
//! * [`shared`] lets the followers of one file share its reads.
//! * [`logs`] picks the starting log file and walks rotations.
//!
//! Every stream runs in its own task writing into a bounded channel, so a slow client
//! pushes back and a gone client ends the task (and drops its watches).

pub mod body;
pub mod compress;
pub mod follow;
pub mod frame;
pub mod logs;
pub mod raw;
pub mod shared;
pub mod watch;

use follow::{Change, Cursor, StreamEnd};
use frame::Sink;

/// `fs/stream`: streams an opened file from its offset, following unless told not to.
pub async fn stream_file(mut cursor: Cursor, follow: bool, sink: &mut Sink) -> Result<(), StreamEnd> {
    let mut no_limit = None;
    loop {
        let before = cursor.offset;
        cursor.drain(sink, &mut no_limit).await?;
        if !follow {
            return Ok(());
        }
        if cursor.offset == before {
            // Nothing new: the file may have been truncated or deleted.
            match cursor.check(sink).await? {
                Change::Deleted => return Ok(()),
                Change::Truncated => continue,
                Change::None => {}
            }
        }
        cursor.wait(sink, None).await?;
    }
}

/// Runs a stream to its end, appending a mid-stream error's text as Nomad does.
pub async fn finish(result: Result<(), StreamEnd>, sink: &mut Sink) {
    if let Err(StreamEnd::Failed(message)) = result {
        tracing::debug!("stream ended with an error: {message}");
        let _ = sink.error(&message).await;
    }
}
