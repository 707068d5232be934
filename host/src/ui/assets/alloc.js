// One allocation: its tasks with their state, live CPU and memory per task and in total
// (from /v1/client/allocation/:id/stats every second), and links to its files and logs.

import { enc, every, getJson } from "./api.js";
import { Chart, autoMax } from "./chart.js";
import { bytes, el, percent, show, showError, statusBadge, time } from "./dom.js";

const MIB = 1024 * 1024;

/** The memory Nomad's UI shows for a task: RSS (cgroup v1), else the cgroup's usage. */
function memoryOf(usage) {
  const memory = usage?.MemoryStats || {};
  return memory.RSS || memory.Usage || 0;
}

export function allocationPage(main, id) {
  const errors = el("div");
  const statsErrors = el("div");
  const status = el("span");
  const tasksBox = el("div", { class: "tasks" });
  const totalCpu = new Chart("CPU (all tasks)", percent, autoMax(100));
  const totalMemory = new Chart("Memory (all tasks)", bytes, autoMax(MIB));
  const tasks = new Map();

  show(main,
    el("h1", {}, "Allocation ", el("span", { class: "mono" }, id), " ", status),
    el("p", {}, el("a", { href: `#/alloc/${id}/fs/` }, "Browse files"), " · ", el("a", { href: "#/allocations" }, "All allocations")),
    errors,
    statsErrors,
    el("h2", {}, "Total"),
    el("div", { class: "charts" }, totalCpu.element, totalMemory.element),
    el("h2", {}, "Tasks"),
    tasksBox);

  const taskCard = (name) => {
    let task = tasks.get(name);
    if (task) return task;
    task = {
      state: el("span"),
      memoryNow: el("span", { class: "mem-now", "data-task": name }, "—"),
      cpuNow: el("span", { class: "cpu-now" }, "—"),
      cpu: new Chart(`${name} CPU`, percent, autoMax(100)),
      memory: new Chart(`${name} memory`, bytes, autoMax(MIB)),
    };
    const logs = (type) => el("a", { href: `#/alloc/${id}/logs/${enc(name)}/${type}` }, type);
    tasksBox.append(el("section", { class: "task-card", "data-task": name },
      el("h3", {}, name, " ", task.state),
      el("p", {}, "Memory ", task.memoryNow, " · CPU ", task.cpuNow, " · ",
        el("a", { href: `#/alloc/${id}/fs/${enc(name)}` }, "files"), " · logs: ", logs("stdout"), " ", logs("stderr")),
      el("div", { class: "charts" }, task.cpu.element, task.memory.element)));
    tasks.set(name, task);
    return task;
  };

  const stopInfo = every(5000, async (signal) => {
    const alloc = await getJson(`/v1/allocation/${enc(id)}`, { signal });
    showError(errors, null);
    status.replaceChildren(statusBadge(alloc.ClientStatus));
    for (const [name, state] of Object.entries(alloc.TaskStates || {})) {
      const started = state.StartedAt && time(state.StartedAt) !== "—" ? ` since ${time(state.StartedAt)}` : "";
      taskCard(name).state.replaceChildren(statusBadge(state.State), started);
    }
  }, (error) => showError(errors, error));

  const stopStats = every(1000, async (signal) => {
    const stats = await getJson(`/v1/client/allocation/${enc(id)}/stats`, { signal });
    showError(statsErrors, null);
    const at = Date.now();
    totalCpu.push(at, { cpu: stats.ResourceUsage?.CpuStats?.Percent });
    totalMemory.push(at, { memory: memoryOf(stats.ResourceUsage) });
    for (const [name, taskStats] of Object.entries(stats.Tasks || {})) {
      const task = taskCard(name);
      const memory = memoryOf(taskStats.ResourceUsage);
      const cpu = taskStats.ResourceUsage?.CpuStats?.Percent || 0;
      task.cpu.push(at, { cpu });
      task.memory.push(at, { memory });
      task.memoryNow.textContent = bytes(memory);
      task.memoryNow.setAttribute("data-bytes", String(memory));
      task.cpuNow.textContent = percent(cpu);
    }
  }, (error) => showError(statsErrors, error));

  return () => {
    stopInfo();
    stopStats();
  };
}
