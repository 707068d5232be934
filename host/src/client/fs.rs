//! `allocd alloc fs`: a directory prints Nomad's table (mode, size, modified time, name), a
//! file prints its bytes (whole, its tail, or followed), `-stat` describes the path, and `-o`
//! downloads the file, with a progress line on a terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use super::alloc::{read_or_follow, resolve};
use super::args::Tail;
use super::follow::Source;
use super::format::{columns, file_time, ibytes};
use super::http::{Api, query};

/// What `alloc fs` was asked.
pub struct FsRequest<'a> {
    pub prefix: &'a str,
    pub path: &'a str,
    pub stat: bool,
    pub follow: bool,
    pub tail: Tail,
    pub output: Option<&'a Path>,
    /// `-H`: exact sizes in bytes.
    pub machine: bool,
}

/// Runs `allocd alloc fs`.
pub async fn run(api: &Api, request: FsRequest<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
    let stub = resolve(api, request.prefix).await?;
    let alloc = stub["ID"].as_str().unwrap_or_default().to_string();
    let path = request.path;
    let info = api.json(&format!("/v1/client/fs/stat/{alloc}?{}", query(&[("path", path)]))).await?;
    if request.stat {
        out.write_all(file_table(std::slice::from_ref(&info), request.machine).as_bytes())?;
        return Ok(());
    }
    if info["IsDir"] == true && request.output.is_some() {
        anyhow::bail!("-o downloads a file; {path:?} is a directory");
    }
    if info["IsDir"] == true {
        let entries = api.json(&format!("/v1/client/fs/ls/{alloc}?{}", query(&[("path", path)]))).await?;
        out.write_all(
            file_table(entries.as_array().map(Vec::as_slice).unwrap_or_default(), request.machine).as_bytes(),
        )?;
        return Ok(());
    }
    if let Some(file) = request.output {
        return download(api, &alloc, path, info["Size"].as_u64().unwrap_or(0), file).await;
    }
    let source = Source::File { alloc, path: path.to_string() };
    read_or_follow(api, &source, request.follow, request.tail, out).await
}

/// Nomad's `Mode Size Modified Time Name` table; directories end in `/`.
fn file_table(entries: &[Value], machine: bool) -> String {
    let mut rows = vec![["Mode", "Size", "Modified Time", "Name"].map(String::from).to_vec()];
    for entry in entries {
        let size = entry["Size"].as_u64().unwrap_or(0);
        let mut name = entry["Name"].as_str().unwrap_or_default().to_string();
        if entry["IsDir"] == true {
            name.push('/');
        }
        rows.push(vec![
            entry["FileMode"].as_str().unwrap_or_default().to_string(),
            if machine { size.to_string() } else { ibytes(size) },
            file_time(entry["ModTime"].as_str().unwrap_or_default()),
            name,
        ]);
    }
    columns(&rows)
}

/// Streams the file into `file` (through a temporary file beside it, renamed when complete).
async fn download(api: &Api, alloc: &str, path: &str, size: u64, file: &Path) -> anyhow::Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing into {}", dir.display()))?;
    let mut response = api.get(&format!("/v1/client/fs/cat/{alloc}?{}", query(&[("path", path)]))).await?;
    let terminal = std::io::stderr().is_terminal();
    let mut done = 0u64;
    while let Some(chunk) = response.chunk().await? {
        temp.write_all(&chunk)?;
        done += chunk.len() as u64;
        if terminal {
            let percent = (done.min(size) * 100).checked_div(size).unwrap_or(100);
            eprint!("\r{path}: {} / {} ({percent}%)\x1b[K", ibytes(done), ibytes(size));
        }
    }
    if terminal {
        eprintln!();
    }
    temp.as_file().sync_all()?;
    temp.persist(file).with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}
