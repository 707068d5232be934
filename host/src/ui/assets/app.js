// The web view's entry point: the ACL token field and the router, which maps the URL's
// fragment (#/node, #/allocations, #/alloc/ID, #/alloc/ID/fs/PATH, #/alloc/ID/logs/TASK/TYPE)
// to a page and stops the previous page's timers and streams.

import { savedToken, saveToken } from "./api.js";
import { allocationPage } from "./alloc.js";
import { allocationsPage } from "./allocs.js";
import { el, show } from "./dom.js";
import { filesPage } from "./files.js";
import { logsPage } from "./logs.js";
import { nodePage } from "./node.js";

const main = document.getElementById("main");
let stopPage = () => {};

/** A URL part decoded, or as it is when it is not valid percent-encoding (a hand-typed URL). */
function decodeOr(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeOr);
  const [page, id, view, ...rest] = parts;
  if (page === "alloc" && id && view === "fs") return ["allocations", () => filesPage(main, id, rest.join("/"))];
  if (page === "alloc" && id && view === "logs" && rest[0]) {
    return ["allocations", () => logsPage(main, id, rest[0], rest[1] === "stderr" ? "stderr" : "stdout")];
  }
  if (page === "alloc" && id) return ["allocations", () => allocationPage(main, id)];
  if (page === "allocations") return ["allocations", () => allocationsPage(main)];
  if (page === "node" || page === "") return ["node", () => nodePage(main)];
  return ["", () => {
    show(main, el("h1", {}, "Not found"), el("p", {}, "No page here. ", el("a", { href: "#/node" }, "Go to the node page.")));
    return () => {};
  }];
}

function render() {
  stopPage();
  const [section, open] = route();
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  stopPage = open();
}

const tokenInput = document.getElementById("token");
const tokenState = document.getElementById("token-state");
const showTokenState = () => {
  tokenState.textContent = savedToken() ? "token saved" : "no token";
};
tokenInput.value = savedToken();
showTokenState();
const applyToken = (value) => {
  saveToken(value.trim());
  tokenInput.value = savedToken();
  showTokenState();
  render();
};
document.getElementById("token-save").addEventListener("click", () => applyToken(tokenInput.value));
document.getElementById("token-clear").addEventListener("click", () => applyToken(""));
tokenInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter") applyToken(tokenInput.value);
});

window.addEventListener("hashchange", render);
render();
