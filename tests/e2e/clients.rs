//! Hostile and careless clients: connections that never start TLS, plain HTTP on the TLS port,
//! floods of idle connections, caps on connections in all, and readers that stop reading.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::harness::{ALLOC_ID, Agent, Fixture, agent_with_fixture, memory_kib, raise_own_open_file_limit};
use crate::security::make_certs;

/// The agent's listening address.
fn address(agent: &Agent) -> SocketAddr {
    let host_port = agent.base.split("://").nth(1).unwrap();
    host_port.parse().unwrap()
}

/// A connection to `to` from the loopback address `from`, with a small receive buffer so
/// that a client that does not read stalls the sender soon.
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

/// Sends a GET over a raw connection (which the agent may have closed already).
fn send_get(stream: &mut TcpStream, path: &str, extra_headers: &str) -> std::io::Result<()> {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}\r\n")
}

/// Everything the agent sends until it closes, or until `limit`.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(limit))?;
    let mut received = Vec::new();
    stream.read_to_end(&mut received)?;
    Ok(received)
}

#[test]
fn the_tls_port_cuts_silent_connections_and_answers_plain_http_like_go() {
    let fixture = Fixture::new();
    let certs = fixture.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let config = fixture.config(&format!(
        "tls {{\n  http = true\n  cert_file = {:?}\n  key_file = {:?}\n}}\n",
        certs.join("server.pem"),
        certs.join("server-key.pem")
    ));
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    let addr = address(&agent);

    let mut plain = TcpStream::connect(addr).unwrap();
    send_get(&mut plain, "/v1/client/stats", "").unwrap();
    let answer = read_until_closed(&mut plain, Duration::from_secs(5)).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    );

    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    let outcome = read_until_closed(&mut silent, Duration::from_secs(20));
    let took = started.elapsed();
    assert!(matches!(&outcome, Ok(bytes) if bytes.is_empty()), "{outcome:?} after {took:?}");
    assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(13), "closed after {took:?}");
}

/// 1,500 idle connections from 15 addresses (100 each, the per-address cap) need more
/// descriptors than a default soft limit of 1,024: the agent raised its limit, and a normal
/// client is still served.
#[test]
fn idle_connections_from_many_addresses_do_not_lock_out_a_normal_client() {
    raise_own_open_file_limit(4096);
    let fixture = Fixture::new();
    let config = fixture.config("");
    // Started with the soft limit a login shell usually has.
    let mut shell = Command::new("sh");
    shell.args(["-c", "ulimit -S -n 1024 && exec \"$0\" \"$@\""]).arg(crate::harness::allocd_bin());
    let agent = Agent::try_start_command(shell, &["-config", config.to_str().unwrap()]).unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.child.id())).unwrap();
    let open_files: Vec<&str> =
        limits.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().collect();
    assert_eq!(open_files[3], open_files[4], "the soft open-file limit is raised to the hard one:\n{limits}");

    let addr = address(&agent);
    let idle: Vec<TcpStream> =
        (2..=16u8).flat_map(|host| (0..100).map(move |_| connect_from([127, 0, 0, host], addr))).collect();
    assert_eq!(idle.len(), 1500);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let ls = agent.get(&format!("/v1/client/fs/ls/{ALLOC_ID}?path=alloc/logs"));
    assert_eq!(ls.status, 200, "{}", ls.text());
    assert!(started.elapsed() < Duration::from_secs(2), "served after {:?}", started.elapsed());
    drop(idle);
}

#[test]
fn connections_over_the_total_cap_are_closed_until_some_end() {
    let (_fixture, agent) = agent_with_fixture("limits {\n  http_max_conns_total = 20\n}\n");
    let addr = address(&agent);
    let idle: Vec<TcpStream> = (0..20).map(|_| connect_from([127, 0, 0, 2], addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut refused = connect_from([127, 0, 0, 1], addr);
    let answer = send_get(&mut refused, "/v1/client/stats", "")
        .and_then(|()| read_until_closed(&mut refused, Duration::from_secs(5)));
    assert!(answer.as_ref().map_or(true, |bytes| bytes.is_empty()), "{answer:?}");
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut client = connect_from([127, 0, 0, 1], addr);
        let answer = send_get(&mut client, "/v1/client/stats", "Connection: close\r\n")
            .and_then(|()| read_until_closed(&mut client, Duration::from_secs(5)))
            .unwrap_or_default();
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused after the idle connections closed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 1,000 clients that ask for a 64 MiB cat and never read: each holds at most the body budget
/// in the agent, and they count against `max_streams` until they go.
#[test]
fn stalled_readers_of_a_large_cat_cost_bounded_memory() {
    raise_own_open_file_limit(4096);
    let fixture = Fixture::new();
    let big = std::fs::File::create(fixture.alloc_root().join("alloc/data/big")).unwrap();
    big.set_len(64 << 20).unwrap();
    let config = fixture.config("limits {\n  http_max_conns_per_client = 0\n}\n");
    let agent = Agent::start(&["-config", config.to_str().unwrap()]);
    let addr = address(&agent);
    let pid = agent.child.id();
    let path = format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/data/big");

    let mut readers = Vec::new();
    for _ in 0..1000 {
        let mut reader = connect_from([127, 0, 0, 1], addr);
        send_get(&mut reader, &path, "").unwrap();
        readers.push(reader);
    }
    // Let every body fill what the sockets and the agent will hold.
    let mut rss = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let now = memory_kib(pid, "VmRSS");
        if now == rss {
            break;
        }
        rss = now;
    }
    let peak = memory_kib(pid, "VmHWM");
    println!("1,000 stalled cat readers: RSS {} MiB, peak {} MiB", rss / 1024, peak / 1024);
    assert!(peak < 300 * 1024, "peak RSS {} MiB with 1,000 stalled readers", peak / 1024);

    drop(readers);
    let after = Instant::now();
    loop {
        let cat = agent.get(&format!("/v1/client/fs/cat/{ALLOC_ID}?path=alloc/logs/web.stdout.0"));
        if cat.status == 200 {
            break;
        }
        assert!(after.elapsed() < Duration::from_secs(5), "{}: {}", cat.status, cat.text());
    }
    println!("after the readers left: RSS {} MiB", memory_kib(pid, "VmRSS") / 1024);
}
