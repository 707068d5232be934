//! The client commands' command lines, as Nomad's CLI takes them: single-dash flags
//! (`-f`, `-n 20`, `-n=20`) anywhere before or between the positional arguments.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::cli::split_flag;

/// What to do against the agent.
#[derive(Debug, PartialEq)]
pub enum Action {
    AllocList,
    AllocStatus { alloc: String },
    AllocLogs { alloc: String, task: Option<String>, stderr: bool, follow: bool, tail: Tail },
    AllocFs { alloc: String, path: String, stat: bool, follow: bool, tail: Tail, output: Option<PathBuf> },
    AllocStats { alloc: String },
    NodeStats,
}

/// `-tail` with `-n` lines or `-c` bytes; `-n` or `-c` alone implies `-tail`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub enum Tail {
    #[default]
    No,
    Lines(u64),
    Bytes(u64),
}

/// Nomad's `-tail` default.
const DEFAULT_TAIL_LINES: u64 = 10;

/// Addressing and credentials; each flag overrides its `NOMAD_*` variable.
#[derive(Debug, Default, PartialEq)]
pub struct Connection {
    pub address: Option<String>,
    pub token: Option<String>,
    pub ca_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub tls_server_name: Option<String>,
    pub skip_verify: bool,
}

/// A parsed client command line.
#[derive(Debug, PartialEq)]
pub struct Invocation {
    pub action: Action,
    pub connection: Connection,
    /// `-json`: the raw answer instead of a table.
    pub json: bool,
    /// `-verbose` (full IDs) or, for `alloc fs`, `-H` (exact sizes in bytes).
    pub verbose: bool,
}

pub const USAGE: &str = "\
Usage:
  allocd alloc list [-verbose] [-json]
  allocd alloc status [-json] <alloc>
  allocd alloc logs [-f] [-stderr] [-tail] [-n lines] [-c bytes] <alloc> [task]
  allocd alloc fs [-stat] [-f] [-tail] [-n lines] [-c bytes] [-H] [-o FILE] <alloc> [path]
  allocd alloc stats [-json] <alloc>
  allocd node stats [-json]

<alloc> is any unique prefix of an allocation ID (at least two characters).
Connection flags (each overrides its variable): -address (NOMAD_ADDR), -token (NOMAD_TOKEN),
-ca-cert (NOMAD_CACERT), -client-cert (NOMAD_CLIENT_CERT), -client-key (NOMAD_CLIENT_KEY),
-tls-server-name (NOMAD_TLS_SERVER_NAME), -tls-skip-verify (NOMAD_SKIP_VERIFY).
";

const CONNECTION_FLAGS: [&str; 6] = ["address", "token", "ca-cert", "client-cert", "client-key", "tls-server-name"];

/// Flags and positional arguments of one command line.
#[derive(Default)]
struct Parsed {
    switches: Vec<String>,
    values: HashMap<String, String>,
    positional: Vec<String>,
}

impl Parsed {
    fn on(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }
    fn number(&self, name: &str) -> anyhow::Result<Option<u64>> {
        self.values.get(name).map(|v| v.parse().with_context(|| format!("-{name} {v:?}: not a number"))).transpose()
    }
}

/// Splits `args` into the switches and value flags allowed here, and positional arguments.
fn split(args: &[String], switches: &[&str], values: &[&str]) -> anyhow::Result<Parsed> {
    let mut parsed = Parsed::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some((name, inline)) = split_flag(arg) else {
            parsed.positional.push(arg.clone());
            continue;
        };
        if switches.contains(&name) || name == "tls-skip-verify" {
            if inline.map_or(Ok(true), |v| v.parse::<bool>()).with_context(|| format!("-{name}"))? {
                parsed.switches.push(name.to_string());
            }
        } else if values.contains(&name) || CONNECTION_FLAGS.contains(&name) {
            let value = match inline {
                Some(value) => value.to_string(),
                None => args.next().cloned().with_context(|| format!("flag -{name} needs a value"))?,
            };
            parsed.values.insert(name.to_string(), value);
        } else {
            bail!("unknown flag -{name}\n\n{USAGE}");
        }
    }
    Ok(parsed)
}

/// Parses `allocd <group> <args>` where `group` is `alloc` or `node`.
pub fn parse(group: &str, args: &[String]) -> anyhow::Result<Invocation> {
    let sub = args.first().map(String::as_str).unwrap_or("");
    let (switches, values): (&[&str], &[&str]) = match (group, sub) {
        ("alloc", "list") => (&["verbose", "json"], &[]),
        ("alloc", "status" | "stats") | ("node", "stats") => (&["json"], &[]),
        ("alloc", "logs") => (&["f", "stderr", "tail"], &["n", "c"]),
        ("alloc", "fs") => (&["stat", "f", "tail", "H"], &["n", "c", "o"]),
        _ => bail!("unknown command {:?}\n\n{USAGE}", format!("{group} {sub}").trim()),
    };
    let parsed = split(&args[1..], switches, values)?;
    let positional = |min: usize, max: usize| -> anyhow::Result<&[String]> {
        let count = parsed.positional.len();
        if count < min || count > max {
            bail!("allocd {group} {sub}: this command takes {min} to {max} arguments, got {count}\n\n{USAGE}");
        }
        Ok(&parsed.positional)
    };
    let tail = tail(&parsed)?;
    let action = match (group, sub) {
        ("alloc", "list") => positional(0, 0).map(|_| Action::AllocList)?,
        ("alloc", "status") => Action::AllocStatus { alloc: positional(1, 1)?[0].clone() },
        ("alloc", "stats") => Action::AllocStats { alloc: positional(1, 1)?[0].clone() },
        ("node", _) => positional(0, 0).map(|_| Action::NodeStats)?,
        ("alloc", "logs") => {
            let args = positional(1, 2)?;
            let (stderr, follow) = (parsed.on("stderr"), parsed.on("f"));
            Action::AllocLogs { alloc: args[0].clone(), task: args.get(1).cloned(), stderr, follow, tail }
        }
        _ => {
            let args = positional(1, 2)?;
            let path = args.get(1).cloned().unwrap_or_else(|| "/".to_string());
            let output = parsed.values.get("o").map(PathBuf::from);
            let (stat, follow) = (parsed.on("stat"), parsed.on("f"));
            Action::AllocFs { alloc: args[0].clone(), path, stat, follow, tail, output }
        }
    };
    let value = |name: &str| parsed.values.get(name).cloned();
    let connection = Connection {
        address: value("address"),
        token: value("token"),
        ca_cert: value("ca-cert"),
        client_cert: value("client-cert"),
        client_key: value("client-key"),
        tls_server_name: value("tls-server-name"),
        skip_verify: parsed.on("tls-skip-verify"),
    };
    Ok(Invocation { action, connection, json: parsed.on("json"), verbose: parsed.on("verbose") || parsed.on("H") })
}

fn tail(parsed: &Parsed) -> anyhow::Result<Tail> {
    Ok(match (parsed.number("n")?, parsed.number("c")?) {
        (Some(_), Some(_)) => bail!("-n and -c cannot be used together"),
        (Some(lines), None) => Tail::Lines(lines),
        (None, Some(bytes)) => Tail::Bytes(bytes),
        (None, None) if parsed.on("tail") => Tail::Lines(DEFAULT_TAIL_LINES),
        (None, None) => Tail::No,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> anyhow::Result<Invocation> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args[0], &args[1..])
    }

    #[test]
    fn nomad_style_command_lines() {
        let logs = parse_line("alloc logs -f -stderr -tail -n=5 -token t 5fb1 web").unwrap();
        let expected = Action::AllocLogs {
            alloc: "5fb1".into(),
            task: Some("web".into()),
            stderr: true,
            follow: true,
            tail: Tail::Lines(5),
        };
        assert_eq!(logs.action, expected);
        assert_eq!(logs.connection.token.as_deref(), Some("t"));
        let fs = parse_line("alloc fs -o out.bin 5fb1 alloc/logs/web.stdout.0").unwrap();
        assert!(
            matches!(fs.action, Action::AllocFs { ref output, .. } if output.as_deref() == Some("out.bin".as_ref()))
        );
        let Action::AllocFs { path, tail, .. } = parse_line("alloc fs -tail 5fb1").unwrap().action else { panic!() };
        assert_eq!((path.as_str(), tail), ("/", Tail::Lines(10)));
        assert_eq!(parse_line("node stats -json").unwrap().action, Action::NodeStats);
        assert!(parse_line("alloc list -tls-skip-verify").unwrap().connection.skip_verify);
    }

    #[test]
    fn mistakes_are_errors() {
        assert!(parse_line("alloc status").is_err());
        assert!(parse_line("alloc logs a b c").is_err());
        assert!(parse_line("alloc logs -n x a").is_err());
        assert!(parse_line("alloc logs -n 1 -c 1 a").is_err());
        assert!(parse_line("alloc frob").is_err());
        assert!(parse_line("alloc list -f").is_err());
    }
}
