//! The client half of the `allocd` binary: `allocd alloc {list,status,logs,fs,stats}` and
//! `allocd node stats`, shaped like Nomad's CLI and speaking only Nomad's HTTP API (plus
//! `/v1/allocations`), so the same commands work against allocd and against a Nomad agent.
//!
//! [`args`] parses, [`http`] connects (address, token, TLS from flags or `NOMAD_*`), [`alloc`],
//! [`fs`] and [`stats`] run the commands, [`follow`] reads framed streams and resumes them,
//! [`format`] prints Nomad-like tables. Fleet mode needs nothing here: any agent answers for
//! the whole fleet, so the client keeps talking to the one address it is given.

pub mod alloc;
pub mod args;
pub mod follow;
pub mod format;
pub mod fs;
pub mod http;
pub mod stats;

use std::io::Write;

use self::args::{Action, Invocation};
use self::http::Api;

/// Runs one client command; the exit code is 0 on success (Ctrl-C while following included).
pub fn run(invocation: Invocation) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let api = Api::new(&invocation.connection)?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let result = tokio::select! {
            result = execute(&api, invocation, &mut out) => result,
            _ = tokio::signal::ctrl_c() => Ok(()),
        };
        match result {
            // A closed pipe (`| head`) is a reader that has seen enough.
            Err(e)
                if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
            Ok(()) => Ok(0),
        }
    })
}

async fn execute(api: &Api, invocation: Invocation, out: &mut dyn Write) -> anyhow::Result<()> {
    let Invocation { action, json, verbose, .. } = invocation;
    match action {
        Action::AllocList => alloc::list(api, json, verbose, out).await?,
        Action::AllocStatus { alloc } => alloc::status(api, &alloc, json, out).await?,
        Action::AllocLogs { alloc, task, stderr, follow, tail } => {
            alloc::logs(api, &alloc, task, stderr, follow, tail, out).await?
        }
        Action::AllocFs { alloc, path, stat, follow, tail, output } => {
            let request = fs::FsRequest {
                prefix: &alloc,
                path: &path,
                stat,
                follow,
                tail,
                output: output.as_deref(),
                machine: verbose,
            };
            fs::run(api, request, out).await?
        }
        Action::AllocStats { alloc } => stats::alloc(api, &alloc, json, out).await?,
        Action::NodeStats => stats::node(api, json, out).await?,
    }
    // `main` exits with `process::exit`, which flushes nothing.
    Ok(out.flush()?)
}
