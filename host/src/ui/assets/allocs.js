// The allocations page: /v1/allocations (every namespace the token may read), refreshed every
// few seconds, filtered as the operator types.

import { every, getJson } from "./api.js";
import { el, show, showError, statusBadge, time } from "./dom.js";

const REFRESH_MS = 3000;

export function allocationsPage(main) {
  const errors = el("div");
  const filter = el("input", {
    id: "alloc-filter", type: "search", placeholder: "Filter by ID, namespace, status, task (press /)",
    "aria-label": "Filter allocations", autocomplete: "off", spellcheck: "false",
  });
  const count = el("p", { class: "muted", "aria-live": "polite" });
  const rows = el("tbody");
  let allocations = [];

  const render = () => {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = allocations.filter((alloc) => words.every((word) => searchText(alloc).includes(word)));
    rows.replaceChildren(...shown.map(row));
    count.textContent = `${shown.length} of ${allocations.length} allocations`;
  };
  filter.addEventListener("input", render);

  show(main,
    el("h1", {}, "Allocations"),
    errors,
    el("div", { class: "toolbar" }, filter, count),
    el("div", { class: "table-wrap" }, el("table", { id: "allocations" },
      el("thead", {}, el("tr", {}, ...["ID", "Namespace", "Status", "Tasks", "Created", "Modified"].map((h) => el("th", { scope: "col" }, h)))),
      rows)));

  const onSlash = (event) => {
    if (event.key === "/" && document.activeElement !== filter && !(event.target instanceof HTMLInputElement)) {
      event.preventDefault();
      filter.focus();
    }
  };
  document.addEventListener("keydown", onSlash);

  const stop = every(REFRESH_MS, async (signal) => {
    allocations = await getJson("/v1/allocations?namespace=*", { signal });
    showError(errors, null);
    render();
  }, (error) => showError(errors, error));
  return () => {
    stop();
    document.removeEventListener("keydown", onSlash);
  };
}

function taskStates(alloc) {
  return Object.entries(alloc.TaskStates || {});
}

function searchText(alloc) {
  const tasks = taskStates(alloc).map(([name, state]) => `${name} ${state.State}`).join(" ");
  return `${alloc.ID} ${alloc.Namespace} ${alloc.ClientStatus} ${tasks}`.toLowerCase();
}

function row(alloc) {
  return el("tr", { "data-alloc": alloc.ID },
    el("td", {}, el("a", { href: `#/alloc/${alloc.ID}`, title: alloc.ID, class: "mono" }, alloc.ID.slice(0, 8))),
    el("td", {}, alloc.Namespace),
    el("td", {}, statusBadge(alloc.ClientStatus)),
    el("td", {}, ...taskStates(alloc).map(([name, state]) => el("span", { class: "task" }, `${name}: ${state.State}`))),
    el("td", {}, time(alloc.CreateTime)),
    el("td", {}, time(alloc.ModifyTime)));
}
