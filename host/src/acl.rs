//! ACLs with Nomad's capabilities, policies and tokens, read from local files.
//!
//! ```hcl
//! acl {
//!   enabled    = true
//!   policy_dir = "/etc/allocd/acl/policies"   # one <name>.hcl per policy, Nomad's syntax
//!   token_file = "/etc/allocd/acl/tokens.hcl"
//! }
//! ```
//! A policy file holds `namespace "<name or glob>" { policy = "read" capabilities = [...] }`
//! and `node { policy = "read" }` blocks; the shorthands expand as in Nomad's
//! `acl/policy.go`, and a `deny` anywhere wins. The token file holds
//! `token "<name>" { secret_id = "..." type = "client" | "management" policies = [...] }`.
//! Requests without a token use the policy named `anonymous` when it exists, else are
//! denied. Every denial is 403 `Permission denied`; secrets never reach the logs.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::IgnoredAny;
use warp::http::{HeaderMap, StatusCode};

use crate::api::error::ApiError;

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Need {
    /// Any of these namespace capabilities, in the allocation's namespace.
    Namespace(&'static [&'static str]),
    NodeRead,
    NodeWrite,
}

pub const READ_FS: Need = Need::Namespace(&["read-fs"]);
pub const READ_LOGS: Need = Need::Namespace(&["read-logs", "read-fs"]);
pub const READ_JOB: Need = Need::Namespace(&["read-job"]);
pub const GC_ALLOCATION: Need = Need::Namespace(&["submit-job", "gc-allocation"]);

/// The `acl { }` config block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    #[serde(default)]
    pub enabled: bool,
    pub policy_dir: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    namespace: IndexMap<String, RawNamespace>,
    node: Option<RawLevel>,
    // Nomad's rules for what allocd does not serve: accepted, so operators' policies load as
    // they are, and otherwise ignored.
    agent: Option<IgnoredAny>,
    operator: Option<IgnoredAny>,
    quota: Option<IgnoredAny>,
    plugin: Option<IgnoredAny>,
    host_volume: Option<IgnoredAny>,
}

impl RawPolicy {
    /// The blocks present that allocd ignores.
    fn unused_blocks(&self) -> Vec<&'static str> {
        let blocks = [
            ("agent", self.agent.is_some()),
            ("operator", self.operator.is_some()),
            ("quota", self.quota.is_some()),
            ("plugin", self.plugin.is_some()),
            ("host_volume", self.host_volume.is_some()),
        ];
        let in_namespaces = self.namespace.values().any(|namespace| namespace.variables.is_some());
        blocks
            .into_iter()
            .chain([("namespace variables", in_namespaces)])
            .filter(|(_, present)| *present)
            .map(|(name, _)| name)
            .collect()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNamespace {
    policy: Option<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    /// Nomad Variables rules: allocd serves no variables.
    variables: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    policy: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    #[serde(default)]
    token: IndexMap<String, RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    secret_id: String,
    #[serde(rename = "type", default = "client_type")]
    kind: String,
    #[serde(default)]
    policies: Vec<String>,
}

fn client_type() -> String {
    "client".to_string()
}

/// Node policy levels, ordered by power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Read,
    Write,
}

/// A compiled policy.
#[derive(Debug, Default, Clone)]
struct Policy {
    /// Namespace pattern → capabilities (`deny` included when denied).
    namespaces: Vec<(String, HashSet<String>)>,
    /// `None` = no node rule; `Some(None)` = deny.
    node: Option<Option<Level>>,
}

#[derive(Debug)]
struct Token {
    management: bool,
    policies: Vec<String>,
}

/// The loaded ACL state. Disabled ACLs allow everything.
#[derive(Debug, Default)]
pub struct Acl {
    enabled: bool,
    policies: HashMap<String, Policy>,
    tokens: HashMap<String, Token>,
}

/// Nomad's `expandNamespacePolicy`: `write` is `read` plus the write-only capabilities.
fn expand_namespace_policy(policy: &str) -> anyhow::Result<Vec<&'static str>> {
    const READ: &[&str] = &[
        "list-jobs",
        "parse-job",
        "read-job",
        "csi-list-volume",
        "csi-read-volume",
        "read-job-scaling",
        "list-scaling-policies",
        "read-scaling-policy",
        "host-volume-read",
    ];
    const WRITE_EXTRA: &[&str] = &[
        "scale-job",
        "submit-job",
        "dispatch-job",
        "read-logs",
        "read-fs",
        "alloc-exec",
        "alloc-lifecycle",
        "csi-mount-volume",
        "csi-write-volume",
        "submit-recommendation",
        "host-volume-create",
    ];
    const SCALE: &[&str] = &[
        "list-scaling-policies",
        "read-scaling-policy",
        "read-job-scaling",
        "scale-job",
        "read-job",
        "submit-recommendation",
    ];
    Ok(match policy {
        "deny" => vec!["deny"],
        "read" => READ.to_vec(),
        "write" => READ.iter().chain(WRITE_EXTRA).copied().collect(),
        "scale" => SCALE.to_vec(),
        other => bail!("invalid namespace policy {other:?}"),
    })
}

fn node_level(policy: &str) -> anyhow::Result<Option<Level>> {
    Ok(match policy {
        "deny" => None,
        "read" => Some(Level::Read),
        "write" => Some(Level::Write),
        other => bail!("invalid node policy {other:?}"),
    })
}

/// Compiles a policy; `name` is for the log line about blocks allocd ignores.
fn parse_policy(name: &str, text: &str) -> anyhow::Result<Policy> {
    let raw: RawPolicy = hcl::from_str(&crate::hcl1::normalize(text))?;
    let unused = raw.unused_blocks();
    if !unused.is_empty() {
        tracing::debug!(
            policy = name,
            "ignoring the policy's {} rules: allocd serves nothing they govern",
            unused.join(", ")
        );
    }
    let mut policy = Policy { node: raw.node.map(|n| node_level(&n.policy)).transpose()?, ..Policy::default() };
    for (pattern, namespace) in raw.namespace {
        let mut capabilities: HashSet<String> = namespace.capabilities.into_iter().collect();
        if let Some(shorthand) = namespace.policy {
            capabilities.extend(expand_namespace_policy(&shorthand)?.iter().map(|c| c.to_string()));
        }
        policy.namespaces.push((pattern, capabilities));
    }
    Ok(policy)
}

/// Glob match with `*` wildcards (Nomad's namespace globs).
fn glob_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, rest)) => {
            let Some(tail) = name.strip_prefix(prefix) else { return false };
            (0..=tail.len()).filter(|&i| tail.is_char_boundary(i)).any(|i| glob_matches(rest, &tail[i..]))
        }
    }
}

impl Policy {
    /// Capabilities granted in `namespace`: an exact rule, else the closest glob.
    fn namespace_capabilities(&self, namespace: &str) -> Option<&HashSet<String>> {
        self.namespaces.iter().find(|(pattern, _)| pattern == namespace).map(|(_, caps)| caps).or_else(|| {
            self.namespaces
                .iter()
                .filter(|(pattern, _)| pattern.contains('*') && glob_matches(pattern, namespace))
                .max_by_key(|(pattern, _)| pattern.len() - pattern.matches('*').count())
                .map(|(_, caps)| caps)
        })
    }
}

impl Acl {
    /// Loads policies and tokens; disabled ACLs load nothing.
    pub fn load(config: &AclConfig) -> anyhow::Result<Self> {
        if !config.enabled {
            return Ok(Self::default());
        }
        let mut acl = Acl { enabled: true, ..Self::default() };
        if let Some(dir) = &config.policy_dir {
            let entries = std::fs::read_dir(dir).with_context(|| format!("acl.policy_dir {}", dir.display()))?;
            for path in entries.filter_map(Result::ok).map(|e| e.path()) {
                if path.extension().is_some_and(|x| x == "hcl") {
                    let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                    let text = read(&path)?;
                    let policy = parse_policy(&name, &text).with_context(|| format!("policy {}", path.display()))?;
                    acl.policies.insert(name, policy);
                }
            }
        }
        if let Some(file) = &config.token_file {
            let raw: RawTokens = hcl::from_str(&crate::hcl1::normalize(&read(file)?))
                .with_context(|| format!("token file {}", file.display()))?;
            for (name, token) in raw.token {
                let management = match token.kind.as_str() {
                    "management" => true,
                    "client" => false,
                    other => bail!("token {name:?}: type must be client or management, not {other:?}"),
                };
                if let Some(missing) = token.policies.iter().find(|p| !acl.policies.contains_key(*p)) {
                    tracing::warn!(token = %name, policy = %missing, "token names a policy that does not exist");
                }
                acl.tokens.insert(token.secret_id, Token { management, policies: token.policies });
            }
        }
        tracing::info!(policies = acl.policies.len(), tokens = acl.tokens.len(), "ACLs enabled");
        Ok(acl)
    }

    /// Allows the request or answers 403 `Permission denied`.
    pub fn check(&self, token: Option<&str>, need: Need, namespace: &str) -> Result<(), ApiError> {
        if !self.enabled || self.allows(token, need, namespace) {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "Permission denied"))
        }
    }

    /// Allows the request when `need` is granted in some namespace: the check made before an
    /// allocation (and so its namespace) is looked up, so that callers without the right learn
    /// nothing about which allocations exist.
    pub fn check_any_namespace(&self, token: Option<&str>, need: Need) -> Result<(), ApiError> {
        let mut namespaces = self.policies.values().flat_map(|p| p.namespaces.iter().map(|(name, _)| name.as_str()));
        if !self.enabled || namespaces.any(|namespace| self.allows(token, need, namespace)) {
            return Ok(());
        }
        self.check(token, need, "default")
    }

    fn allows(&self, token: Option<&str>, need: Need, namespace: &str) -> bool {
        let policies: Vec<&Policy> = match token {
            None => self.policies.get("anonymous").into_iter().collect(),
            Some(secret) => match self.tokens.get(secret) {
                None => return false,
                Some(token) if token.management => return true,
                Some(token) => token.policies.iter().filter_map(|name| self.policies.get(name)).collect(),
            },
        };
        match need {
            Need::Namespace(any_of) => {
                let granted: Vec<&HashSet<String>> =
                    policies.iter().filter_map(|p| p.namespace_capabilities(namespace)).collect();
                !granted.iter().any(|caps| caps.contains("deny"))
                    && any_of.iter().any(|cap| granted.iter().any(|caps| caps.contains(*cap)))
            }
            Need::NodeRead | Need::NodeWrite => {
                let levels: Vec<Option<Level>> = policies.iter().filter_map(|p| p.node).collect();
                let wanted = if need == Need::NodeWrite { Level::Write } else { Level::Read };
                !levels.contains(&None) && levels.iter().flatten().any(|level| *level >= wanted)
            }
        }
    }
}

/// The ACLs in force: SIGHUP replaces them, so a removed token stops working at once.
pub struct LiveAcl(crate::live::Live<std::sync::Arc<Acl>>);

impl LiveAcl {
    pub fn new(acl: Acl) -> Self {
        Self(crate::live::Live::new(std::sync::Arc::new(acl)))
    }

    pub fn replace(&self, acl: Acl) {
        self.0.replace(std::sync::Arc::new(acl));
    }

    fn current(&self) -> std::sync::Arc<Acl> {
        self.0.current()
    }

    /// [`Acl::check`] against the ACLs in force.
    pub fn check(&self, token: Option<&str>, need: Need, namespace: &str) -> Result<(), ApiError> {
        self.current().check(token, need, namespace)
    }

    /// [`Acl::check_any_namespace`] against the ACLs in force.
    pub fn check_any_namespace(&self, token: Option<&str>, need: Need) -> Result<(), ApiError> {
        self.current().check_any_namespace(token, need)
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The request's token: `X-Nomad-Token` (trimmed) first, else `Authorization: Bearer <t>`.
pub fn request_token(headers: &HeaderMap) -> Option<String> {
    if let Some(token) = headers.get("x-nomad-token").and_then(|v| v.to_str().ok()) {
        let token = token.trim();
        if !token.is_empty() {
            return Some(token.to_string());
        }
    }
    let authorization = headers.get("authorization")?.to_str().ok()?;
    let (scheme, value) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| value.split_whitespace().next().map(str::to_string)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(policies: &[(&str, &str)], tokens: &[(&str, bool, &[&str])]) -> Acl {
        Acl {
            enabled: true,
            policies: policies
                .iter()
                .map(|(name, text)| (name.to_string(), parse_policy(name, text).unwrap()))
                .collect(),
            tokens: tokens
                .iter()
                .map(|(secret, management, policies)| {
                    let policies = policies.iter().map(|p| p.to_string()).collect();
                    (secret.to_string(), Token { management: *management, policies })
                })
                .collect(),
        }
    }

    #[test]
    fn shorthands_expand_like_nomad() {
        let acl = acl(
            &[
                ("read", "namespace \"default\" {\n  policy = \"read\"\n}\n"),
                ("write", "namespace \"*\" {\n  policy = \"write\"\n}\n"),
            ],
            &[("r", false, &["read"]), ("w", false, &["write"]), ("m", true, &[])],
        );
        assert!(acl.allows(Some("r"), READ_JOB, "default"));
        assert!(!acl.allows(Some("r"), READ_FS, "default"), "read does not include read-fs");
        assert!(!acl.allows(Some("r"), READ_LOGS, "default"));
        assert!(acl.allows(Some("w"), READ_FS, "other"));
        assert!(acl.allows(Some("w"), GC_ALLOCATION, "default"));
        assert!(acl.allows(Some("m"), Need::NodeWrite, "x"));
        assert!(!acl.allows(Some("unknown"), READ_JOB, "default"));
        assert!(!acl.allows(None, READ_JOB, "default"), "no anonymous policy: denied");
    }

    #[test]
    fn deny_wins_and_node_levels_order() {
        let acl = acl(
            &[
                ("fs", "namespace \"default\" {\n  capabilities = [\"read-fs\"]\n}\nnode {\n  policy = \"write\"\n}\n"),
                ("deny", "namespace \"default\" {\n  policy = \"deny\"\n}\nnode {\n  policy = \"deny\"\n}\n"),
                ("anonymous", "node {\n  policy = \"read\"\n}\n"),
            ],
            &[("fs", false, &["fs"]), ("both", false, &["fs", "deny"])],
        );
        assert!(acl.allows(Some("fs"), READ_FS, "default"));
        assert!(acl.allows(Some("fs"), READ_LOGS, "default"), "read-fs also allows logs");
        assert!(!acl.allows(Some("fs"), READ_FS, "other"));
        assert!(acl.allows(Some("fs"), Need::NodeWrite, ""));
        assert!(!acl.allows(Some("both"), READ_FS, "default"));
        assert!(!acl.allows(Some("both"), Need::NodeRead, ""));
        assert!(acl.allows(None, Need::NodeRead, ""));
        assert!(!acl.allows(None, Need::NodeWrite, ""));
    }

    #[test]
    fn globs_and_tokens() {
        assert!(glob_matches("prod-*", "prod-web"));
        assert!(glob_matches("*", "anything"));
        assert!(!glob_matches("prod-*", "dev-web"));
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer abc def".parse().unwrap());
        assert_eq!(request_token(&headers).as_deref(), Some("abc"));
        headers.insert("x-nomad-token", " xyz ".parse().unwrap());
        assert_eq!(request_token(&headers).as_deref(), Some("xyz"));
        headers.clear();
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(request_token(&headers), None);
    }

    /// A policy as Nomad operators write it, with rules for things allocd does not serve.
    const NOMAD_POLICY: &str = r#"
namespace "default" {
  policy = "read"
  capabilities = ["read-fs"]
  variables {
    path "*" { capabilities = ["read"] }
  }
}
node { policy = "read" }
agent { policy = "read" }
operator { policy = "read" }
quota { policy = "read" }
plugin { policy = "list" }
host_volume "prod-*" { policy = "write" }
host_volume "*" { capabilities = ["mount-readonly"] }
"#;

    #[test]
    fn rules_allocd_does_not_serve_are_accepted() {
        let acl = acl(&[("ops", NOMAD_POLICY)], &[("t", false, &["ops"])]);
        assert!(acl.allows(Some("t"), READ_FS, "default"));
        assert!(acl.allows(Some("t"), Need::NodeRead, ""));
        assert!(!acl.allows(Some("t"), Need::NodeWrite, ""));
        let raw: RawPolicy = hcl::from_str(&crate::hcl1::normalize(NOMAD_POLICY)).unwrap();
        assert_eq!(raw.unused_blocks(), ["agent", "operator", "quota", "plugin", "host_volume", "namespace variables"]);
    }
}
