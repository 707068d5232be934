//! The `allocd` binary: parse the command line, set up logging, run, map errors to exit codes.

use allocd::cli::{self, Command};

/// Threads for plugin calls, shared by all plugins (each is capped by its `max_concurrency`).
const BLOCKING_THREADS: usize = 64;

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
            let level = flags.log_level.clone().unwrap_or_else(|| "info".to_string());
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
            // Plugin calls are short; a small blocking pool keeps bursts (a thousand followers
            // connecting at once) from leaving hundreds of idle threads' memory behind.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(BLOCKING_THREADS)
                .build()?;
            let result = runtime.block_on(allocd::agent::run(flags));
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
        Command::Version => {
            println!("allocd {} (plugin-api {})", env!("CARGO_PKG_VERSION"), allocd_plugin_api::PLUGIN_API_VERSION);
            Ok(0)
        }
        Command::Help => {
            print!("{}", cli::USAGE);
            Ok(0)
        }
    }
}
