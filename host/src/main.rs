//! The `allocd` binary: parse the command line, set up logging, run, map errors to exit codes.

use allocd::cli::{self, Command};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match cli::parse(&args).and_then(run) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("allocd: {err:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Agent(flags) => {
            let config = allocd::agent::resolve_config(&flags)?;
            let log = allocd::logging::init(config.log_level.as_deref().unwrap_or("info"), config.log_json);
            // Before anything opens files or sockets.
            allocd::agent::raise_open_file_limit();
            // Sized from the plugins' limits: a burst (a thousand followers connecting at once)
            // leaves no more idle threads behind than the limits allow.
            give_back_freed_memory();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(allocd::agent::blocking_threads(&config))
                .build()?;
            let result = runtime.block_on(allocd::agent::run(flags, config, log));
            // A plugin call that never returns must not keep the process alive.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            result?;
            Ok(0)
        }
        Command::PluginInspect(path) => {
            let (report, loadable) = allocd::inspect::report(&path);
            print!("{report}");
            Ok(if loadable { 0 } else { 1 })
        }
        Command::Client(invocation) => allocd::client::run(invocation),
        Command::Version => {
            println!("allocd {} (plugin-api {})", env!("CARGO_PKG_VERSION"), allocd_plugin_abi::ABI_VERSION);
            Ok(0)
        }
        Command::Help => {
            print!("{}\n{}", cli::USAGE, allocd::client::args::USAGE);
            Ok(0)
        }
    }
}

/// glibc keeps what a burst (a thousand followers, a pool of blocking threads) freed in its
/// arenas; every 10 s a trim hands the free pages back to the system (microseconds when idle).
fn give_back_freed_memory() {
    let spawned = std::thread::Builder::new().name("allocd-trim".into()).spawn(|| {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(10));
            // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
            unsafe { libc::malloc_trim(0) };
        }
    });
    if let Err(err) = spawned {
        eprintln!("allocd: no memory trim thread: {err}");
    }
}
