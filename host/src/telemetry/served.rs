//! Bytes served per endpoint, as they leave for the client.
//!
//! The server wraps every response body in [`CountedBody`], which adds each frame's length to its
//! endpoint's counter as hyper sends it: compressed bytes when the answer is compressed, and a
//! follow that runs for hours is counted as it goes, not when it ends. Endpoints are a fixed
//! set of labels ([`ENDPOINTS`]); allocation IDs and paths never become labels.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Buf;
use hyper::body::{Body, Frame, SizeHint};

/// The `endpoint` label values, in the order [`ServedBytes::counts`] reports them.
pub const ENDPOINTS: [&str; 16] = [
    "client/stats",
    "client/allocation/stats",
    "client/allocation/gc",
    "client/gc",
    "client/fs/ls",
    "client/fs/stat",
    "client/fs/cat",
    "client/fs/readat",
    "client/fs/stream",
    "client/fs/logs",
    "allocations",
    "allocation",
    "metrics",
    "agent/health",
    "ui",
    "other",
];

/// One counter per endpoint.
#[derive(Default)]
pub struct ServedBytes([AtomicU64; ENDPOINTS.len()]);

impl ServedBytes {
    /// The endpoint a request path names (an index into [`ENDPOINTS`]).
    pub fn endpoint(path: &str) -> usize {
        let label = match path.strip_prefix("/v1/") {
            Some("client/stats") => "client/stats",
            Some("client/gc") => "client/gc",
            Some(rest) if rest.starts_with("client/fs/") => {
                let operation = rest.split('/').nth(2).unwrap_or_default();
                match operation {
                    "ls" | "stat" | "cat" | "readat" | "stream" | "logs" => &rest[..10 + operation.len()],
                    _ => "other",
                }
            }
            Some(rest) if rest.starts_with("client/allocation/") => match rest.rsplit('/').next() {
                Some("stats") => "client/allocation/stats",
                Some("gc") => "client/allocation/gc",
                _ => "other",
            },
            Some("allocations") => "allocations",
            Some(rest) if rest.starts_with("allocation/") => "allocation",
            Some("metrics") => "metrics",
            Some("agent/health") => "agent/health",
            _ if path == "/ui" || path.starts_with("/ui/") => "ui",
            _ => "other",
        };
        ENDPOINTS.iter().position(|known| *known == label).unwrap_or(ENDPOINTS.len() - 1)
    }

    /// `body`, counted against `endpoint` as it is sent.
    pub fn count<B>(self: &Arc<Self>, endpoint: usize, body: B) -> CountedBody<B> {
        CountedBody { body, served: Arc::clone(self), endpoint }
    }

    /// `(endpoint, bytes)` for every endpoint that has served anything.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        ENDPOINTS
            .iter()
            .zip(&self.0)
            .map(|(endpoint, bytes)| (*endpoint, bytes.load(Ordering::Relaxed)))
            .filter(|(_, bytes)| *bytes > 0)
            .collect()
    }
}

/// A response body whose data frames are counted as they are polled.
pub struct CountedBody<B> {
    body: B,
    served: Arc<ServedBytes>,
    endpoint: usize,
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.served.0[self.endpoint].fetch_add(data.remaining() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_a_fixed_set_of_endpoints() {
        let id = "5fc98185-17ff-26bc-a802-0c74fa471c99";
        for (path, label) in [
            ("/v1/client/stats", "client/stats"),
            (&format!("/v1/client/allocation/{id}/stats") as &str, "client/allocation/stats"),
            (&format!("/v1/client/allocation/{id}/gc"), "client/allocation/gc"),
            ("/v1/client/gc", "client/gc"),
            (&format!("/v1/client/fs/cat/{id}"), "client/fs/cat"),
            (&format!("/v1/client/fs/logs/{id}"), "client/fs/logs"),
            ("/v1/client/fs/readat/", "client/fs/readat"),
            ("/v1/client/fs/bogus/x", "other"),
            ("/v1/allocations", "allocations"),
            (&format!("/v1/allocation/{id}"), "allocation"),
            ("/v1/metrics", "metrics"),
            ("/v1/agent/health", "agent/health"),
            ("/ui/", "ui"),
            ("/", "other"),
            ("/v1/client/allocation/x/restart", "other"),
        ] {
            assert_eq!(ENDPOINTS[ServedBytes::endpoint(path)], label, "{path}");
        }
    }
}
