// The file browser: directories through fs/stat and fs/ls; a text file shown as text (never
// as HTML) through fs/cat, or page by page through fs/readat when large; a binary file offered
// for download.

import { enc, request, getJson } from "./api.js";
import { bytes, el, show, showError, time } from "./dom.js";

const PAGE_BYTES = 256 * 1024;
const SNIFF_BYTES = 8000;

export function filesPage(main, id, path) {
  const errors = el("div");
  const body = el("div");
  show(main, el("h1", {}, "Files"), breadcrumbs(id, path), errors, body);
  const controller = new AbortController();
  const { signal } = controller;
  (async () => {
    const info = await getJson(`/v1/client/fs/stat/${enc(id)}?path=${enc(path || "/")}`, { signal });
    if (info.IsDir) {
      const entries = await getJson(`/v1/client/fs/ls/${enc(id)}?path=${enc(path || "/")}`, { signal });
      body.replaceChildren(listing(id, path, entries || []));
    } else {
      await fileView(body, errors, id, path, info, signal);
    }
  })().catch((error) => signal.aborted || showError(errors, error));
  return () => controller.abort();
}

function join(dir, name) {
  return dir ? `${dir.replace(/\/$/, "")}/${name}` : name;
}

function fsLink(id, path) {
  return `#/alloc/${id}/fs/${path.split("/").map(enc).join("/")}`;
}

function breadcrumbs(id, path) {
  const parts = (path || "").split("/").filter(Boolean);
  const crumbs = [el("a", { href: `#/alloc/${id}` }, id.slice(0, 8)), " / ", el("a", { href: fsLink(id, "") }, "files")];
  parts.forEach((part, index) => {
    crumbs.push(" / ", el("a", { href: fsLink(id, parts.slice(0, index + 1).join("/")) }, part));
  });
  return el("nav", { class: "crumbs", "aria-label": "Path" }, ...crumbs);
}

function listing(id, path, entries) {
  const sorted = [...entries].sort((a, b) => (b.IsDir - a.IsDir) || a.Name.localeCompare(b.Name));
  const rows = sorted.map((entry) => el("tr", {},
    el("td", {}, el("a", { href: fsLink(id, join(path, entry.Name)), class: entry.IsDir ? "dir" : "file" },
      entry.IsDir ? `${entry.Name}/` : entry.Name)),
    el("td", { class: "num" }, entry.IsDir ? "—" : bytes(entry.Size)),
    el("td", { class: "mono" }, entry.FileMode),
    el("td", {}, time(entry.ModTime))));
  const parent = path ? [el("tr", {}, el("td", { colspan: "4" }, el("a", { href: fsLink(id, path.split("/").filter(Boolean).slice(0, -1).join("/")) }, "../")))] : [];
  return el("div", { class: "table-wrap" }, el("table", { id: "files" },
    el("thead", {}, el("tr", {}, ...["Name", "Size", "Mode", "Modified"].map((h) => el("th", { scope: "col", class: h === "Size" && "num" }, h)))),
    el("tbody", {}, ...parent, ...rows)));
}

/** Whether the first bytes look like text: no NUL byte, and valid UTF-8 up to a cut character. */
function looksLikeText(data) {
  const head = data.subarray(0, SNIFF_BYTES);
  if (head.includes(0)) return false;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(head, { stream: true });
    return true;
  } catch {
    return false;
  }
}

async function readPage(id, path, size, offset, signal) {
  const url = size <= PAGE_BYTES
    ? `/v1/client/fs/cat/${enc(id)}?path=${enc(path)}`
    : `/v1/client/fs/readat/${enc(id)}?path=${enc(path)}&offset=${offset}&limit=${PAGE_BYTES}`;
  return new Uint8Array(await (await request(url, { signal })).arrayBuffer());
}

async function fileView(body, errors, id, path, info, signal) {
  const content = el("pre", { class: "file-text", id: "file-text", tabindex: "0" });
  const position = el("span", { class: "muted" });
  const download = el("button", { type: "button", onclick: () => downloadFile(id, path, info.Name).catch((e) => showError(errors, e)) }, "Download");
  const pager = el("span", { class: "pager" });
  const header = el("p", { class: "toolbar" },
    el("strong", {}, info.Name), ` ${bytes(info.Size)} · ${info.FileMode} · modified ${time(info.ModTime)} · ${info.ContentType} `,
    download, pager, position);
  body.replaceChildren(header, content);

  const go = (offset) => () => load(offset).catch((error) => signal.aborted || showError(errors, error));
  const load = async (offset) => {
    const data = await readPage(id, path, info.Size, offset, signal);
    if (offset === 0 && !looksLikeText(data)) {
      content.replaceWith(el("p", { class: "notice", id: "binary-notice" }, "This is a binary file: download it to look inside."));
      pager.replaceChildren();
      return;
    }
    content.textContent = new TextDecoder("utf-8").decode(data);
    if (info.Size > PAGE_BYTES) {
      const last = Math.floor((info.Size - 1) / PAGE_BYTES) * PAGE_BYTES;
      position.textContent = ` bytes ${offset}–${offset + data.length} of ${info.Size}`;
      pager.replaceChildren(
        el("button", { type: "button", disabled: offset === 0, onclick: go(0) }, "First"),
        el("button", { type: "button", disabled: offset === 0, onclick: go(Math.max(0, offset - PAGE_BYTES)) }, "Previous"),
        el("button", { type: "button", disabled: offset >= last, onclick: go(offset + PAGE_BYTES) }, "Next"),
        el("button", { type: "button", disabled: offset >= last, onclick: go(last) }, "Last"));
    }
  };
  await load(0);
}

/** Saves the whole file through fs/cat (the token travels in a header, so no plain link). */
async function downloadFile(id, path, name) {
  const blob = await (await request(`/v1/client/fs/cat/${enc(id)}?path=${enc(path)}`)).blob();
  const url = URL.createObjectURL(new Blob([blob], { type: "application/octet-stream" }));
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
