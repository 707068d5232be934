//! Go's `http.ServeMux` canonical paths, which Nomad's clients meet before any handler runs.
//!
//! Nomad serves on a `ServeMux`: a path holding `//`, `/./` or `/../` (or ending in `/.` or
//! `/..`) is answered `301 Moved Permanently` to the cleaned path, and the root of a subtree
//! without its slash (`/v1/client/fs`) to the subtree (`/v1/client/fs/`); the query is kept.
//! So a client whose base address ends in `/` (sending `//v1/...`) is redirected, not refused.
//! The answer is `http.Redirect`'s: `Location`, and for GET a short HTML body. As in Go the
//! escaped path is cleaned (`%2F` is not a separator); unlike Go 1.22+'s mux the `Location`
//! keeps the client's escapes rather than escaping `%` once more.

use std::borrow::Cow;

use bytes::Bytes;
use warp::http::header::{self, HeaderValue};
use warp::http::{Method, StatusCode};

use super::response::{ApiResponse, Body};

/// The subtrees allocd serves, registered as Go patterns ending in `/`: their bare roots redirect.
const SUBTREES: [&str; 4] = ["/v1/client/fs", "/v1/client/allocation", "/v1/allocation", "/ui"];

/// Where `ServeMux` redirects a request for `raw_path` (as sent, still escaped), query kept;
/// `None` when the path is served as it is.
pub fn redirect_target(raw_path: &str, raw_query: &str) -> Option<String> {
    // Every request passes here: a clean path costs a scan, no allocation.
    let cleaned = if needs_cleaning(raw_path) { Cow::Owned(clean_path(raw_path)) } else { Cow::Borrowed(raw_path) };
    let target = if SUBTREES.contains(&cleaned.as_ref()) {
        format!("{cleaned}/")
    } else if cleaned != raw_path {
        cleaned.into_owned()
    } else {
        return None;
    };
    Some(if raw_query.is_empty() { target } else { format!("{target}?{raw_query}") })
}

/// Whether `clean_path` would change `path`.
fn needs_cleaning(path: &str) -> bool {
    !path.starts_with('/') || path.contains("//") || path.split('/').any(|element| matches!(element, "." | ".."))
}

/// Go's `http.Redirect(w, r, location, 301)` for an absolute path.
pub fn moved_permanently(method: &Method, location: &str) -> ApiResponse {
    redirect(method, location, StatusCode::MOVED_PERMANENTLY)
}

/// Go's `http.Redirect(w, r, location, status)` for an absolute path.
pub fn redirect(method: &Method, location: &str, status: StatusCode) -> ApiResponse {
    let body = if method == Method::GET {
        let text = status.canonical_reason().unwrap_or_default();
        Body::Full(Bytes::from(format!("<a href=\"{}\">{text}</a>.\n\n", html_escape(location))))
    } else {
        Body::Empty
    };
    let mut response = ApiResponse::new(status, body);
    if matches!(*method, Method::GET | Method::HEAD) {
        response = response.with_header(header::CONTENT_TYPE, "text/html; charset=utf-8");
    }
    let location = HeaderValue::from_str(location).expect("built from a request's path and query");
    response.headers.insert(header::LOCATION, location);
    response
}

/// Go's `cleanPath`: rooted `path.Clean`, keeping a trailing slash.
fn clean_path(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for element in path.split('/') {
        match element {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            name => kept.push(name),
        }
    }
    let mut cleaned = format!("/{}", kept.join("/"));
    if path.ends_with('/') && cleaned != "/" {
        cleaned.push('/');
    }
    cleaned
}

/// Go's `htmlEscape` for the redirect body.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_clean_like_go() {
        for (path, cleaned) in [
            ("/v1/client/stats", "/v1/client/stats"),
            ("//v1/client/stats", "/v1/client/stats"),
            ("/v1/./client//fs/ls/x/", "/v1/client/fs/ls/x/"),
            ("/v1/client/x/../stats", "/v1/client/stats"),
            ("/../../v1", "/v1"),
            ("/v1/client/.", "/v1/client"),
            ("/v1/..", "/"),
            ("", "/"),
            ("/", "/"),
        ] {
            assert_eq!(clean_path(path), cleaned, "{path}");
        }
    }

    #[test]
    fn redirects_keep_the_query_and_add_subtree_slashes() {
        assert_eq!(redirect_target("/v1/client/stats", "pretty"), None);
        assert_eq!(
            redirect_target("//v1/client/stats", "pretty=1&x=2").as_deref(),
            Some("/v1/client/stats?pretty=1&x=2")
        );
        assert_eq!(redirect_target("/v1/client/fs", "").as_deref(), Some("/v1/client/fs/"));
        assert_eq!(redirect_target("/v1//client/allocation", "a").as_deref(), Some("/v1/client/allocation/?a"));
        assert_eq!(redirect_target("/v1/client/fs/cat/a%2F%2Fb", ""), None, "escapes are not separators");
    }
}
