//! A bench-only client (not part of the agent): N followers of one file through
//! `fs/stream?follow=true`, then lines appended to that file, each timed from its write until
//! every follower has decoded it from its JSON frames. bench/follow.sh runs it for the fan-out
//! figures. It is compiled so that the figure is the agent's delivery, not a scripting client's
//! time to read a thousand sockets one after another (the Python client took about 10 µs a socket),
//! and it runs on one thread, as one client machine's core would.
//!
//! Usage: `fanout PORT TARGET FILE [N] [ROUNDS] [GAP_SECONDS]` (defaults 1000, 5, 2.0);
//! TARGET is the request's path and query. Prints one JSON object.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

/// How long the followers may take to get their response heads, and a line to reach them all.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One `fs/stream` frame; a heartbeat `{}` has no data.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "Data", default)]
    data: String,
}

/// The line being timed, and what each round has measured.
#[derive(Default)]
struct Rounds {
    /// Round number, the line's bytes, and when it was written.
    current: Option<(usize, Vec<u8>, Instant)>,
    /// Per round: milliseconds from the write to each follower's decoding of the line.
    arrivals: Vec<Vec<f64>>,
}

#[derive(Default)]
struct Shared {
    rounds: Mutex<Rounds>,
    /// Followers that ended, whether before or after their 200 (counted in `ok` too).
    ended: AtomicUsize,
    ok: AtomicUsize,
    ended_ok: AtomicUsize,
    /// Why followers ended (the first few).
    errors: Mutex<Vec<String>>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (port, target, file) = match args.as_slice() {
        [port, target, file, ..] => (port.parse::<u16>().unwrap_or_else(|_| usage()), target.clone(), file.clone()),
        _ => usage(),
    };
    let number =
        |i: usize, default: f64| -> f64 { args.get(i).map_or(default, |v| v.parse().unwrap_or_else(|_| usage())) };
    let (followers, rounds, gap) = (number(3, 1000.0) as usize, number(4, 5.0) as usize, number(5, 2.0));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let out = runtime.block_on(run(port, target, file, followers, rounds, Duration::from_secs_f64(gap)));
    println!("{out}");
}

fn usage() -> ! {
    eprintln!("usage: fanout PORT TARGET FILE [N] [ROUNDS] [GAP_SECONDS]");
    std::process::exit(2);
}

async fn run(port: u16, target: String, file: String, n: usize, rounds: usize, gap: Duration) -> serde_json::Value {
    let shared = Arc::new(Shared::default());
    let opened = Instant::now();
    let mut connect_errors = Vec::new();
    for index in 0..n {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(stream) => {
                tokio::spawn(follow(stream, port, target.clone(), shared.clone()));
            }
            Err(err) => connect_errors.push(format!("follower {index}: {err}")),
        }
    }
    let connected = n - connect_errors.len();
    let deadline = Instant::now() + TIMEOUT;
    let settled = || {
        shared.ok.load(Ordering::SeqCst) + shared.ended.load(Ordering::SeqCst) - shared.ended_ok.load(Ordering::SeqCst)
    };
    while settled() < connected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let open_s = opened.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let live = shared.ok.load(Ordering::SeqCst) - shared.ended_ok.load(Ordering::SeqCst);

    let mut per_round = Vec::new();
    let mut client_cpu_ms = Vec::new();
    for round in 0..rounds {
        let cpu_before = cpu_time();
        let line = format!("FANOUT-{}-{round}\n", uuid::Uuid::new_v4().simple());
        let sent = Instant::now();
        {
            let mut state = shared.rounds.lock().expect("not poisoned");
            state.arrivals.push(Vec::new());
            state.current = Some((round, line.trim_end().as_bytes().to_vec(), sent));
        }
        let mut log = std::fs::OpenOptions::new().append(true).open(&file).expect("the followed file opens");
        log.write_all(line.as_bytes()).expect("the line is appended");
        drop(log);
        let deadline = sent + TIMEOUT;
        while Instant::now() < deadline {
            let reached = shared.rounds.lock().expect("not poisoned").arrivals[round].len();
            if reached >= live {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        client_cpu_ms.push((cpu_time() - cpu_before).as_secs_f64() * 1000.0);
        let mut arrivals = std::mem::take(&mut shared.rounds.lock().expect("not poisoned").arrivals[round]);
        arrivals.sort_by(f64::total_cmp);
        per_round.push(arrivals);
        tokio::time::sleep(gap).await;
    }

    let p50s: Vec<f64> = per_round.iter().filter_map(|r| percentile(r, 50.0)).collect();
    let mut sorted_p50s = p50s.clone();
    sorted_p50s.sort_by(f64::total_cmp);
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    serde_json::json!({
        "n": n,
        "connected": connected,
        "connect_errors": connect_errors.iter().take(3).collect::<Vec<_>>(),
        "ok": shared.ok.load(Ordering::SeqCst),
        "errors": shared.errors.lock().expect("not poisoned").clone(),
        "open_s": round2(open_s),
        "fanout_live": live,
        "fanout_rounds": per_round.len(),
        "fanout_received": per_round.iter().map(Vec::len).min().unwrap_or(0),
        "fanout_first_ms": per_round.iter().filter_map(|r| r.first()).copied().reduce(f64::min).map(round2),
        "fanout_p50_ms": sorted_p50s.get(sorted_p50s.len().saturating_sub(1) / 2).copied().map(round2),
        "fanout_round_p50s_ms": p50s.into_iter().map(round2).collect::<Vec<_>>(),
        "client_cpu_ms_per_round": client_cpu_ms.into_iter().map(round2).collect::<Vec<_>>(),
        "fanout_max_ms": per_round.iter().filter_map(|r| r.last()).copied().reduce(f64::max).map(round2),
    })
}

/// CPU time this process has used (user and system).
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Nearest-rank percentile of a sorted list (as bench/followbench.py computes it).
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let rank = (p * sorted.len() as f64 / 100.0).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// One follower: sends the request, then decodes frames and stamps the arrival of each round's line.
async fn follow(stream: TcpStream, port: u16, target: String, shared: Arc<Shared>) {
    let mut answered = false;
    let result = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::get(target)
            .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
            .header(hyper::header::USER_AGENT, "allocd-fanout-bench")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        if response.status() != hyper::StatusCode::OK {
            anyhow::bail!("status {}", response.status());
        }
        answered = true;
        shared.ok.fetch_add(1, Ordering::SeqCst);
        let mut body = response.into_body();
        let (mut pending, mut payload, mut seen_round) = (Vec::new(), Vec::new(), None);
        while let Some(frame) = body.frame().await {
            let arrived = Instant::now();
            let Ok(data) = frame?.into_data() else { continue };
            pending.extend_from_slice(&data);
            let mut frames = serde_json::Deserializer::from_slice(&pending).into_iter::<Frame>();
            let mut consumed = 0;
            while let Some(decoded) = frames.next() {
                match decoded {
                    Ok(frame) => {
                        payload.extend(base64::engine::general_purpose::STANDARD.decode(frame.data)?);
                        consumed = frames.byte_offset();
                    }
                    Err(err) if err.is_eof() => break,
                    Err(err) => return Err(err.into()),
                }
            }
            pending.drain(..consumed);
            let mut rounds = shared.rounds.lock().expect("not poisoned");
            if let Some((round, line, sent)) = &rounds.current
                && seen_round != Some(*round)
                && payload.windows(line.len()).any(|w| w == line.as_slice())
            {
                let (round, ms) = (*round, (arrived - *sent).as_secs_f64() * 1000.0);
                rounds.arrivals[round].push(ms);
                seen_round = Some(round);
                payload.clear();
            }
            let keep = payload.len().saturating_sub(4096);
            payload.drain(..keep);
        }
        Ok(())
    }
    .await;
    let mut errors = shared.errors.lock().expect("not poisoned");
    if let Err(err) = result
        && errors.len() < 3
    {
        errors.push(err.to_string());
    }
    if answered {
        shared.ended_ok.fetch_add(1, Ordering::SeqCst);
    }
    shared.ended.fetch_add(1, Ordering::SeqCst);
}
