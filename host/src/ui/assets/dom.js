// Building the page: elements from plain data (text always goes in as text, never as HTML),
// and the formats every page shares.

/** `el("a", { href: "#/x", class: "c" }, "text", child)`: attributes and children; strings become text nodes. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return node;
}

/** Replaces the page's content; focuses its heading so keyboard users start at the top. */
export function show(main, ...children) {
  main.replaceChildren(...children);
  const heading = main.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

/** An alert box for a failed request (or clears `box` when `error` is null). */
export function showError(box, error) {
  box.replaceChildren(...(error ? [el("p", { class: "error", role: "alert" }, error.message)] : []));
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function bytes(n) {
  let value = Number(n) || 0;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${UNITS[unit]}`;
}

export function percent(n) {
  return `${(Number(n) || 0).toFixed(1)} %`;
}

export function duration(seconds) {
  let s = Math.floor(Number(seconds) || 0);
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  if (parts.length < 2) parts.push(`${s}s`);
  return parts.join(" ");
}

/** A date (or Nomad's nanoseconds since the epoch) in the reader's locale; "—" when unknown. */
export function time(value) {
  const date = typeof value === "number" ? new Date(value / 1e6) : new Date(value);
  if (Number.isNaN(date.getTime()) || date.getFullYear() < 1970) return "—";
  return date.toLocaleString();
}

export function statusBadge(status) {
  return el("span", { class: `badge status-${String(status).replace(/[^a-z]/g, "")}` }, status);
}
