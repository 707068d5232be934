// The node page: host CPU per core, memory, disks and uptime from /v1/client/stats, sampled
// every second and drawn over the last five minutes.

import { every, getJson } from "./api.js";
import { Chart, autoMax } from "./chart.js";
import { bytes, duration, el, percent, show, showError } from "./dom.js";

const MAX_DISKS = 6;

export function nodePage(main) {
  const errors = el("div");
  const summary = el("dl", { class: "summary" });
  const cpuCharts = el("div", { class: "charts", id: "cpu-charts" });
  let memoryTotal = 0;
  const memory = new Chart("Memory used", bytes, () => memoryTotal);
  const disks = new Chart("Disk used", percent, 100);
  const uptime = new Chart("Uptime", duration, autoMax(60));
  const cores = new Map();

  show(main,
    el("h1", {}, "Node"),
    errors,
    summary,
    el("h2", {}, "CPU per core"),
    cpuCharts,
    el("h2", {}, "Memory, disks and uptime"),
    el("div", { class: "charts" }, memory.element, disks.element, uptime.element));

  return every(1000, async (signal) => {
    const stats = await getJson("/v1/client/stats", { signal });
    showError(errors, null);
    const at = Date.now();
    for (const cpu of stats.CPU || []) {
      let chart = cores.get(cpu.CPU);
      if (!chart) {
        chart = new Chart(`CPU ${cpu.CPU}`, percent, 100);
        cores.set(cpu.CPU, chart);
        cpuCharts.append(chart.element);
      }
      chart.push(at, { busy: cpu.Total });
    }
    const mem = stats.Memory || {};
    memoryTotal = mem.Total || 0;
    memory.push(at, { used: mem.Used });
    const diskValues = { "alloc dir": stats.AllocDirStats?.UsedPercent };
    for (const disk of (stats.DiskStats || []).slice(0, MAX_DISKS)) diskValues[disk.Mountpoint] = disk.UsedPercent;
    disks.push(at, diskValues);
    uptime.push(at, { up: stats.Uptime });
    summary.replaceChildren(
      fact("Uptime", duration(stats.Uptime)),
      fact("Cores", String((stats.CPU || []).length)),
      fact("Memory", `${bytes(mem.Used)} of ${bytes(mem.Total)}`),
      fact("Alloc dir disk", `${bytes(stats.AllocDirStats?.Used)} of ${bytes(stats.AllocDirStats?.Size)}`),
      fact("CPU ticks used", `${Math.round(stats.CPUTicksConsumed || 0)} MHz`));
  }, (error) => showError(errors, error));
}

function fact(name, value) {
  return el("div", {}, el("dt", {}, name), el("dd", {}, value));
}

