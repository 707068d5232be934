//! The built-in web view through the real binary: Nomad's `/` → `307 /ui/`, every embedded
//! asset with its content type and Content-Security-Policy, gzip when the client accepts it,
//! and the size budget (all assets, gzip-compressed as served, at most 150 KB).

use std::io::Read;

use allocd::ui::ASSETS;

use crate::harness::agent_with_fixture;
use crate::wire::raw_request;

/// What the whole web view may cost a browser to load, compressed as served.
const GZIP_BUDGET_BYTES: usize = 150 * 1000;

#[test]
fn root_redirects_to_the_ui_as_nomad_does() {
    let (_fixture, agent) = agent_with_fixture("");
    let root = raw_request(&agent, "GET", "/", "");
    assert_eq!((root.status, root.header("location")), (307, Some("/ui/")));
    assert_eq!(root.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(String::from_utf8_lossy(&root.body), "<a href=\"/ui/\">Temporary Redirect</a>.\n\n");
    let with_query = raw_request(&agent, "GET", "/?region=global", "");
    assert_eq!((with_query.status, with_query.header("location")), (307, Some("/ui/?region=global")));
    // Go's mux: the bare subtree root redirects to the subtree.
    let bare = raw_request(&agent, "GET", "/ui", "");
    assert_eq!((bare.status, bare.header("location")), (301, Some("/ui/")));
    // Other unknown paths stay Nomad's empty 404.
    let other = agent.get("/nothing-here");
    assert_eq!((other.status, other.body.len()), (404, 0));
}

#[test]
fn assets_are_served_with_their_types_a_strict_policy_and_gzip_within_budget() {
    let (_fixture, agent) = agent_with_fixture("");
    let mut gzip_total = 0;
    for asset in ASSETS {
        let path = format!("/ui/{}", asset.name);
        let plain = agent.get(&path);
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(plain.header("content-type"), Some(asset.content_type), "{path}");
        assert_eq!(plain.body, asset.bytes, "{path} served as embedded");
        let policy = plain.header("content-security-policy").unwrap_or_default();
        for directive in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        assert_eq!(plain.header("x-content-type-options"), Some("nosniff"));

        let gzipped = agent.get_with(&path, &[("Accept-Encoding", "gzip")]);
        assert_eq!(gzipped.header("content-encoding"), Some("gzip"), "{path}");
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(gzipped.body.as_slice()).read_to_end(&mut unpacked).unwrap();
        assert_eq!(unpacked, asset.bytes, "{path} gzip round trip");
        gzip_total += gzipped.body.len();
    }
    let raw_total: usize = ASSETS.iter().map(|asset| asset.bytes.len()).sum();
    println!("web view: {} assets, {raw_total} bytes, {gzip_total} bytes gzip-compressed as served", ASSETS.len());
    assert!(gzip_total <= GZIP_BUDGET_BYTES, "{gzip_total} bytes gzip-compressed");

    // The page is index.html wherever it is asked for under /ui/ (it routes by the fragment).
    let index = agent.get("/ui/");
    assert_eq!((index.status, index.header("content-type")), (200, Some("text/html; charset=utf-8")));
    assert_eq!(agent.get("/ui/alloc/anything").body, index.body);
    // No token is needed for the page itself, even where the API would need one.
    let (_acl_fixture, acl_agent) = crate::security::acl_agent();
    assert_eq!(acl_agent.get("/ui/").status, 200);
    assert_eq!(acl_agent.get("/ui/app.js").status, 200);
    assert_eq!(acl_agent.get("/v1/allocations").status, 403);
}
