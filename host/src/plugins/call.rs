//! Calling into a plugin without letting it hurt the agent.
//!
//! Every call runs on tokio's blocking pool, behind a per-plugin concurrency limit, with a
//! timeout. The SDK adapter already turns plugin panics into `panicked` errors; a call that
//! hangs keeps its blocking thread and its permit, so a stuck plugin can exhaust only its own
//! limit, never the agent's (the pool is sized from the sum of the limits, see `main.rs`).
//!
//! A service whose call timed out or panicked is *unhealthy* (a circuit breaker, [`Health`]):
//! its calls fail at once instead of waiting for the timeout again, so callers that ask several
//! services (the alloc lookup) answer promptly from the healthy ones. After a backoff one call
//! at a time goes through as a probe, in the background so that no request waits for it; the
//! first probe that gets an answer makes the service healthy again. Each change is logged once.
//!
//! A call that timed out while running is *stuck* until it returns ([`Stuck`]). A call about
//! one allocation (a file on a hung mount) makes that allocation's later calls fail at once
//! until it returns, so one broken allocation pins one permit, never all of them; the probe
//! that follows its timeout asks about another allocation and heals the service for the rest.
//! A stuck probe holds back further probes, so a plugin caught in a loop pins one more thread,
//! not one per probe. A call whose caller gave up before it started never runs, and a call that
//! changes something (`gc`) is never run as a probe: nothing happens that its caller was told
//! had failed.
//!
//! Every call ends in one [`CallOutcome`], recorded in the plugin's [`CallStats`] (shared by
//! its services) for `/v1/metrics`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abi_stable::std_types::RResult;
use allocd_plugin_abi::{ErrorKind, PluginError};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::telemetry::own::{CallOutcome, CallStats};

/// The first wait before an unhealthy service is probed; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
        self.error.kind.is_plugin_fault()
    }
}

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Whether a service answers: the state of its circuit breaker.
#[derive(Default)]
struct Health(Mutex<Option<Outage>>);

/// An unhealthy service: why, and when it may be probed next.
struct Outage {
    cause: String,
    backoff: Duration,
    probe_at: Instant,
    probing: bool,
}

/// What the breaker lets a call do.
enum Admission {
    Call,
    /// Run the call in the background to learn whether the service answers again; fail
    /// this one at once with the outage's cause.
    Probe(String),
    /// Fail at once with the outage's cause.
    Skip(String),
}

impl Health {
    /// Why the service is unhealthy, if it is.
    fn outage(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|outage| outage.cause.clone())
    }

    /// What a call may do; a probe only when `may_probe`.
    fn admit(&self, may_probe: bool) -> Admission {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match state.as_mut() {
            None => Admission::Call,
            Some(outage) if may_probe && !outage.probing && Instant::now() >= outage.probe_at => {
                outage.probing = true;
                Admission::Probe(outage.cause.clone())
            }
            Some(outage) => Admission::Skip(outage.cause.clone()),
        }
    }

    /// Records a call's outcome: `Some(cause)` when it timed out or panicked. Only a failed
    /// probe lengthens the backoff: calls that were in flight when the outage began do not.
    fn record(&self, plugin: &str, failure: Option<&str>, probe: bool) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match (state.as_mut(), failure) {
            (None, None) => {}
            (Some(_), None) => {
                *state = None;
                tracing::info!(plugin, "plugin answers again; calling it as usual");
            }
            (Some(outage), Some(cause)) if probe => {
                outage.backoff = (outage.backoff * 2).min(MAX_BACKOFF);
                outage.probe_at = Instant::now() + outage.backoff;
                outage.probing = false;
                outage.cause = cause.to_owned();
            }
            (Some(_), Some(_)) => {}
            (None, Some(cause)) => {
                tracing::warn!(plugin, "plugin failed ({cause}); its calls fail at once until it answers a probe");
                let probe_at = Instant::now() + FIRST_BACKOFF;
                *state = Some(Outage { cause: cause.to_owned(), backoff: FIRST_BACKOFF, probe_at, probing: false });
            }
        }
    }
}

/// What a call is about.
#[derive(Clone, Copy)]
struct Scope<'a> {
    /// One allocation (its stuck call holds back that allocation's calls), or the service.
    alloc: Option<&'a str>,
    /// It changes something: never run as a probe.
    changes: bool,
}

/// Calls that timed out while running and have not returned yet: the probes among them, and
/// those about each allocation.
#[derive(Default)]
struct Stuck {
    probes: AtomicUsize,
    allocs: Mutex<HashMap<String, usize>>,
}

impl Stuck {
    fn hold(&self, alloc: Option<&str>, probe: bool) {
        if probe {
            self.probes.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(alloc) = alloc {
            *self.lock().entry(alloc.to_owned()).or_default() += 1;
        }
    }

    fn release(&self, alloc: Option<&str>, probe: bool) {
        if probe {
            self.probes.fetch_sub(1, Ordering::SeqCst);
        }
        if let Some(alloc) = alloc {
            let mut allocs = self.lock();
            if let Some(count) = allocs.get_mut(alloc) {
                *count -= 1;
                if *count == 0 {
                    allocs.remove(alloc);
                }
            }
        }
    }

    fn holds(&self, alloc: &str) -> bool {
        self.lock().contains_key(alloc)
    }

    fn holds_a_probe(&self) -> bool {
        self.probes.load(Ordering::SeqCst) > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.allocs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where one call is.
const NOT_STARTED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const ABANDONED: u8 = 3;

/// One call's state, shared by its caller and the closure on the blocking pool, so that
/// whichever is done with it second knows what the other did.
struct CallState {
    state: AtomicU8,
    stuck: Arc<Stuck>,
    alloc: Option<String>,
    probe: bool,
}

impl CallState {
    /// The closure starts the call; false when its caller has already given up.
    fn start(&self) -> bool {
        self.state.compare_exchange(NOT_STARTED, RUNNING, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    /// The closure is done with the call (returned or unwound): a call its caller gave up on
    /// meanwhile stops holding back what it was about.
    fn finish(&self) {
        if self.state.compare_exchange(RUNNING, DONE, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            self.stuck.release(self.alloc.as_deref(), self.probe);
        }
    }

    /// The caller gives up (a timeout, or its request went away): a call still running is
    /// stuck until it finishes; one not started never will be.
    fn abandon(&self) {
        // Held first, so that a call finishing meanwhile releases what it holds.
        self.stuck.hold(self.alloc.as_deref(), self.probe);
        if self.state.swap(ABANDONED, Ordering::SeqCst) != RUNNING {
            self.stuck.release(self.alloc.as_deref(), self.probe);
        }
    }
}

/// Calls [`CallState::finish`] when the closure is done, also when it unwinds.
struct Finishing<'a>(&'a CallState);

impl Drop for Finishing<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Calls [`CallState::abandon`] unless the caller got the closure's answer: on a timeout, and
/// when the caller's own future is dropped (its client went away).
struct GivingUp(Option<Arc<CallState>>);

impl GivingUp {
    fn answered(&mut self) {
        self.0 = None;
    }
}

impl Drop for GivingUp {
    fn drop(&mut self) {
        if let Some(call) = self.0.take() {
            call.abandon();
        }
    }
}

/// The call policy of one plugin instance.
#[derive(Clone)]
pub struct Caller {
    plugin: Arc<str>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    health: Arc<Health>,
    stuck: Arc<Stuck>,
    stats: Arc<CallStats>,
}

impl Caller {
    pub fn new(plugin: &str, max_concurrency: usize, timeout: Duration) -> Self {
        let permits = Arc::new(Semaphore::new(max_concurrency));
        let (health, stuck, stats) = (Arc::default(), Arc::default(), Arc::default());
        Self { plugin: plugin.into(), permits, timeout, health, stuck, stats }
    }

    /// What this plugin's calls have done (shared by its services).
    pub fn stats(&self) -> &Arc<CallStats> {
        &self.stats
    }

    /// Why this service is unhealthy (its calls fail at once), if it is.
    pub fn outage(&self) -> Option<String> {
        self.health.outage()
    }

    /// The same plugin's limit and timeout, with a health of its own: a library's metric
    /// provider and storage backend fail (and recover) separately.
    pub fn with_own_health(&self) -> Self {
        Self { health: Arc::default(), stuck: Arc::default(), ..self.clone() }
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Runs a service-wide `call` against `target` on the blocking pool, unless the service
    /// is unhealthy.
    pub async fn call<P, T, F>(&self, target: &Arc<P>, call: F) -> Result<T, PluginFailure>
    where
        P: Send + Sync + 'static + ?Sized,
        T: Send + 'static,
        F: FnOnce(&P) -> RResult<T, PluginError> + Send + 'static,
    {
        self.scoped(Scope { alloc: None, changes: false }, target, call).await
    }

    /// [`Caller::call`] for a call about `alloc_id` only.
    pub async fn call_for<P, T, F>(&self, alloc_id: &str, target: &Arc<P>, call: F) -> Result<T, PluginFailure>
    where
        P: Send + Sync + 'static + ?Sized,
        T: Send + 'static,
        F: FnOnce(&P) -> RResult<T, PluginError> + Send + 'static,
    {
        self.scoped(Scope { alloc: Some(alloc_id), changes: false }, target, call).await
    }

    /// [`Caller::call_for`] for a call that changes something: never run as a probe.
    pub async fn call_changing<P, T, F>(&self, alloc_id: &str, target: &Arc<P>, call: F) -> Result<T, PluginFailure>
    where
        P: Send + Sync + 'static + ?Sized,
        T: Send + 'static,
        F: FnOnce(&P) -> RResult<T, PluginError> + Send + 'static,
    {
        self.scoped(Scope { alloc: Some(alloc_id), changes: true }, target, call).await
    }

    async fn scoped<P, T, F>(&self, scope: Scope<'_>, target: &Arc<P>, call: F) -> Result<T, PluginFailure>
    where
        P: Send + Sync + 'static + ?Sized,
        T: Send + 'static,
        F: FnOnce(&P) -> RResult<T, PluginError> + Send + 'static,
    {
        if let Some(alloc) = scope.alloc.filter(|alloc| self.stuck.holds(alloc)) {
            self.stats.record(CallOutcome::Skipped);
            let stuck = format!("an earlier call for allocation {alloc} timed out and has not returned");
            return Err(self.failure(PluginError::unavailable(stuck)));
        }
        let may_probe = !scope.changes && !self.stuck.holds_a_probe();
        match self.health.admit(may_probe) {
            Admission::Call => self.checked_call(scope, target, call, false).await,
            Admission::Probe(cause) => {
                self.stats.record(CallOutcome::Skipped);
                let (caller, target) = (self.clone(), Arc::clone(target));
                let alloc = scope.alloc.map(str::to_owned);
                tokio::spawn(async move {
                    let scope = Scope { alloc: alloc.as_deref(), changes: false };
                    caller.checked_call(scope, &target, call, true).await
                });
                Err(self.failure(PluginError::unavailable(format!("unhealthy (being probed): {cause}"))))
            }
            Admission::Skip(cause) => {
                self.stats.record(CallOutcome::Skipped);
                Err(self.failure(PluginError::unavailable(format!("unhealthy: {cause}"))))
            }
        }
    }

    /// Makes the call (a `probe` or not) and records in the service's health whether it timed
    /// out or panicked.
    async fn checked_call<P, T, F>(
        &self,
        scope: Scope<'_>,
        target: &Arc<P>,
        call: F,
        probe: bool,
    ) -> Result<T, PluginFailure>
    where
        P: Send + Sync + 'static + ?Sized,
        T: Send + 'static,
        F: FnOnce(&P) -> RResult<T, PluginError> + Send + 'static,
    {
        let permits = Arc::clone(&self.permits);
        let target = Arc::clone(target);
        let alloc = scope.alloc.map(str::to_owned);
        let state =
            Arc::new(CallState { state: AtomicU8::new(NOT_STARTED), stuck: Arc::clone(&self.stuck), alloc, probe });
        let mut giving_up = GivingUp(Some(Arc::clone(&state)));
        // Waiting for a slot counts against the timeout too: a plugin whose calls all hang
        // must not make later callers wait forever.
        let attempt = async move {
            let permit = permits.acquire_owned().await.expect("plugin semaphore is never closed");
            tokio::task::spawn_blocking(move || {
                if !state.start() {
                    return None; // its caller gave up before it started
                }
                let _finishing = Finishing(&state);
                let started = std::time::Instant::now();
                let result = call(&target);
                drop(permit);
                Some((result.into_result(), started.elapsed()))
            })
            .await
        };
        let error = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(Some((result, took)))) => {
                giving_up.answered();
                let panic = result.as_ref().err().filter(|error| error.kind == ErrorKind::PANICKED);
                self.stats.record(match panic {
                    Some(_) => CallOutcome::Panicked,
                    None => CallOutcome::Answered { error: result.is_err(), took },
                });
                self.health.record(&self.plugin, panic.map(|error| error.message.as_str()), probe);
                return result.map_err(|error| self.failure(error));
            }
            Ok(Ok(None)) => unreachable!("only an abandoned call is skipped, and nobody awaits it"),
            Ok(Err(join_error)) => {
                giving_up.answered();
                self.stats.record(CallOutcome::Panicked);
                PluginError::new(ErrorKind::PANICKED, format!("plugin call failed: {join_error}"))
            }
            Err(_) => {
                self.stats.record(CallOutcome::TimedOut);
                drop(giving_up);
                PluginError::unavailable(format!("call timed out after {:?}", self.timeout))
            }
        };
        self.health.record(&self.plugin, Some(error.message.as_str()), probe);
        Err(self.failure(error))
    }

    fn failure(&self, error: PluginError) -> PluginFailure {
        PluginFailure { plugin: self.plugin.to_string(), error }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use abi_stable::std_types::RResult::{RErr, ROk};

    use super::*;

    /// Counts the calls that reach it; hangs (for a while) or panics when told to.
    #[derive(Default)]
    struct Service {
        calls: AtomicUsize,
    }

    fn call(
        caller: &Caller,
        service: &Arc<Service>,
        behaviour: fn(&Service) -> RResult<(), PluginError>,
    ) -> impl Future<Output = Result<(), PluginFailure>> {
        caller.call(service, move |s: &Service| {
            s.calls.fetch_add(1, Ordering::SeqCst);
            behaviour(s)
        })
    }

    /// Longer than the 1 s timeouts below, shorter than the first backoff after them.
    fn hang(_: &Service) -> RResult<(), PluginError> {
        std::thread::sleep(Duration::from_millis(1500));
        ROk(())
    }

    /// Longer than a 100 ms timeout, over before a probe is due.
    fn slow(_: &Service) -> RResult<(), PluginError> {
        std::thread::sleep(Duration::from_millis(300));
        ROk(())
    }

    fn call_for(
        caller: &Caller,
        alloc: &'static str,
        service: &Arc<Service>,
        behaviour: fn(&Service) -> RResult<(), PluginError>,
    ) -> impl Future<Output = Result<(), PluginFailure>> {
        caller.call_for(alloc, service, move |s: &Service| {
            s.calls.fetch_add(1, Ordering::SeqCst);
            behaviour(s)
        })
    }

    fn answer(_: &Service) -> RResult<(), PluginError> {
        ROk(())
    }

    /// Waits (up to 5 s, the machine may be busy) until `done` holds.
    async fn eventually(mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The backoff of the service's outage, if it has one.
    fn backoff(caller: &Caller) -> Option<(Duration, bool)> {
        caller.health.0.lock().unwrap().as_ref().map(|outage| (outage.backoff, outage.probing))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_unhealthy_service_fails_at_once_until_a_probe_answers() {
        let caller = Caller::new("p", 4, Duration::from_secs(1));
        let service = Arc::new(Service::default());
        let timed_out = call(&caller, &service, hang).await.unwrap_err();
        assert!(timed_out.message().contains("timed out"), "{timed_out}");

        let started = Instant::now();
        let skipped = call(&caller, &service, answer).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(500), "an unhealthy service is not waited for");
        assert_eq!(skipped.message(), "unhealthy: call timed out after 1s");
        assert_eq!(service.calls.load(Ordering::SeqCst), 1, "skipped calls never reach the plugin");

        tokio::time::sleep(FIRST_BACKOFF).await;
        let probed = call(&caller, &service, answer).await.unwrap_err();
        assert!(probed.message().starts_with("unhealthy (being probed)"), "{probed}");
        eventually(|| backoff(&caller).is_none()).await;
        assert_eq!(service.calls.load(Ordering::SeqCst), 2, "the probe ran in the background");
        assert!(call(&caller, &service, answer).await.is_ok(), "an answered probe heals the service");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn answers_that_are_errors_keep_a_service_healthy_and_panics_do_not() {
        let caller = Caller::new("p", 4, Duration::from_secs(5));
        let service = Arc::new(Service::default());
        let refused: fn(&Service) -> RResult<(), PluginError> = |_| RErr(PluginError::internal("no"));
        assert_eq!(call(&caller, &service, refused).await.unwrap_err().message(), "no");
        assert!(call(&caller, &service, answer).await.is_ok());
        let panicked: fn(&Service) -> RResult<(), PluginError> =
            |_| RErr(PluginError::new(ErrorKind::PANICKED, "plugin panicked: boom"));
        assert!(call(&caller, &service, panicked).await.is_err());
        assert_eq!(call(&caller, &service, answer).await.unwrap_err().message(), "unhealthy: plugin panicked: boom");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn only_failed_probes_lengthen_the_backoff() {
        let caller = Caller::new("p", 8, Duration::from_millis(100));
        let service = Arc::new(Service::default());
        let in_flight = futures_util::future::join_all((0..4).map(|_| call(&caller, &service, slow))).await;
        assert!(in_flight.iter().all(Result::is_err));
        assert_eq!(backoff(&caller), Some((FIRST_BACKOFF, false)), "four failures at once are one outage");

        tokio::time::sleep(FIRST_BACKOFF).await;
        let probed = call(&caller, &service, slow).await.unwrap_err();
        assert!(probed.message().starts_with("unhealthy (being probed)"), "{probed}");
        eventually(|| backoff(&caller) == Some((2 * FIRST_BACKOFF, false))).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_call_that_changes_something_is_never_a_probe() {
        let caller = Caller::new("p", 4, Duration::from_millis(100));
        let service = Arc::new(Service::default());
        assert!(call(&caller, &service, slow).await.is_err());
        tokio::time::sleep(FIRST_BACKOFF + Duration::from_millis(300)).await;
        let gc = caller.call_changing("5fb2d3a4-0b9e-4f0a-8f8e-2a1c3d4e5f60", &service, |s: &Service| {
            s.calls.fetch_add(1, Ordering::SeqCst);
            ROk(())
        });
        let refused = gc.await.unwrap_err();
        assert!(refused.message().starts_with("unhealthy: "), "{refused}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(service.calls.load(Ordering::SeqCst), 1, "the change never ran");
        assert_eq!(backoff(&caller), Some((FIRST_BACKOFF, false)), "and it took no probe's turn");
        let probed = call(&caller, &service, answer).await.unwrap_err();
        assert!(probed.message().starts_with("unhealthy (being probed)"), "{probed}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_call_stuck_on_one_allocation_holds_back_only_that_allocation() {
        let caller = Caller::new("p", 4, Duration::from_millis(200));
        let service = Arc::new(Service::default());
        assert!(call_for(&caller, "a", &service, hang).await.unwrap_err().message().contains("timed out"));
        // The service is unhealthy until a probe about another allocation answers.
        tokio::time::sleep(FIRST_BACKOFF).await;
        let probed = call_for(&caller, "b", &service, answer).await.unwrap_err();
        assert!(probed.message().starts_with("unhealthy (being probed)"), "{probed}");
        eventually(|| backoff(&caller).is_none()).await;
        assert!(call_for(&caller, "b", &service, answer).await.is_ok(), "other allocations are served");
        let held = call_for(&caller, "a", &service, answer).await.unwrap_err();
        assert!(held.message().contains("allocation a timed out and has not returned"), "{held}");
        eventually(|| !caller.stuck.holds("a")).await;
        assert!(call_for(&caller, "a", &service, answer).await.is_ok(), "served again once it returned");
        assert_eq!(service.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_call_whose_request_went_away_is_stuck_like_a_timed_out_one() {
        let caller = Caller::new("p", 4, Duration::from_secs(5));
        let service = Arc::new(Service::default());
        // The client leaves long before the call's own timeout.
        let left = tokio::time::timeout(Duration::from_millis(200), call_for(&caller, "a", &service, hang)).await;
        assert!(left.is_err());
        let held = call_for(&caller, "a", &service, answer).await.unwrap_err();
        assert!(held.message().contains("allocation a timed out and has not returned"), "{held}");
        eventually(|| !caller.stuck.holds("a")).await;
        assert!(call_for(&caller, "a", &service, answer).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_call_whose_caller_gave_up_before_it_started_never_runs() {
        let caller = Caller::new("p", 1, Duration::from_millis(200));
        let service = Arc::new(Service::default());
        // The only slot is held by a call stuck on one allocation...
        assert!(call_for(&caller, "a", &service, hang).await.is_err());
        // ...so this one gets none in time, and is given up before it starts.
        let queued = caller.call_changing("b", &service, |s: &Service| {
            s.calls.fetch_add(1, Ordering::SeqCst);
            ROk(())
        });
        assert!(queued.await.unwrap_err().message().contains("timed out"));
        eventually(|| !caller.stuck.holds("a")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(service.calls.load(Ordering::SeqCst), 1, "the queued change never ran");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn no_probe_starts_while_an_earlier_probe_is_stuck() {
        let caller = Caller::new("p", 4, Duration::from_millis(100));
        let service = Arc::new(Service::default());
        let looping: fn(&Service) -> RResult<(), PluginError> = |_| {
            std::thread::sleep(2 * FIRST_BACKOFF + Duration::from_millis(1500));
            ROk(())
        };
        assert!(call(&caller, &service, slow).await.is_err());
        tokio::time::sleep(FIRST_BACKOFF).await;
        assert!(call(&caller, &service, looping).await.unwrap_err().message().starts_with("unhealthy (being probed)"));
        eventually(|| backoff(&caller) == Some((2 * FIRST_BACKOFF, false))).await;
        tokio::time::sleep(2 * FIRST_BACKOFF).await;
        let skipped = call(&caller, &service, answer).await.unwrap_err();
        assert!(skipped.message().starts_with("unhealthy: "), "no probe while one is stuck: {skipped}");
        assert_eq!(service.calls.load(Ordering::SeqCst), 2);
        eventually(|| !caller.stuck.holds_a_probe()).await;
        let probed = call(&caller, &service, answer).await.unwrap_err();
        assert!(probed.message().starts_with("unhealthy (being probed)"), "{probed}");
    }
}
