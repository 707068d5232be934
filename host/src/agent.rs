//! Running the agent: resolve config and directories, load plugins, take the first sample,
//! serve until SIGINT/SIGTERM. SIGHUP re-reads the config file and applies what can change
//! while running (ACL policies and tokens, the TLS certificate and key, the log level, the
//! `cluster { }` block); a reload that fails keeps everything as it was and logs why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::RString;
use allocd_plugin_abi::HostContext;
use anyhow::{Context, bail};

use crate::acl::{Acl, LiveAcl};
use crate::api::{self, AppState};
use crate::cli::AgentFlags;
use crate::cluster::{Cluster, LiveCluster};
use crate::config::Config;
use crate::dev;
use crate::gc::Collector;
use crate::gc::evidence::Evidence;
use crate::logging::LogControl;
use crate::plugins::Registry;
use crate::plugins::registry::plugin_log;
use crate::server;
use crate::stats::Sampler;
use crate::stats::sampler::TaskSource;
use crate::stream::watch::WatchHub;

/// How long in-flight requests (including follows) get after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Applies flags over the config file (or the built-in defaults in `-dev`).
pub fn resolve_config(flags: &AgentFlags) -> anyhow::Result<Config> {
    let mut config = match &flags.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(bind) = flags.bind {
        config.bind_addr = bind;
    }
    if let Some(port) = flags.http_port {
        config.http_port = port;
    }
    if let Some(dir) = &flags.data_dir {
        config.data_dir = Some(dir.clone());
    }
    if let Some(level) = &flags.log_level {
        config.log_level = Some(level.clone());
    }
    if let Some(dir) = &flags.plugin_dir {
        config.plugin_dir = Some(dir.clone());
    }
    if flags.dev && flags.config.is_none() {
        // The dev tour collects its finished sample allocation right away.
        config.gc.exit_grace = Duration::ZERO;
    }
    Ok(config)
}

/// The directory of the running binary: where the default plugin bundle lives.
fn binary_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the allocd binary")?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// This node's ID, created on first start and kept in the data dir.
fn node_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("client").join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// Raises the open-file limit to its hard limit, as Go programs such as Nomad do: every
/// follower holds a file, and the cgroup plugin keeps its files open between samples.
pub fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::debug!("could not raise the open-file limit: {err}");
    }
}

/// Blocking-pool threads the host keeps for its own work (file I/O of `-dev`) beside the
/// plugins' calls.
const HOST_BLOCKING_THREADS: usize = 8;

/// The blocking pool's size: every plugin's `max_concurrency` plus the host's own share, so
/// a plugin whose calls all hang holds its own threads and never one another needs.
pub fn blocking_threads(config: &Config) -> usize {
    config.plugins.iter().map(|plugin| plugin.max_concurrency).sum::<usize>() + HOST_BLOCKING_THREADS
}

/// Runs the agent with `config` (see [`resolve_config`]) until a shutdown signal.
pub async fn run(flags: AgentFlags, config: Config, log: LogControl) -> anyhow::Result<()> {
    let dev_dir = if flags.dev && config.data_dir.is_none() {
        Some(tempfile::Builder::new().prefix("allocd-dev-").tempdir().context("creating the dev data dir")?)
    } else {
        None
    };
    let data_dir = match (&dev_dir, &config.data_dir) {
        (Some(dir), _) => dir.path().to_path_buf(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => bail!("data_dir is not set: add it to the config or pass -data-dir (or use -dev)"),
    };
    let alloc_dir = config.alloc_dir.clone().unwrap_or_else(|| data_dir.join("alloc"));
    std::fs::create_dir_all(&alloc_dir).with_context(|| format!("creating alloc dir {}", alloc_dir.display()))?;
    let node_id = node_id(&data_dir)?;
    let samples = if flags.dev { Some(dev::create_samples(&alloc_dir)?) } else { None };

    let plugin_dir = match &config.plugin_dir {
        Some(dir) => dir.clone(),
        None => binary_dir()?,
    };
    let host = HostContext {
        log: plugin_log,
        data_dir: RString::from(data_dir.to_string_lossy().as_ref()),
        alloc_dir: RString::from(alloc_dir.to_string_lossy().as_ref()),
    };
    let registry = Arc::new(Registry::load(&config.plugins, &plugin_dir, &host).map_err(anyhow::Error::msg)?);

    let evidence = Evidence::load(&data_dir)?;
    let mut own_tasks: Vec<Arc<dyn TaskSource>> = Vec::new();
    let sample_ids = samples.map(|samples| {
        own_tasks.push(Arc::new(samples.tasks));
        (samples.live, samples.finished)
    });
    let sampler = Arc::new(Sampler::new(evidence, own_tasks));
    sampler.collect(&registry).await;
    tokio::spawn(Arc::clone(&sampler).run(Arc::clone(&registry), config.collection_interval));

    let acl = LiveAcl::new(Acl::load(&config.acl)?);
    let tls = server::tls_acceptor(&config.tls)?.map(|acceptor| Arc::new(server::LiveTls::new(acceptor)));
    // Installed before the agent announces itself: SIGHUP's default action would kill it.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let listener = tokio::net::TcpListener::bind((config.bind_addr, config.http_port))
        .await
        .with_context(|| format!("binding {}:{}", config.bind_addr, config.http_port))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, node_id = %node_id, data_dir = %data_dir.display(), "allocd listening");
    // A stable stdout line that scripts and tests wait for (and learn the port from).
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("==> allocd listening on {scheme}://{addr}");
    if let Some((live, finished)) = &sample_ids {
        println!("{}", dev::banner(&addr.to_string(), live, finished));
    }

    let collector = Arc::new(Collector::new(Arc::clone(&registry), Arc::clone(&sampler), config.gc.clone()));
    tokio::spawn(Arc::clone(&collector).run());
    let watch_hub = Arc::new(WatchHub::new());
    let streams = Arc::new(tokio::sync::Semaphore::new(config.limits.max_streams));
    let telemetry = crate::telemetry::Telemetry::new(&config, &node_id);
    let cluster = match &config.cluster {
        Some(cluster) => Some(Arc::new(Cluster::new(cluster, &config.tls, &node_id, Arc::clone(&registry))?)),
        None => None,
    };
    cluster.iter().for_each(|cluster| cluster.run());
    let served = Arc::clone(&telemetry.served);
    let state = Arc::new(AppState {
        registry,
        sampler,
        node_id,
        acl,
        collector,
        watch_hub,
        streams,
        telemetry,
        cluster: LiveCluster::new(cluster),
    });
    let started_with = config.clone();
    tokio::spawn(reload_on_hangup(hangups, flags.clone(), started_with, Arc::clone(&state), tls.clone(), log));
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown_signal().await;
        let _ = signalled_tx.send(());
    };
    let api_state = Arc::clone(&state);
    let handler = move |request| {
        let state = Arc::clone(&api_state);
        async move { api::answer(&state, request).await }
    };
    let server = server::serve(listener, handler, tls, &config.limits, served, shutdown);
    let grace = async {
        let _ = signalled_rx.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = server => {}
        () = grace => tracing::info!("open streams did not end within {SHUTDOWN_GRACE:?}; closing them"),
    }
    if let Some(cluster) = state.cluster.current() {
        cluster.leave().await;
    }
    tracing::info!("allocd stopped");
    drop(dev_dir);
    Ok(())
}

/// Reloads on every SIGHUP, for as long as the agent runs.
/// Reloads on every SIGHUP; `started_with` is the configuration the agent started with, so a
/// reload can say which edited settings wait for a restart.
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    flags: AgentFlags,
    started_with: Config,
    state: Arc<AppState>,
    tls: Option<Arc<server::LiveTls>>,
    log: LogControl,
) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration");
        match reload(&flags, &state, tls.as_deref(), &log).await {
            Ok((level, cluster, config)) => {
                tracing::info!(
                    log_level = level,
                    tls = tls.is_some(),
                    cluster,
                    "configuration reloaded: ACL policies and tokens, TLS certificate and key, log level, cluster"
                );
                let waiting = started_with.restart_only_changes(&config);
                if !waiting.is_empty() {
                    tracing::warn!(
                        "changed settings that take effect only when the agent restarts, not applied: {}",
                        waiting.join(", ")
                    );
                }
            }
            Err(err) => {
                // One line per record: parser errors come with a multi-line source excerpt.
                let reason = format!("{err:#}").split_whitespace().collect::<Vec<_>>().join(" ");
                tracing::error!("reload failed, keeping the running configuration: {reason}");
            }
        }
    }
}

/// Reads everything first and applies it only when all of it is good; returns the log level,
/// what became of the `cluster { }` block, and the configuration read.
async fn reload(
    flags: &AgentFlags,
    state: &AppState,
    tls: Option<&server::LiveTls>,
    log: &LogControl,
) -> anyhow::Result<(String, &'static str, Config)> {
    let config = resolve_config(flags)?;
    let acl = Acl::load(&config.acl)?;
    let acceptor = server::tls_acceptor(&config.tls)?;
    if acceptor.is_some() != tls.is_some() {
        bail!("tls.http cannot change while the agent runs: restart it");
    }
    let running = state.cluster.current();
    let unchanged = running.as_ref().map(|cluster| cluster.config()) == config.cluster.as_ref();
    let cluster = match (&config.cluster, unchanged) {
        (Some(cluster), false) => {
            Some(Arc::new(Cluster::new(cluster, &config.tls, &state.node_id, Arc::clone(&state.registry))?))
        }
        _ => None,
    };
    // The same block keeps its membership, but the forwarding client is rebuilt when the TLS
    // files changed, also in place (a rotated certificate).
    let forwarder = match (&running, unchanged) {
        (Some(running), true) => running.forwarder_for(&config.tls)?,
        _ => None,
    };
    let level = config.log_level.clone().unwrap_or_else(|| "info".to_string());
    log.set_level(&level)?;
    state.acl.replace(acl);
    if let (Some(live), Some(acceptor)) = (tls, acceptor) {
        live.replace(acceptor);
    }
    if unchanged {
        let outcome = match (running, forwarder) {
            (Some(running), Some(forwarder)) => {
                running.replace_forwarder(forwarder);
                "unchanged, forwarding with the new TLS files"
            }
            _ => "unchanged",
        };
        return Ok((level, outcome, config));
    }
    // The old registration ends (its lease revoked) before the new one starts, so no write
    // of the old one can outlive it under the same keys.
    let outcome = match (&running, &cluster) {
        (None, _) => "joined",
        (Some(_), None) => "left",
        (Some(_), Some(_)) => "restarted",
    };
    let old = state.cluster.replace(cluster.clone());
    if let Some(old) = old {
        old.leave().await;
    }
    cluster.iter().for_each(|cluster| cluster.run());
    Ok((level, outcome, config))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocking_pool_holds_every_plugins_limit_and_the_hosts_share() {
        let config = Config::from_hcl(
            "plugin \"a\" {\n  max_concurrency = 3\n}\nplugin \"b\" {\n  max_concurrency = 5\n}\nplugin \"c\" {}\n",
        )
        .unwrap();
        assert_eq!(blocking_threads(&config), 3 + 5 + 16 + HOST_BLOCKING_THREADS);
    }
}
