//! `allocd alloc stats` and `allocd node stats`: readable tables of Nomad's stats answers,
//! or the raw JSON with `-json`.

use std::io::Write;

use serde_json::Value;

use super::alloc::resolve;
use super::format::{columns, ibytes, key_values};
use super::http::Api;

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}

/// One `Task  CPU  Memory` row from a `ResourceUsage`.
fn usage_row(name: &str, usage: &Value) -> Vec<String> {
    let (cpu, memory) = (&usage["CpuStats"], &usage["MemoryStats"]);
    vec![
        name.to_string(),
        format!("{:.2}%", number(&cpu["Percent"])),
        format!("{:.0} MHz", number(&cpu["TotalTicks"])),
        ibytes(memory["RSS"].as_u64().unwrap_or(0)),
        ibytes(memory["Usage"].as_u64().unwrap_or(0)),
        ibytes(memory["MaxUsage"].as_u64().unwrap_or(0)),
    ]
}

/// `allocd alloc stats`.
pub async fn alloc(api: &Api, prefix: &str, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let stub = resolve(api, prefix).await?;
    let stats = api.json(&format!("/v1/client/allocation/{}/stats", stub["ID"].as_str().unwrap_or_default())).await?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&stats)?)?;
        return Ok(());
    }
    let mut rows = vec![["Task", "CPU", "CPU MHz", "RSS", "Memory", "Max Memory"].map(String::from).to_vec()];
    for (task, usage) in stats["Tasks"].as_object().into_iter().flatten() {
        rows.push(usage_row(task, &usage["ResourceUsage"]));
    }
    rows.push(usage_row("(total)", &stats["ResourceUsage"]));
    out.write_all(columns(&rows).as_bytes())?;
    Ok(())
}

/// `allocd node stats`.
pub async fn node(api: &Api, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let stats = api.json("/v1/client/stats").await?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&stats)?)?;
        return Ok(());
    }
    let memory = &stats["Memory"];
    let bytes = |v: &Value| ibytes(v.as_u64().unwrap_or(0));
    let pairs = [
        ("Uptime", format!("{}s", stats["Uptime"].as_u64().unwrap_or(0))),
        ("Memory Total", bytes(&memory["Total"])),
        ("Memory Used", bytes(&memory["Used"])),
        ("Memory Available", bytes(&memory["Available"])),
    ];
    out.write_all(key_values(&pairs).as_bytes())?;
    let mut cpus = vec![["CPU", "Total", "User", "System", "Idle"].map(String::from).to_vec()];
    for cpu in stats["CPU"].as_array().into_iter().flatten() {
        let percent = |key: &str| format!("{:.2}%", number(&cpu[key]));
        let name = cpu["CPU"].as_str().unwrap_or_default().to_string();
        cpus.push(vec![name, percent("TotalPercent"), percent("User"), percent("System"), percent("Idle")]);
    }
    writeln!(out, "\n{}", columns(&cpus).trim_end())?;
    let mut disks = vec![["Device", "Mountpoint", "Size", "Used", "Available", "Used %"].map(String::from).to_vec()];
    let alloc_dir = std::iter::once(&stats["AllocDirStats"]).filter(|d| d.is_object());
    for disk in stats["DiskStats"].as_array().into_iter().flatten().chain(alloc_dir) {
        let text = |key: &str| disk[key].as_str().filter(|t| !t.is_empty()).unwrap_or("(alloc dir)").to_string();
        let used = format!("{:.2}%", number(&disk["UsedPercent"]));
        disks.push(vec![
            text("Device"),
            text("Mountpoint"),
            bytes(&disk["Size"]),
            bytes(&disk["Used"]),
            bytes(&disk["Available"]),
            used,
        ]);
    }
    writeln!(out, "\n{}", columns(&disks).trim_end())?;
    Ok(())
}
