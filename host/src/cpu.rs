//! CPU-heavy work (compressing bodies, encoding long listings) on a pool of its own, below the
//! priority of the async workers.
//!
//! Two gzip downloads can keep every core busy for minutes. On tokio's blocking pool that work
//! competes as an equal with the workers that answer everyone else, so a stats request waits
//! behind a slice of compression for its turn on a core. Here the work runs on one thread per
//! core whose nice value is raised to [`NICE`]: the kernel gives a core to an async worker as soon
//! as it has something to do, and the compression still gets every cycle nobody else wants (a
//! download on a quiet node runs at full speed). The pool starts on first use, so an agent that
//! never compresses has no extra threads.

use std::sync::LazyLock;

/// The pool threads' nice value: a nice-0 thread outweighs one of them about ten to one.
const NICE: libc::c_int = 10;

static POOL: LazyLock<rayon::ThreadPool> = LazyLock::new(|| {
    rayon::ThreadPoolBuilder::new()
        .num_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name(|i| format!("allocd-cpu-{i}"))
        .start_handler(|_| lower_own_priority())
        // A panicking job drops its answer channel (the caller sees `None`); the pool lives on.
        .panic_handler(|panic| tracing::error!(reason = ?panic.downcast_ref::<&str>(), "a CPU job panicked"))
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

fn lower_own_priority() {
    // SAFETY: plain system calls on the calling thread; Linux keeps the nice value per thread.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE) } != 0;
    if failed {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not lower the CPU pool's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_below_the_callers_priority_and_a_panic_is_an_answer() {
        let nice = run(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }).await;
        assert_eq!(nice, Some(NICE));
        assert_eq!(run(|| -> u8 { panic!("on purpose") }).await, None);
        assert_eq!(run(|| 7).await, Some(7), "the pool outlives a panicking job");
    }
}
