//! `allocd alloc list|status|logs` and the ID-prefix resolution every `alloc` command shares,
//! with the texts of Nomad's CLI (`Prefix matched multiple allocations`, `No allocation(s)
//! with prefix or id "x" found`). Only `/v1/allocations` and Nomad's client API are used, so
//! these also work against a Nomad agent.

use std::io::Write;

use anyhow::bail;
use serde_json::Value;

use super::args::Tail;
use super::follow::{Source, last_lines};
use super::format::{ago, columns, key_values, short_id};
use super::http::{Api, query};

/// The allocations whose ID starts with `prefix`, in every namespace the token may read.
async fn stubs(api: &Api, prefix: &str) -> anyhow::Result<Vec<Value>> {
    let asked = query(&[("prefix", even_prefix(prefix)), ("namespace", "*")]);
    let list = api.json(&format!("/v1/allocations?{asked}")).await?;
    let all = list.as_array().cloned().unwrap_or_default();
    Ok(all.into_iter().filter(|s| s["ID"].as_str().is_some_and(|id| id.starts_with(prefix))).collect())
}

/// Nomad's servers take only an even number of hex digits as a UUID prefix (its CLI trims the
/// last one off); the answer is then narrowed to the prefix given.
fn even_prefix(prefix: &str) -> &str {
    let digits = prefix.chars().filter(|c| *c != '-').count();
    match prefix.char_indices().last() {
        Some((last, _)) if digits % 2 == 1 => &prefix[..last],
        _ => prefix,
    }
}

/// The one allocation `prefix` names, or Nomad's error listing the candidates.
pub async fn resolve(api: &Api, prefix: &str) -> anyhow::Result<Value> {
    if prefix.len() < 2 {
        bail!("Alloc ID must contain at least two characters.");
    }
    let mut matches = stubs(api, prefix).await?;
    match matches.len() {
        0 => bail!("No allocation(s) with prefix or id {prefix:?} found"),
        1 => Ok(matches.remove(0)),
        _ => bail!("Prefix matched multiple allocations\n\n{}", table(&matches, true).trim_end()),
    }
}

/// Nomad-like stub table.
fn table(stubs: &[Value], verbose: bool) -> String {
    let now = chrono::Utc::now();
    let mut rows =
        vec![["ID", "Node ID", "Namespace", "Tasks", "Status", "Created", "Modified"].map(String::from).to_vec()];
    for stub in stubs {
        let text = |key: &str| stub[key].as_str().unwrap_or_default().to_string();
        let tasks: Vec<&str> =
            stub["TaskStates"].as_object().map(|t| t.keys().map(String::as_str).collect()).unwrap_or_default();
        rows.push(vec![
            short_id(&text("ID"), verbose),
            short_id(&text("NodeID"), verbose),
            text("Namespace"),
            tasks.join(","),
            text("ClientStatus"),
            ago(stub["CreateTime"].as_i64().unwrap_or(0), now),
            ago(stub["ModifyTime"].as_i64().unwrap_or(0), now),
        ]);
    }
    columns(&rows)
}

/// `allocd alloc list`.
pub async fn list(api: &Api, json: bool, verbose: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let all = stubs(api, "").await?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
    } else if all.is_empty() {
        writeln!(out, "No allocations")?;
    } else {
        out.write_all(table(&all, verbose).as_bytes())?;
    }
    Ok(())
}

/// `allocd alloc status`.
pub async fn status(api: &Api, prefix: &str, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let stub = resolve(api, prefix).await?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&stub)?)?;
        return Ok(());
    }
    let now = chrono::Utc::now();
    let text = |key: &str| stub[key].as_str().unwrap_or_default().to_string();
    let time = |key: &str| ago(stub[key].as_i64().unwrap_or(0), now);
    let pairs = [
        ("ID", text("ID")),
        ("Namespace", text("Namespace")),
        ("Node ID", text("NodeID")),
        ("Client Status", text("ClientStatus")),
        ("Created", time("CreateTime")),
        ("Modified", time("ModifyTime")),
    ];
    out.write_all(key_values(&pairs).as_bytes())?;
    for (task, state) in stub["TaskStates"].as_object().into_iter().flatten() {
        writeln!(out, "\nTask {task:?} is {:?}", state["State"].as_str().unwrap_or_default())?;
        if state["State"] == "dead" {
            writeln!(out, "Finished At = {}", state["FinishedAt"].as_str().unwrap_or_default())?;
        }
    }
    Ok(())
}

/// The task to read: the one named, or the allocation's only task.
fn pick_task(stub: &Value, task: Option<String>) -> anyhow::Result<String> {
    let tasks: Vec<String> = stub["TaskStates"].as_object().map(|t| t.keys().cloned().collect()).unwrap_or_default();
    match (task, tasks.as_slice()) {
        (Some(task), _) => Ok(task),
        (None, [only]) => Ok(only.clone()),
        (None, _) => {
            let list: String = tasks.iter().map(|t| format!("\n  * {t}")).collect();
            bail!(
                "Allocation {:?} is running the following tasks:{list}\n\nPlease specify the task.",
                stub["ID"].as_str().unwrap_or_default()
            )
        }
    }
}

/// `allocd alloc logs`.
pub async fn logs(
    api: &Api,
    prefix: &str,
    task: Option<String>,
    stderr: bool,
    follow: bool,
    tail: Tail,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let stub = resolve(api, prefix).await?;
    let task = pick_task(&stub, task)?;
    let alloc = stub["ID"].as_str().unwrap_or_default().to_string();
    let source = Source::Logs { alloc, task, kind: if stderr { "stderr" } else { "stdout" } };
    read_or_follow(api, &source, follow, tail, out).await
}

/// Prints `source` whole or its tail, then follows it when asked. Shared by logs and fs.
pub async fn read_or_follow(
    api: &Api,
    source: &Source,
    follow: bool,
    tail: Tail,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let at = match tail {
        Tail::No => None,
        Tail::Bytes(bytes) => {
            let (data, at) = source.last_bytes(api, bytes).await?;
            out.write_all(&data)?;
            at
        }
        Tail::Lines(lines) => {
            // Nomad guesses 120 bytes a line; read further back until enough lines came.
            let mut back = (lines * 120).max(4096);
            loop {
                let (data, at) = source.last_bytes(api, back).await?;
                let enough = data.iter().filter(|b| **b == b'\n').count() as u64 > lines;
                if enough || (data.len() as u64) < back {
                    out.write_all(last_lines(&data, lines))?;
                    break at;
                }
                back *= 4;
            }
        }
    };
    out.flush()?;
    match (follow, tail) {
        (true, _) => source.follow(api, at, out).await,
        (false, Tail::No) => source.print(api, at, out).await,
        (false, _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_sent_have_even_digits() {
        assert_eq!(even_prefix("5fb"), "5f");
        assert_eq!(even_prefix("5fb1"), "5fb1");
        assert_eq!(even_prefix("5fb1a5c8-2"), "5fb1a5c8-");
        assert_eq!(even_prefix("5fb1a5c8-2c"), "5fb1a5c8-2c");
    }
}
