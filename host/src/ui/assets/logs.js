// A task's stdout or stderr, followed live through fs/logs (plain, follow=true; the agent
// follows rotation), starting from the last MAX_KEPT_CHARS bytes. Only the newest MAX_KEPT_CHARS are kept in the page, so a log growing by
// megabytes never freezes it; new text is drawn at most once per frame.

import { enc, request } from "./api.js";
import { bytes, el, show, showError } from "./dom.js";

const MAX_KEPT_CHARS = 1024 * 1024;
const MAX_SEARCH_LINES = 2000;

export function logsPage(main, id, task, type) {
  const errors = el("div");
  const state = el("span", { class: "muted", id: "log-state", "aria-live": "polite" }, "connecting…");
  const output = el("pre", { class: "log", id: "log-output", tabindex: "0", "aria-label": `${task} ${type}` });
  const scroller = el("div", { class: "log-scroll" }, output);
  const search = el("input", { type: "search", id: "log-search", placeholder: "Search loaded lines", "aria-label": "Search loaded lines", autocomplete: "off", spellcheck: "false" });
  const matches = el("pre", { class: "log matches", id: "log-matches", hidden: true });
  const pause = el("button", { type: "button", id: "log-pause", "aria-pressed": "false" }, "Pause");
  const jump = el("button", { type: "button", id: "log-end" }, "Jump to end");
  const tab = (kind) => el("a", { href: `#/alloc/${id}/logs/${enc(task)}/${kind}`, "aria-current": kind === type ? "page" : false }, kind);

  show(main,
    el("h1", {}, `Logs: ${task}`),
    el("nav", { class: "crumbs" }, el("a", { href: `#/alloc/${id}` }, id.slice(0, 8)), " / ", tab("stdout"), " ", tab("stderr")),
    errors,
    el("div", { class: "toolbar" }, pause, jump, search, state),
    matches,
    scroller);

  let kept = 0; // characters in `output`
  let pending = []; // text received but not drawn yet (while paused, or until the next frame)
  let pendingChars = 0;
  let received = 0;
  let paused = false;
  let follow = true; // stick to the end unless the reader scrolled up
  let frame = 0;

  const trim = () => {
    while (kept > MAX_KEPT_CHARS && output.firstChild) {
      const node = output.firstChild;
      const excess = kept - MAX_KEPT_CHARS;
      if (node.data.length <= excess) {
        kept -= node.data.length;
        node.remove();
      } else {
        node.deleteData(0, excess);
        kept -= excess;
      }
    }
  };

  const draw = () => {
    frame = 0;
    if (paused || pending.length === 0) return;
    let text = pending.join("");
    pending = [];
    pendingChars = 0;
    if (text.length > MAX_KEPT_CHARS) text = text.slice(text.length - MAX_KEPT_CHARS);
    output.append(text);
    kept += text.length;
    trim();
    if (search.value) runSearch();
    if (follow) scroller.scrollTop = scroller.scrollHeight;
    updateState();
  };

  const updateState = (ended) => {
    const waiting = paused && pendingChars ? `, ${bytes(pendingChars)} waiting` : "";
    const mode = ended || (paused ? "paused" : "following");
    state.textContent = `${mode} · ${bytes(received)} received, ${bytes(kept)} kept${waiting}`;
  };

  const receive = (text) => {
    received += text.length;
    pending.push(text);
    pendingChars += text.length;
    // While paused the waiting text is capped too: the oldest goes first.
    while (pendingChars > MAX_KEPT_CHARS && pending.length > 1) pendingChars -= pending.shift().length;
    if (paused) updateState();
    else if (!frame) frame = requestAnimationFrame(draw);
  };

  const runSearch = () => {
    const needle = search.value.toLowerCase();
    matches.hidden = !needle;
    if (!needle) return;
    const lines = output.textContent.split("\n").filter((line) => line.toLowerCase().includes(needle));
    const shown = lines.slice(-MAX_SEARCH_LINES);
    matches.textContent = `${lines.length} matching line${lines.length === 1 ? "" : "s"} in what is loaded` +
      (shown.length < lines.length ? ` (last ${shown.length} shown)` : "") + "\n" + shown.join("\n");
  };

  search.addEventListener("input", runSearch);
  scroller.addEventListener("scroll", () => {
    follow = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  });
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (!paused) draw();
    updateState();
  });
  jump.addEventListener("click", () => {
    follow = true;
    scroller.scrollTop = scroller.scrollHeight;
    output.focus({ preventScroll: true });
  });

  const controller = new AbortController();
  (async () => {
    const path = `/v1/client/fs/logs/${enc(id)}?task=${enc(task)}&type=${enc(type)}&follow=true&plain=true&origin=end&offset=${MAX_KEPT_CHARS}`;
    const response = await request(path, { signal: controller.signal });
    updateState();
    const reader = response.body.getReader();
    const decoder = new TextDecoder("utf-8");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      receive(decoder.decode(value, { stream: true }));
    }
    draw();
    updateState("stream ended (reload to follow again)");
  })().catch((error) => {
    if (controller.signal.aborted) return;
    showError(errors, error);
    updateState("stopped");
  });

  return () => {
    controller.abort();
    cancelAnimationFrame(frame);
  };
}
