//! Command-line parsing, Nomad style: `allocd agent -dev`, single-dash flags, `-flag value`
//! or `-flag=value` (double dashes work too). The client commands (`alloc`, `node`) parse
//! their own flags in [`crate::client::args`] with the same [`split_flag`].

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Agent(AgentFlags),
    PluginInspect(PathBuf),
    /// `allocd alloc ...` / `allocd node ...`: a client of a running agent.
    Client(crate::client::args::Invocation),
    Version,
    Help,
}

/// `allocd agent` flags; each overrides the config file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentFlags {
    pub dev: bool,
    pub config: Option<PathBuf>,
    pub bind: Option<IpAddr>,
    pub http_port: Option<u16>,
    pub data_dir: Option<PathBuf>,
    pub plugin_dir: Option<PathBuf>,
    pub log_level: Option<String>,
}

pub const USAGE: &str = "\
Usage: allocd <command> [flags]

Commands:
  agent -dev                    run with the default plugin bundle and a sample allocation
  agent -config FILE            run with an HCL config file
        [-bind ADDR] [-http-port N] [-data-dir DIR] [-plugin-dir DIR] [-log-level LEVEL]
  plugin inspect FILE           describe a plugin library and whether this allocd can load it
  alloc ..., node stats         talk to a running agent (or Nomad) like `nomad alloc`: see below
  version                       print the version
";

/// Parses `args` (without the program name).
pub fn parse(args: &[String]) -> anyhow::Result<Command> {
    match args.first().map(String::as_str) {
        Some("agent") if args[1..].iter().any(|arg| is_help(arg)) => Ok(Command::Help),
        Some("agent") => parse_agent(&args[1..]).map(Command::Agent),
        Some("plugin") => match (args.get(1).map(String::as_str), args.get(2)) {
            (Some("inspect"), Some(file)) if args.len() == 3 => Ok(Command::PluginInspect(PathBuf::from(file))),
            _ => bail!("usage: allocd plugin inspect FILE"),
        },
        Some("alloc" | "node") if args[1..].iter().any(|arg| is_help(arg)) => Ok(Command::Help),
        Some(group @ ("alloc" | "node")) => crate::client::args::parse(group, &args[1..]).map(Command::Client),
        Some("version" | "-version" | "--version") => Ok(Command::Version),
        Some(arg) if arg == "help" || is_help(arg) => Ok(Command::Help),
        None => Ok(Command::Help),
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

/// `-name`, `--name` or `-name=value`: the name and the inline value; `None` for an argument
/// that is not a flag (a lone `-` included).
pub fn split_flag(arg: &str) -> Option<(&str, Option<&str>)> {
    let flag = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|f| !f.is_empty())?;
    Some(flag.split_once('=').map_or((flag, None), |(name, value)| (name, Some(value))))
}

pub fn is_help(arg: &str) -> bool {
    matches!(arg, "-h" | "-help" | "--help")
}

/// The levels `-log-level` takes, as Nomad spells them (any case); `err` is Nomad's `error`.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "err"];

pub fn parse_log_level(value: &str) -> anyhow::Result<String> {
    match value.to_ascii_lowercase().as_str() {
        "err" => Ok("error".to_string()),
        level if LOG_LEVELS.contains(&level) => Ok(level.to_string()),
        _ => bail!("-log-level {value:?}: unknown level (use one of {})", LOG_LEVELS.join(", ")),
    }
}

fn parse_agent(args: &[String]) -> anyhow::Result<AgentFlags> {
    let mut flags = AgentFlags::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some((name, inline)) = split_flag(arg) else {
            bail!("unexpected argument {arg:?}");
        };
        let inline = inline.map(str::to_string);
        if name == "dev" {
            flags.dev = inline.map_or(Ok(true), |v| v.parse()).context("-dev")?;
            continue;
        }
        let value = match inline {
            Some(value) => value,
            None => args.next().cloned().with_context(|| format!("flag -{name} needs a value"))?,
        };
        match name {
            "config" => flags.config = Some(value.into()),
            "bind" => flags.bind = Some(value.parse().with_context(|| format!("-bind {value:?}"))?),
            "http-port" => flags.http_port = Some(value.parse().with_context(|| format!("-http-port {value:?}"))?),
            "data-dir" => flags.data_dir = Some(value.into()),
            "plugin-dir" => flags.plugin_dir = Some(value.into()),
            "log-level" => flags.log_level = Some(parse_log_level(&value)?),
            _ => bail!("unknown flag -{name}\n\n{USAGE}"),
        }
    }
    if !flags.dev && flags.config.is_none() {
        bail!("allocd agent needs -dev or -config FILE\n\n{USAGE}");
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn go_style_flags() {
        let Command::Agent(flags) = parse(&args("agent -dev -http-port=0 --bind 127.0.0.2")).unwrap() else {
            panic!("not agent")
        };
        assert!(flags.dev);
        assert_eq!(flags.http_port, Some(0));
        assert_eq!(flags.bind, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(parse(&args("plugin inspect x.so")).unwrap(), Command::PluginInspect("x.so".into()));
    }

    #[test]
    fn mistakes_are_errors() {
        assert!(parse(&args("agent")).is_err());
        assert!(parse(&args("agent -dev -nope 1")).is_err());
        assert!(parse(&args("agent -dev -http-port")).is_err());
        assert!(parse(&args("frobnicate")).is_err());
        let error = parse(&args("agent -dev -log-level loud")).unwrap_err().to_string();
        assert_eq!(error, "-log-level \"loud\": unknown level (use one of trace, debug, info, warn, error, err)");
    }

    #[test]
    fn help_and_log_levels() {
        assert_eq!(parse(&args("agent -help")).unwrap(), Command::Help);
        assert_eq!(parse(&args("agent -config x.hcl --help")).unwrap(), Command::Help);
        assert_eq!(parse(&args("-h")).unwrap(), Command::Help);
        let Command::Agent(flags) = parse(&args("agent -dev -log-level=ERR")).unwrap() else { panic!("not agent") };
        assert_eq!(flags.log_level.as_deref(), Some("error"));
    }
}
