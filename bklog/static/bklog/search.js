// BK LOG's search page: the JSON API with the person's session, every state in the URL.
"use strict";

const PAGE_SIZE = 50;
const FIELDS_AT_A_GLANCE = 3;
const TAIL_EVERY_MS = 3000;
const RANGES = { "15m": 900, "1h": 3600, "4h": 14400, "24h": 86400, "7d": 604800, "30d": 2592000 };
const $ = (id) => document.getElementById(id);
const config = JSON.parse($("page-config").textContent);
const csrfToken = document.querySelector('meta[name="csrf-token"]').content;

// What is searched: read from the URL, written back to it on every search (shareable links).
const state = { indexSet: "", q: "", range: "24h", start: "", end: "", fields: {}, tail: false };
let shown = new Set(); // ids of the lines on screen (tail adds only new ones)
let cursor = null;
let tailTimer = null;
let searches = 0; // searches answered (hits and histogram), in the body's data-searches: what tests wait on

function readUrl() {
  const p = new URLSearchParams(location.search);
  state.indexSet = p.get("index_set") || config.index_sets[0] || "";
  state.q = p.get("q") || "";
  state.start = p.get("start") || "";
  state.end = p.get("end") || "";
  state.range = state.start ? "custom" : (RANGES[p.get("range")] ? p.get("range") : "24h");
  state.fields = {};
  for (const [key, value] of p) if (key.startsWith("field.")) state.fields[key.slice(6)] = value;
  state.tail = p.get("tail") === "1";
}

function writeUrl() {
  const p = new URLSearchParams({ index_set: state.indexSet });
  if (state.q) p.set("q", state.q);
  if (state.range === "custom") { p.set("start", state.start); p.set("end", state.end); } else p.set("range", state.range);
  for (const [key, value] of Object.entries(state.fields)) p.set("field." + key, value);
  if (state.tail) p.set("tail", "1");
  history.replaceState(null, "", "/?" + p.toString());
}

// Times: the URL and the API in UTC (ISO 8601), the inputs in the browser's time zone.
function toLocalInput(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 19);
}
function fromLocalInput(value) {
  const d = new Date(value);
  return isNaN(d) ? "" : d.toISOString().replace(".000Z", "Z");
}

function timeRange() {
  if (state.range === "custom") return { start: state.start, end: state.end };
  const end = new Date();
  const start = new Date(end.getTime() - RANGES[state.range] * 1000);
  return { start: start.toISOString(), end: end.toISOString() };
}

function showForm() {
  $("index-set").value = state.indexSet;
  $("q").value = state.q;
  $("range").value = state.range;
  $("start").value = toLocalInput(state.start);
  $("end").value = toLocalInput(state.end);
  $("tail").checked = state.tail;
  document.body.classList.toggle("custom-range", state.range === "custom");
  const list = $("filters");
  list.replaceChildren();
  for (const [key, value] of Object.entries(state.fields)) {
    const item = document.createElement("li");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "filter";
    remove.textContent = `${key}: ${value} ✕`;
    remove.setAttribute("aria-label", `Remove filter ${key} = ${value}`);
    remove.addEventListener("click", () => { delete state.fields[key]; search(); });
    item.append(remove);
    list.append(item);
  }
}

function readForm() {
  state.indexSet = $("index-set").value;
  state.q = $("q").value.trim();
  state.range = $("range").value;
  if (state.range === "custom") {
    state.start = fromLocalInput($("start").value);
    state.end = fromLocalInput($("end").value);
  }
  state.tail = $("tail").checked;
}

function params(extra) {
  const { start, end } = timeRange();
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  if (start) p.set("start", start);
  if (end) p.set("end", end);
  for (const [key, value] of Object.entries(state.fields)) p.set("field." + key, value);
  for (const [key, value] of Object.entries(extra || {})) p.set(key, value);
  return p;
}

async function api(path, options) {
  const headers = { Accept: "application/json", "X-CSRFToken": csrfToken, ...(options && options.headers) };
  const response = await fetch(path, { ...options, credentials: "same-origin", headers });
  let body = {};
  try { body = await response.json(); } catch (e) { body = { error: `${response.status} ${response.statusText}` }; }
  if (response.status === 401) location.assign("/login/?next=" + encodeURIComponent(location.pathname + location.search));
  return { ok: response.ok, status: response.status, body };
}

function setPath(suffix) { return `/api/v1/index_sets/${encodeURIComponent(state.indexSet)}/${suffix}`; }

function showError(refusal) {
  const box = $("q-error");
  box.replaceChildren();
  if (!refusal) { box.hidden = true; $("q").removeAttribute("aria-invalid"); return; }
  box.hidden = false;
  const message = document.createElement("p");
  message.textContent = refusal.error;
  box.append(message);
  if (refusal.param === "q") {
    $("q").setAttribute("aria-invalid", "true");
    if (refusal.position) { // the query with a caret under the place it went wrong
      const at = Math.min(refusal.position - 1, state.q.length);
      const where = document.createElement("pre");
      where.className = "where";
      where.textContent = state.q + "\n" + " ".repeat(at) + "^";
      box.append(where);
    }
  }
}

// The query's words, for marking them in the lines (operators and punctuation left out).
function queryWords() {
  return (state.q.match(/[\p{L}\p{N}_]+/gu) || []).filter((w) => !["AND", "OR", "NOT"].includes(w)).map((w) => w.toLowerCase());
}

function marked(text, words) {
  const fragment = document.createDocumentFragment();
  if (!words.length) { fragment.append(text); return fragment; }
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const pattern = new RegExp(`(?<![\\p{L}\\p{N}_])(${escaped.join("|")})(?![\\p{L}\\p{N}_])`, "giu");
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    fragment.append(text.slice(last, match.index));
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    fragment.append(mark);
    last = match.index + match[0].length;
  }
  fragment.append(text.slice(last));
  return fragment;
}

function flatten(fields, prefix, out) {
  for (const [key, value] of Object.entries(fields || {})) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value)) flatten(value, name, out);
    else out.push([name, value]);
  }
  return out;
}

function fieldButton(name, value) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "field";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  button.textContent = `${name}: ${text}`;
  button.title = `Filter on ${name} = ${text}`;
  button.addEventListener("click", (event) => { event.stopPropagation(); state.fields[name] = text; search(); });
  return button;
}

function row(hit, words) {
  const tr = document.createElement("tr");
  tr.dataset.id = hit.id;
  const time = document.createElement("td");
  time.className = "time";
  const stamp = document.createElement("time");
  stamp.dateTime = hit.timestamp;
  stamp.textContent = new Date(hit.timestamp).toLocaleString();
  time.append(stamp);
  const message = document.createElement("td");
  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.className = "expand";
  toggle.setAttribute("aria-expanded", "false");
  toggle.append(marked(hit.message, words));
  const fields = flatten(hit.fields, "", []);
  const details = document.createElement("div");
  details.className = "fields";
  details.hidden = true;
  for (const [name, value] of fields) details.append(fieldButton(name, value));
  if (!fields.length) details.append("(no fields)");
  toggle.addEventListener("click", () => {
    details.hidden = !details.hidden;
    toggle.setAttribute("aria-expanded", String(!details.hidden));
  });
  // A few fields under the message at once (click one to filter on it); every one when expanded.
  const glance = document.createElement("div");
  glance.className = "glance";
  for (const [name, value] of fields.slice(0, FIELDS_AT_A_GLANCE)) glance.append(fieldButton(name, value));
  toggle.addEventListener("click", () => { glance.hidden = !details.hidden; });
  message.append(toggle, glance, details);
  tr.append(time, message);
  return tr;
}

function showHits(hits, { append = false, prepend = false } = {}) {
  const body = $("hits").tBodies[0];
  const words = queryWords();
  if (!append && !prepend) { body.replaceChildren(); shown = new Set(); }
  const rows = hits.filter((hit) => !shown.has(hit.id)).map((hit) => { shown.add(hit.id); return row(hit, words); });
  if (prepend) body.prepend(...rows); else body.append(...rows);
  return rows.length;
}

function showHistogram(result) {
  const svg = $("histogram");
  const width = svg.clientWidth || 800;
  const height = 90;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const buckets = result.buckets || [];
  const most = Math.max(1, ...buckets.map((b) => b.count));
  const step = width / Math.max(1, buckets.length);
  const ns = "http://www.w3.org/2000/svg";
  buckets.forEach((bucket, i) => {
    const bar = document.createElementNS(ns, "rect");
    const h = bucket.count ? Math.max(1, (bucket.count / most) * (height - 4)) : 0;
    bar.setAttribute("x", i * step + 0.5);
    bar.setAttribute("width", Math.max(1, step - 1));
    bar.setAttribute("y", height - h);
    bar.setAttribute("height", h);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${new Date(bucket.start).toLocaleString()}: ${bucket.count}`;
    bar.append(title);
    svg.append(bar);
  });
  svg.dataset.start = result.start || "";
  svg.dataset.end = result.end || "";
  const when = (iso) => new Date(iso).toLocaleString();
  $("histogram-caption").textContent = `${result.total ?? 0} matching lines from ${when(result.start)} to ${when(result.end)}, ` +
    `${buckets.length} bars of ${result.interval_seconds} s (drag across to zoom in)`;
}

// Drag across the histogram: the range under the drag becomes the search's.
function zoomable() {
  const svg = $("histogram");
  let from = null;
  let band = null;
  const x = (event) => Math.max(0, Math.min(svg.clientWidth, event.clientX - svg.getBoundingClientRect().left));
  svg.addEventListener("pointerdown", (event) => {
    from = x(event);
    band = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    band.setAttribute("class", "band");
    band.setAttribute("y", 0);
    band.setAttribute("height", 90);
    svg.append(band);
    svg.setPointerCapture(event.pointerId);
  });
  svg.addEventListener("pointermove", (event) => {
    if (from === null) return;
    const to = x(event);
    band.setAttribute("x", Math.min(from, to));
    band.setAttribute("width", Math.abs(to - from));
  });
  svg.addEventListener("pointerup", (event) => {
    if (from === null) return;
    const to = x(event);
    const [left, right] = [Math.min(from, to), Math.max(from, to)];
    from = null;
    band.remove();
    const start = Date.parse(svg.dataset.start);
    const end = Date.parse(svg.dataset.end);
    if (right - left < 3 || isNaN(start) || isNaN(end)) return;
    const at = (px) => new Date(start + ((end - start) * px) / svg.clientWidth).toISOString();
    state.range = "custom";
    state.start = at(left);
    state.end = at(right);
    search();
  });
}

async function search() {
  writeUrl();
  showForm();
  showError(null);
  $("summary").textContent = "Searching…";
  if (!state.indexSet) { $("summary").textContent = "No index set is granted to you: ask an administrator."; return; }
  // Both asked at once; the hits are shown as soon as they come, the histogram when it does.
  const histogramAnswer = api(setPath("histogram?" + params()));
  const hits = await api(setPath("search?" + params({ size: PAGE_SIZE })));
  if (!hits.ok) {
    showError(hits.body);
    $("summary").textContent = "";
    showHits([]);
    $("more").hidden = true;
  } else {
    showHits(hits.body.hits);
    // When the first results were on screen, for bench/page_bench.py (ms since navigation start).
    if (!performance.getEntriesByName("bklog-first-results").length) performance.mark("bklog-first-results");
    cursor = hits.body.next_cursor;
    $("more").hidden = !cursor;
    $("summary").textContent = `${hits.body.total}${hits.body.total_relation === "gte" ? "+" : ""} lines match`;
    scheduleTail();
  }
  const histogram = await histogramAnswer;
  if (histogram.ok) showHistogram(histogram.body);
  document.body.dataset.searches = String(++searches);
}

async function nextPage() {
  if (!cursor) return;
  const more = await api(setPath("search?" + params({ size: PAGE_SIZE, cursor })));
  if (!more.ok) { showError(more.body); return; }
  showHits(more.body.hits, { append: true });
  cursor = more.body.next_cursor;
  $("more").hidden = !cursor;
}

// Live tail: the newest lines every few seconds, added on top; paused while the reader has
// scrolled down to older lines (they would move under the reader's eyes).
function scheduleTail() {
  clearTimeout(tailTimer);
  if (state.tail && state.range !== "custom") tailTimer = setTimeout(tail, TAIL_EVERY_MS);
}

async function tail() {
  if (window.scrollY > 40) { $("summary").dataset.paused = "1"; scheduleTail(); return; }
  delete $("summary").dataset.paused;
  const newest = await api(setPath("search?" + params({ size: PAGE_SIZE })));
  if (newest.ok) showHits(newest.body.hits, { prepend: true });
  scheduleTail();
}

async function exportSearch() {
  const status = $("export-status");
  const { start, end } = timeRange();
  status.textContent = "Export queued…";
  const started = await api(setPath("exports"), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ q: state.q, start, end, fields: state.fields, format: "jsonl" }),
  });
  if (!started.ok) { status.textContent = `Export refused: ${started.body.error}`; return; }
  let job = started.body;
  while (job.status === "pending" || job.status === "running") {
    status.textContent = `Export ${job.status}: ${job.lines || 0} lines so far…`;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const polled = await api(`/api/v1/exports/${job.id}`);
    if (!polled.ok) { status.textContent = `Export: ${polled.body.error}`; return; }
    job = polled.body;
  }
  status.replaceChildren();
  if (job.status !== "done") { status.textContent = `Export ${job.status}: ${job.error || ""}`; return; }
  const link = document.createElement("a");
  link.href = job.download_url;
  link.id = "export-download";
  link.textContent = `Download ${job.lines} lines (${job.format})`;
  status.append("Export done: ", link);
}

document.addEventListener("DOMContentLoaded", () => {
  readUrl();
  showForm();
  zoomable();
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); readForm(); search(); });
  $("range").addEventListener("change", () => {
    document.body.classList.toggle("custom-range", $("range").value === "custom");
    if ($("range").value !== "custom") { readForm(); search(); }
  });
  $("index-set").addEventListener("change", () => { readForm(); state.fields = {}; search(); });
  $("tail").addEventListener("change", () => { readForm(); writeUrl(); scheduleTail(); });
  $("more").addEventListener("click", nextPage);
  $("export").addEventListener("click", exportSearch);
  // "/" focuses the query box, as in most search pages (not while typing elsewhere).
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (event.key === "/" && !typing) { event.preventDefault(); $("q").focus(); }
  });
  search();
});
