//! CPU-heavy work (compressing bodies, encoding long listings) on a pool of its own, below the
//! priority of the async workers.
//!
//! Two gzip downloads can keep every core busy for minutes. On tokio's blocking pool that work
//! competes as an equal with the workers that answer everyone else, so a stats request waits
//! behind a slice of compression for its turn on a core. Here the work runs on one thread per
//! core whose nice value is the agent's raised by [`NICER_BY`]: the kernel favours an async
//! worker that has something to do about ten to one, and the compression still gets every cycle
//! nobody else wants (a download on a quiet node runs at full speed). The pool starts on first
//! use, so an agent that never compresses has no extra threads.

use std::sync::LazyLock;

/// How much higher than the agent's own the pool threads' nice value is: a thread of the agent
/// outweighs one of them about ten to one.
const NICER_BY: libc::c_int = 10;

static POOL: LazyLock<rayon::ThreadPool> = LazyLock::new(|| {
    // Pool threads start with the nice value of the thread that first used the pool: the agent's.
    rayon::ThreadPoolBuilder::new()
        .num_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name(|i| format!("allocd-cpu-{i}"))
        .start_handler(|_| lower_own_priority())
        // A panicking job drops its answer channel (the caller sees `None`); the pool lives on.
        .panic_handler(|panic| {
            let reason = panic.downcast_ref::<&str>().copied().or(panic.downcast_ref::<String>().map(String::as_str));
            tracing::error!(reason, "a CPU job panicked");
        })
        .build()
        .expect("starting the CPU pool")
});

/// Runs `job` on the pool; `None` if it panicked.
pub async fn run<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    POOL.spawn(move || {
        let _ = answer.send(job());
    });
    answered.await.ok()
}

/// The calling thread's nice value (Linux keeps it per thread).
fn own_nice() -> libc::c_int {
    // SAFETY: a plain system call about the calling thread.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

/// The nice value of a pool thread started by a thread at `nice`: higher by [`NICER_BY`], within
/// Linux's range.
fn pool_nice(nice: libc::c_int) -> libc::c_int {
    (nice + NICER_BY).min(19)
}

fn lower_own_priority() {
    let nice = pool_nice(own_nice());
    // SAFETY: a plain system call on the calling thread.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) } != 0;
    if failed {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not lower the CPU pool's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_run_below_the_agents_priority_and_a_panic_is_an_answer() {
        let agent = own_nice();
        assert_eq!(run(own_nice).await, Some(pool_nice(agent)));
        assert_eq!((pool_nice(0), pool_nice(15), pool_nice(-5)), (10, 19, 5));
        assert_eq!(run(|| -> u8 { panic!("on purpose") }).await, None);
        assert_eq!(run(|| 7).await, Some(7), "the pool outlives a panicking job");
    }
}
