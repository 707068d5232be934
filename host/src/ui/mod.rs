//! The built-in web view at `/ui/`: a few static files (HTML, CSS, JavaScript modules)
//! compiled into the binary, which read the agent's own JSON API from the browser.
//!
//! As in Nomad, `/` answers `307 Temporary Redirect` to `/ui/` (query kept) and a path under
//! `/ui/` that names no asset answers `index.html`. The pages need no ACL token to load; the
//! API calls they make carry the token the operator typed (`X-Nomad-Token`). Every answer has
//! a strict `Content-Security-Policy`: only this origin's scripts, styles and API, no inline
//! script, no frames, no forms; so a file's text shown by the file browser can never run.

use bytes::Bytes;
use warp::http::StatusCode;
use warp::http::header;

use crate::api::clean;
use crate::api::response::{ApiResponse, Body, RequestMeta};

/// Where the web view lives.
const PREFIX: &str = "/ui/";

/// Scripts, styles and requests from this origin only; no inline script, plugins, frames or forms.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file, named by its path under `/ui/`.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset { name: $name, content_type: $content_type, bytes: include_bytes!(concat!("assets/", $name)) }
    };
}

/// Every file the web view is made of.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("chart.js", "text/javascript; charset=utf-8"),
    asset!("node.js", "text/javascript; charset=utf-8"),
    asset!("allocs.js", "text/javascript; charset=utf-8"),
    asset!("alloc.js", "text/javascript; charset=utf-8"),
    asset!("files.js", "text/javascript; charset=utf-8"),
    asset!("logs.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The answer for `/` and `/ui/...`; `None` for every other path (the API's).
pub fn serve(meta: &RequestMeta, raw_query: &str) -> Option<ApiResponse> {
    if meta.path == "/" {
        let location = if raw_query.is_empty() { PREFIX.to_string() } else { format!("{PREFIX}?{raw_query}") };
        return Some(clean::redirect(&meta.method, &location, StatusCode::TEMPORARY_REDIRECT));
    }
    let name = meta.path.strip_prefix(PREFIX)?;
    Some(asset_response(find(name)))
}

/// The asset named `name`, or `index.html` (the pages route by the URL's fragment).
fn find(name: &str) -> &'static Asset {
    ASSETS.iter().find(|asset| asset.name == name).unwrap_or(&ASSETS[0])
}

fn asset_response(asset: &'static Asset) -> ApiResponse {
    ApiResponse::new(StatusCode::OK, Body::Full(Bytes::from_static(asset.bytes)))
        .with_header(header::CONTENT_TYPE, asset.content_type)
        .with_header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .with_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .with_header(header::REFERRER_POLICY, "no-referrer")
        .with_header(header::CACHE_CONTROL, "no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_fall_back_to_the_page() {
        assert_eq!(find("app.js").name, "app.js");
        assert_eq!(find("").name, "index.html");
        assert_eq!(find("alloc/123").name, "index.html");
    }

    #[test]
    fn every_asset_is_referenced_by_the_page_or_a_module() {
        let texts: Vec<&str> = ASSETS.iter().filter_map(|a| std::str::from_utf8(a.bytes).ok()).collect();
        for asset in &ASSETS[1..] {
            assert!(texts.iter().any(|text| text.contains(asset.name)), "{} is never loaded", asset.name);
        }
    }
}
