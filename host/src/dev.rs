//! `-dev` mode: a throw-away data dir holding one sample allocation in Nomad's layout, whose
//! task `demo` writes a line to `alloc/logs/demo.stdout.0` every second.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncWriteExt;

/// Task name of the sample allocation.
pub const TASK: &str = "demo";

/// Creates the sample allocation under `alloc_dir`; returns its ID.
pub fn create_sample_alloc(alloc_dir: &Path) -> anyhow::Result<String> {
    let alloc_id = uuid::Uuid::new_v4().to_string();
    let root = alloc_dir.join(&alloc_id);
    let dirs = ["alloc/data", "alloc/logs", "alloc/tmp", "demo/local", "demo/secrets", "demo/tmp", "demo/private"];
    for dir in dirs {
        std::fs::create_dir_all(root.join(dir)).with_context(|| format!("creating {}", root.join(dir).display()))?;
    }
    let files: [(&str, &str); 4] = [
        ("alloc/logs/demo.stdout.0", "demo started\n"),
        ("alloc/logs/demo.stderr.0", ""),
        ("demo/local/config.json", "{\"greeting\": \"hello from allocd\"}\n"),
        ("demo/secrets/token", "not for your eyes\n"),
    ];
    for (path, text) in files {
        std::fs::write(root.join(path), text).with_context(|| format!("writing {path}"))?;
    }
    Ok(alloc_id)
}

/// Appends a line to the demo task's stdout every second, forever.
pub async fn write_demo_log(alloc_dir: std::path::PathBuf, alloc_id: String) {
    let path = alloc_dir.join(&alloc_id).join("alloc/logs/demo.stdout.0");
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    for line in 1u64.. {
        ticker.tick().await;
        let written = async {
            let mut file = tokio::fs::OpenOptions::new().append(true).open(&path).await?;
            file.write_all(format!("demo line {line}\n").as_bytes()).await
        };
        if written.await.is_err() {
            return; // the allocation was collected
        }
    }
}

/// The startup message: the alloc ID and commands to try.
pub fn banner(addr: &str, alloc_id: &str) -> String {
    format!(
        "\n==> allocd dev agent: http://{addr}\n    sample allocation: {alloc_id} (task \"{TASK}\")\n\n    Try:\n      \
         curl -s http://{addr}/v1/client/stats?pretty\n      \
         curl -s 'http://{addr}/v1/client/fs/ls/{alloc_id}?path=/alloc/logs&pretty'\n      \
         curl -s 'http://{addr}/v1/client/fs/stat/{alloc_id}?path=/demo/local/config.json&pretty'\n      \
         curl -s 'http://{addr}/v1/client/fs/cat/{alloc_id}?path=/alloc/logs/demo.stdout.0'\n      \
         curl -s 'http://{addr}/v1/client/fs/readat/{alloc_id}?path=/alloc/logs/demo.stdout.0&offset=0&limit=12'\n"
    )
}
