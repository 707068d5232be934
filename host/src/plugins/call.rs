//! Calling into a plugin without letting it hurt the agent.
//!
//! Every call runs on tokio's blocking pool, behind a per-plugin concurrency limit, with a
//! timeout. The SDK adapter already turns plugin panics into `panicked` errors; a call that
//! hangs keeps its blocking thread and its permit, so a stuck plugin can exhaust only its own
//! limit, never the agent's.

use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::RResult;
use allocd_plugin_api::{ErrorKind, PluginError};
use tokio::sync::Semaphore;

/// A failed plugin call, naming the plugin.
#[derive(Debug, Clone)]
pub struct PluginFailure {
    pub plugin: String,
    pub error: PluginError,
}

impl PluginFailure {
    pub fn kind(&self) -> ErrorKind {
        self.error.kind
    }

    /// The plugin's own message (Nomad's text for fs errors).
    pub fn message(&self) -> &str {
        self.error.message.as_str()
    }

    /// A message that names the plugin, for failures that are the plugin's fault.
    pub fn describe(&self) -> String {
        format!("plugin {:?}: {}", self.plugin, self.error.message)
    }

    /// True for failures of the plugin itself rather than answers about the request.
    pub fn is_plugin_fault(&self) -> bool {
        matches!(self.error.kind, ErrorKind::PANICKED | ErrorKind::UNAVAILABLE | ErrorKind::INTERNAL)
    }
}

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The call policy of one plugin instance.
#[derive(Clone)]
pub struct Caller {
    plugin: Arc<str>,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl Caller {
    pub fn new(plugin: &str, max_concurrency: usize, timeout: Duration) -> Self {
        Self { plugin: plugin.into(), permits: Arc::new(Semaphore::new(max_concurrency.max(1))), timeout }
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Runs `call` against `target` on the blocking pool.
    pub async fn call<P, T, F>(&self, target: &Arc<P>, call: F) -> Result<T, PluginFailure>
    where
        P: Send + Sync + 'static + ?Sized,
        T: Send + 'static,
        F: FnOnce(&P) -> RResult<T, PluginError> + Send + 'static,
    {
        let permits = Arc::clone(&self.permits);
        let target = Arc::clone(target);
        // Waiting for a slot counts against the timeout too: a plugin whose calls all hang
        // must not make later callers wait forever.
        let attempt = async move {
            let permit = permits.acquire_owned().await.expect("plugin semaphore is never closed");
            tokio::task::spawn_blocking(move || {
                let result = call(&target);
                drop(permit);
                result.into_result()
            })
            .await
        };
        let error = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(result)) => return result.map_err(|error| self.failure(error)),
            Ok(Err(join_error)) => PluginError::new(ErrorKind::PANICKED, format!("plugin call failed: {join_error}")),
            Err(_) => PluginError::unavailable(format!("call timed out after {:?}", self.timeout)),
        };
        Err(self.failure(error))
    }

    fn failure(&self, error: PluginError) -> PluginFailure {
        PluginFailure { plugin: self.plugin.to_string(), error }
    }
}
