//! A bench-only baseline (not part of the agent): the smallest warp server that answers
//! `GET /v1/client/stats` with the bytes allocd answered, read from a file at startup.
//! bench/run.sh compares allocd's stats throughput with it in the same run.
//!
//! Usage: `warp-stats PORT BODY_FILE` (listens on 127.0.0.1:PORT).

use warp::Filter;
use warp::http::header::{CONTENT_TYPE, VARY};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, body_file] = args.as_slice() else {
        eprintln!("usage: warp-stats PORT BODY_FILE");
        std::process::exit(2);
    };
    let port: u16 = port.parse().unwrap_or_else(|_| {
        eprintln!("warp-stats: bad port {port:?}");
        std::process::exit(2);
    });
    let body = bytes::Bytes::from(std::fs::read(body_file).unwrap_or_else(|err| {
        eprintln!("warp-stats: cannot read {body_file}: {err}");
        std::process::exit(2);
    }));
    let stats = warp::get().and(warp::path!("v1" / "client" / "stats")).map(move || {
        let mut reply = warp::reply::Response::new(body.clone().into());
        let headers = reply.headers_mut();
        headers.insert(CONTENT_TYPE, "application/json".parse().expect("a valid header"));
        headers.append(VARY, "Accept-Encoding".parse().expect("a valid header"));
        headers.append(VARY, "Origin".parse().expect("a valid header"));
        reply
    });
    warp::serve(stats).run(([127, 0, 0, 1], port)).await;
}
