//! Test hosts on a real (virtual) network: each host is a Linux network namespace with its own
//! address on a test-owned bridge, so etcd members and agents reach each other as separate
//! machines do, and a test can cut one host off with a firewall rule inside its namespace.
//! The test process reaches every host through the bridge's own address. Everything is
//! removed on drop, also after a panic. Needs root (`ip`, `iptables`).
//!
//! Each LAN takes a free `/24` in 10.250.0.0/16; its bridge is named after the subnet, so
//! creating the bridge is what claims the subnet, across the threads of one test process and
//! across test processes.

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::harness::{is_root, skip_unless_ci};

/// Runs `ip`/`iptables` with `args`: `Err(stderr)` when it fails.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim())),
    }
}

fn must(program: &str, args: &[&str]) {
    run(program, args).unwrap_or_else(|err| panic!("{err}"));
}

/// One host: a network namespace and its address.
#[derive(Clone, Debug)]
pub struct Host {
    /// `None`: the test machine itself (loopback).
    pub netns: Option<String>,
    pub ip: IpAddr,
}

impl Host {
    /// The test machine itself, on 127.0.0.1.
    pub fn loopback() -> Host {
        Host { netns: None, ip: IpAddr::from([127, 0, 0, 1]) }
    }

    /// A command running `program` on this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            Some(netns) => {
                // `ip netns exec` execs the program: the child's pid is the program's.
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// Drops every packet between this host and `peers` (a partition); `heal` undoes it.
    pub fn cut_off(&self, peers: &[IpAddr]) {
        self.firewall("-I", peers);
    }

    pub fn heal(&self, peers: &[IpAddr]) {
        self.firewall("-D", peers);
    }

    fn firewall(&self, op: &str, peers: &[IpAddr]) {
        let netns = self.netns.as_deref().expect("only a namespaced host can be cut off");
        for peer in peers.iter().map(IpAddr::to_string) {
            must("ip", &["netns", "exec", netns, "iptables", op, "OUTPUT", "-d", &peer, "-j", "DROP"]);
            must("ip", &["netns", "exec", netns, "iptables", op, "INPUT", "-s", &peer, "-j", "DROP"]);
        }
    }
}

/// A bridge with `hosts` attached, each in its own namespace; removed on drop.
pub struct Lan {
    subnet: u8,
    pub hosts: Vec<Host>,
    /// The FORWARD rule letting bridged traffic through (inserted when bridged packets pass
    /// iptables, as with Docker's `br_netfilter` and FORWARD policy DROP).
    forward_rule: bool,
}

/// Where the next LAN starts looking for a free subnet in this process.
static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Lan {
    /// `hosts` hosts at 10.250.<n>.2 and up; `None` (after `skip_unless_ci`) when not root.
    pub fn new(test: &str, hosts: usize) -> Option<Lan> {
        if !is_root() {
            skip_unless_ci(test, "network namespaces need root");
            return None;
        }
        let first = std::process::id() as usize * 7 + NEXT.fetch_add(1, Ordering::Relaxed) * 31;
        let subnet = (0..256)
            .map(|offset| ((first + offset) % 256) as u8)
            .find(|&subnet| match run("ip", &["link", "add", &Self::bridge_of(subnet), "type", "bridge"]) {
                Ok(()) => true,
                Err(err) if err.contains("File exists") => false,
                Err(err) => panic!("{err}"),
            })
            .expect("a free subnet in 10.250.0.0/16");
        let mut lan = Lan { subnet, hosts: Vec::new(), forward_rule: false };
        let bridge = lan.bridge();
        must("ip", &["addr", "add", &format!("10.250.{subnet}.1/24"), "dev", &bridge]);
        must("ip", &["link", "set", &bridge, "up"]);
        let bridged_through_iptables = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
            .is_ok_and(|value| value.trim() == "1");
        if bridged_through_iptables {
            must("iptables", &Self::forward_rule_args("-I", &bridge));
            lan.forward_rule = true;
        }
        for i in 0..hosts {
            lan.add_host(i);
        }
        Some(lan)
    }

    fn bridge_of(subnet: u8) -> String {
        format!("alnet{subnet}")
    }

    fn bridge(&self) -> String {
        Self::bridge_of(self.subnet)
    }

    fn veth(&self, i: usize) -> String {
        format!("alnet{}v{i}", self.subnet)
    }

    fn forward_rule_args<'a>(op: &'a str, bridge: &'a str) -> [&'a str; 8] {
        [op, "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
    }

    fn add_host(&mut self, i: usize) {
        let netns = format!("allocd-net{}-{i}", self.subnet);
        let ip = format!("10.250.{}.{}", self.subnet, i + 2);
        let (veth, inside) = (self.veth(i), format!("alnet{}p{i}", self.subnet));
        must("ip", &["netns", "add", &netns]);
        self.hosts.push(Host { netns: Some(netns.clone()), ip: ip.parse().unwrap() });
        must("ip", &["link", "add", &veth, "type", "veth", "peer", "name", &inside, "netns", &netns]);
        must("ip", &["link", "set", &veth, "master", &self.bridge(), "up"]);
        must("ip", &["-n", &netns, "addr", "add", &format!("{ip}/24"), "dev", &inside]);
        must("ip", &["-n", &netns, "link", "set", &inside, "up"]);
        must("ip", &["-n", &netns, "link", "set", "lo", "up"]);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a veth deletes its peer too, even while a process still holds the namespace.
        for (i, host) in self.hosts.iter().enumerate() {
            let _ = run("ip", &["link", "del", &self.veth(i)]);
            let _ = run("ip", &["netns", "del", host.netns.as_deref().unwrap_or_default()]);
        }
        if self.forward_rule {
            let _ = run("iptables", &Self::forward_rule_args("-D", &self.bridge()));
        }
        let _ = run("ip", &["link", "del", &self.bridge()]);
    }
}
