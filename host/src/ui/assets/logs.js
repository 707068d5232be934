// A task's stdout or stderr, followed live through fs/logs (Nomad's frames, follow=true; the
// agent follows rotation), starting from the last MAX_KEPT_CHARS bytes. Only the newest
// MAX_KEPT_CHARS are kept in the page, so a log growing by megabytes never freezes it; new text
// is drawn at most once per frame.
//
// Every frame names its file and the offset just past its data, so the page knows where it is.
// When the stream ends (the agent restarted, the network dropped, a fleet member was away) it
// reconnects with a growing pause and resumes at that position (for logs: the retained files
// before the current one, summed, plus the offset, as Nomad's origin=start counts), dropping
// whatever a frame repeats: no line is shown twice, and none is lost unless rotation deleted it
// meanwhile (the view then says so). A token that may read logs but not list files resumes from
// the last MAX_KEPT_CHARS instead. Following ends on an error before the first answer, on 400
// and 403, and once the allocation has been unknown for GONE_AFTER_MS (it was collected; a fleet
// member restarting is away for less); anything else is retried.

import { ApiError, enc, getJson, request } from "./api.js";
import { bytes, el, show, showError } from "./dom.js";

const MAX_KEPT_CHARS = 1024 * 1024;
const MAX_SEARCH_LINES = 2000;
const FIRST_RETRY_MS = 250;
const MAX_RETRY_MS = 4000;
const GONE_AFTER_MS = 30000;

/** Splits concatenated JSON frames, keeping a frame cut between chunks for the next one. */
function frameSplitter() {
  let pending = "";
  let depth = 0;
  let inString = false;
  let escaped = false;
  return (text) => {
    const frames = [];
    const from = pending.length;
    pending += text;
    let start = 0;
    for (let i = from; i < pending.length; i++) {
      const c = pending[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (c === "\\") escaped = true;
        else if (c === '"') inString = false;
      } else if (c === '"') inString = true;
      else if (c === "{") depth++;
      else if (c === "}" && --depth === 0) {
        frames.push(JSON.parse(pending.slice(start, i + 1)));
        start = i + 1;
      }
    }
    pending = pending.slice(start);
    return frames;
  };
}

/** A log file's rotation index (`web.stdout.3` → 3). */
const order = (file) => Number(file.slice(file.lastIndexOf(".") + 1)) || 0;

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

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

  const logsPath = (origin, offset) =>
    `/v1/client/fs/logs/${enc(id)}?task=${enc(task)}&type=${enc(type)}&follow=true&origin=${origin}&offset=${offset}`;
  let at = null; // { file, offset } just past the last byte shown
  let resumedAt = null; // where the stream was asked to resume, until its first data frame

  // The bytes of `frame` not shown yet, moving `at` past them.
  const accept = (frame) => {
    if (!frame.File) return null; // a heartbeat
    const data = Uint8Array.from(atob(frame.Data || ""), (c) => c.charCodeAt(0));
    const offset = frame.Offset || 0;
    const start = Math.max(0, offset - data.length);
    const truncated = frame.FileEvent === "file truncated";
    let skip = 0;
    if (at && !(truncated && at.file === frame.File)) {
      if (order(frame.File) < order(at.file)) return null;
      if (order(frame.File) === order(at.file)) skip = Math.max(0, at.offset - start);
    }
    if (resumedAt && data.length) {
      const sameFile = order(frame.File) === order(resumedAt.file);
      const skipped = resumedAt.gone || (sameFile ? start > resumedAt.offset : start > 0);
      if (!truncated && skipped) {
        receive("\n[… lines written while the view was reconnecting were rotated away …]\n");
      }
      resumedAt = null;
    }
    if (truncated || skip < data.length || !at) at = { file: frame.File, offset };
    return data.subarray(skip);
  };

  // Where to ask from after a reconnect.
  const resumePath = async (signal) => {
    resumedAt = null;
    if (!at) return logsPath("end", MAX_KEPT_CHARS);
    let listing;
    try {
      listing = await getJson(`/v1/client/fs/ls/${enc(id)}?path=alloc/logs`, { signal });
    } catch (error) {
      if (error instanceof ApiError && error.status === 403) return logsPath("end", MAX_KEPT_CHARS);
      throw error;
    }
    const prefix = `${task}.${type}.`;
    const files = (listing || [])
      .filter((entry) => entry.Name.startsWith(prefix) && /^\d+$/.test(entry.Name.slice(prefix.length)))
      .map((entry) => [order(entry.Name), entry.Size]);
    const current = order(at.file);
    const before = files.filter(([index]) => index < current).reduce((sum, [, size]) => sum + size, 0);
    const size = files.find(([index]) => index === current)?.[1];
    // Truncated meanwhile: all of it is new. Rotated away: resume at the next retained file,
    // saying that what was written to the deleted file after the last line shown is lost.
    if (size !== undefined && size < at.offset) at = { file: at.file, offset: 0 };
    resumedAt = { ...at, gone: size === undefined };
    return logsPath("start", before + (size === undefined ? 0 : at.offset));
  };

  const controller = new AbortController();
  const signal = controller.signal;
  (async () => {
    const text = new TextDecoder("utf-8");
    let retry = FIRST_RETRY_MS;
    let unknownSince = null; // when the allocation was first unknown in a row of attempts
    let connected = false; // a first failure is shown as it is, not retried
    for (;;) {
      try {
        const response = await request(await resumePath(signal), { signal });
        connected = true;
        retry = FIRST_RETRY_MS;
        updateState();
        const reader = response.body.getReader();
        const split = frameSplitter();
        const json = new TextDecoder("utf-8");
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const frame of split(json.decode(value, { stream: true }))) {
            const fresh = accept(frame);
            if (fresh && fresh.length) receive(text.decode(fresh, { stream: true }));
          }
        }
        unknownSince = null;
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && (!connected || error.status === 400 || error.status === 403)) throw error;
        const unknown = error instanceof ApiError && error.status === 404 && error.message.startsWith("Unknown allocation");
        unknownSince = unknown ? (unknownSince ?? Date.now()) : null;
        if (unknown && Date.now() - unknownSince > GONE_AFTER_MS) {
          draw();
          updateState("stopped: the allocation is gone");
          return;
        }
      }
      if (signal.aborted) return;
      draw();
      updateState("connection lost, reconnecting…");
      await sleep(retry, signal);
      retry = Math.min(retry * 2, MAX_RETRY_MS);
    }
  })().catch((error) => {
    if (signal.aborted) return;
    showError(errors, error);
    updateState("stopped");
  });

  return () => {
    controller.abort();
    cancelAnimationFrame(frame);
  };
}
