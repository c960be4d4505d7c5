// `tsvmm trace FILE --html OUT.html`: one self-contained page (no network, no external script):
// a timeline with a lane per vCPU, a page-state map over time (both on canvases, zoom and pan),
// the summary and the refused requests. The data is embedded column by column so a trace of
// 100 000 events stays a few MB and draws in well under a second.
import { Outcome, PRIVATE, Trace, TraceEvent } from "./reader";
import { formatReport, vcpuName } from "./report";

/** Mark classes: colour by direction, lighter for implicit (fault) conversions */
export const MARK_CLASSES = [
  { id: "to-private", label: "to private (hypercall, doorbell, API)", colour: "#c2255c" },
  { id: "to-shared", label: "to shared (hypercall, doorbell, API)", colour: "#1971c2" },
  { id: "fault-to-private", label: "memory fault → private", colour: "#f783ac" },
  { id: "fault-to-shared", label: "memory fault → shared", colour: "#4dabf7" },
  { id: "refused", label: "refused or denied", colour: "#343a40" },
  { id: "stopped", label: "fault that stopped a vCPU or the VM", colour: "#e03131" },
  { id: "race", label: "race or test-slot repair (re-run)", colour: "#f08c00" },
  { id: "other", label: "halt, host request", colour: "#adb5bd" },
  { id: "kernel", label: "KVM trace event (--kernel-events)", colour: "#0ca678" },
] as const;

/** Page-state map colours */
export const STATE_COLOURS = { private: "#c2255c", shared: "#d0ebff", unknown: "#ced4da" } as const;

export function markClass(e: TraceEvent): number {
  const idx = (id: string) => MARK_CLASSES.findIndex((c) => c.id === id);
  const byOutcome: Partial<Record<Outcome, string>> = { refused: "refused", denied: "refused", stopped: "stopped", race: "race", repaired: "race" };
  if (byOutcome[e.outcome]) return idx(byOutcome[e.outcome]!);
  if (e.kind === "kernel") return idx("kernel");
  if (e.kind === "conversion" && (e.to === "private" || e.to === "shared")) return idx(`${e.source === "fault" ? "fault-" : ""}to-${e.to}`);
  return idx("other");
}

export interface PageData {
  name: string;
  title: string;
  facts: string;
  pages: number;
  pageSize: number;
  /** run-length states at start: [state, count, state, count, ...] (0 shared, 1 private, 2 unknown) */
  initial: number[];
  lanes: Array<{ vcpu: number; name: string }>;
  classes: typeof MARK_CLASSES;
  stateColours: typeof STATE_COLOURS;
  /** events, column by column: end time (µs), duration (µs), lane, class, seq, gpa, size, label and result (string table indexes) */
  t: number[];
  d: number[];
  l: number[];
  c: number[];
  q: number[];
  g: number[];
  z: number[];
  k: number[];
  r: number[];
  strings: string[];
  /** page changes: [event index, first page, count, state, ...] */
  changes: number[];
  /** end of the run (µs) */
  endTime: number;
  summary: string;
  refused: string[];
  refusedTotal: number;
}

const MAX_REFUSED_ROWS = 1000;

export function pageData(trace: Trace): PageData {
  const { facts } = trace;
  const strings: string[] = [];
  const index = new Map<string, number>();
  const str = (s: string) => {
    let i = index.get(s);
    if (i === undefined) {
      i = strings.length;
      strings.push(s);
      index.set(s, i);
    }
    return i;
  };
  const vcpus = new Set<number>(Array.from({ length: facts.cpus }, (_, i) => i));
  for (const e of trace.events) vcpus.add(e.vcpu);
  // vCPUs in order, then the VMM's own lane, then KVM events no vCPU claims
  const order = (v: number) => (v >= 0 ? v : 1e6 - v);
  const lanes = [...vcpus].sort((a, b) => order(a) - order(b)).map((v) => ({ vcpu: v, name: vcpuName(v) }));
  const laneOf = new Map(lanes.map((l, i) => [l.vcpu, i]));
  const events = [...trace.events].sort((a, b) => a.time - b.time || a.seq - b.seq);
  const d: PageData = {
    name: trace.name,
    title: `tsvmm trace: ${facts.guest ?? trace.name}`,
    facts: "",
    pages: trace.initial.length,
    pageSize: facts.pageSize,
    initial: [],
    lanes,
    classes: MARK_CLASSES,
    stateColours: STATE_COLOURS,
    t: [],
    d: [],
    l: [],
    c: [],
    q: [],
    g: [],
    z: [],
    k: [],
    r: [],
    strings,
    changes: [],
    endTime: Math.round((trace.end?.time ?? events[events.length - 1]?.time ?? 0) * 1000),
    summary: "",
    refused: [],
    refusedTotal: 0,
  };
  for (let p = 0; p < trace.initial.length; ) {
    let q = p;
    while (q < trace.initial.length && trace.initial[q] === trace.initial[p]) q++;
    d.initial.push(trace.initial[p], q - p);
    p = q;
  }
  events.forEach((e, i) => {
    d.t.push(Math.round(e.time * 1000));
    d.d.push(Math.round((e.ns ?? 0) / 100) / 10);
    d.l.push(laneOf.get(e.vcpu)!);
    d.c.push(markClass(e));
    d.q.push(e.seq);
    d.g.push(e.gpa ?? -1);
    d.z.push(e.size ?? 0);
    const label = e.kind === "conversion" ? `${e.source} ${e.from}→${e.to}` : e.kind === "kernel" ? `KVM ${e.event}` : e.kind;
    d.k.push(str(label));
    d.r.push(str(e.result ?? e.what ?? ""));
    for (const run of e.after ?? []) d.changes.push(i, run.first, run.count, run.state === "private" ? PRIVATE : 0);
  });
  const report = formatReport(trace, { limit: 1 });
  d.facts = report.split("\n").slice(0, 4).join("\n");
  d.summary = report.slice(report.indexOf("\nCounts"), report.indexOf("\nRefused")).trim();
  const refused = report.slice(report.indexOf("\nRefused"), report.indexOf("\nPage states")).trim().split("\n");
  d.refusedTotal = refused.length - 1;
  d.refused = refused.slice(1, 1 + MAX_REFUSED_ROWS).map((l) => l.trim());
  return d;
}

/** JSON safe inside <script>: no "</script>" or "<!--" can appear */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

const escapeHtml = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

export function toHtml(trace: Trace): string {
  const data = pageData(trace);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>${escapeHtml(data.title)}</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>${escapeHtml(data.title)}</h1><pre id="facts"></pre></header>
<section>
<h2>Timeline <small>wheel: zoom time · drag: pan · double-click: reset</small></h2>
<div id="legend"></div>
<div class="chart"><div id="lanes"></div><canvas id="timeline" height="10"></canvas></div>
<h2>Page states over time <small>x: time, y: guest pages (first shown: the pages that changed) · shift+wheel: zoom pages · drag: pan</small></h2>
<div id="state-legend"></div>
<div class="chart"><div id="axis"></div><canvas id="map" height="360"></canvas></div>
<div id="view"></div>
</section>
<div id="tip" hidden></div>
<section><h2>Summary</h2><pre id="summary"></pre></section>
<section><h2>Refused, denied and stopped (<span id="refused-count"></span>)</h2><pre id="refused"></pre></section>
<script id="trace-data" type="application/json">${scriptJson(data)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

const STYLE = `
body { font: 13px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #212529; background: #fff; }
h1 { font-size: 18px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 18px 0 6px; } small { color: #868e96; font-weight: normal; }
pre { font: 12px/1.35 ui-monospace, monospace; background: #f8f9fa; padding: 8px; overflow: auto; max-height: 360px; margin: 0; }
.chart { display: flex; align-items: flex-start; }
#lanes, #axis { width: 150px; flex: none; font: 12px ui-monospace, monospace; }
#lanes div { height: 28px; line-height: 28px; white-space: nowrap; overflow: hidden; }
canvas { flex: 1; min-width: 0; border: 1px solid #dee2e6; cursor: crosshair; display: block; }
#legend span, #state-legend span { display: inline-block; margin: 0 14px 4px 0; }
#legend i, #state-legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -2px; }
#tip { position: fixed; pointer-events: none; background: #212529; color: #fff; padding: 6px 8px; border-radius: 4px;
  font: 12px/1.35 ui-monospace, monospace; white-space: pre; z-index: 10; max-width: 720px; }
#view { color: #495057; margin-top: 4px; font: 12px ui-monospace, monospace; }
`;

// The page's script: plain JS, no dependencies. window.tsvmmView exposes what was drawn.
const SCRIPT = `
"use strict";
(function () {
  var D = JSON.parse(document.getElementById("trace-data").textContent);
  var N = D.t.length, LANE_H = 28, TIME_AXIS = 18;
  var $ = function (id) { return document.getElementById(id); };
  $("facts").textContent = D.facts;
  $("summary").textContent = D.summary;
  $("refused-count").textContent = String(D.refusedTotal);
  $("refused").textContent = D.refused.join("\\n") + (D.refusedTotal > D.refused.length ? "\\n... " + (D.refusedTotal - D.refused.length) + " more (tsvmm trace FILE lists them all)" : "") || "none";

  var perLane = D.lanes.map(function () { return []; });
  var perClass = D.classes.map(function () { return 0; });
  for (var i = 0; i < N; i++) { perLane[D.l[i]].push(i); perClass[D.c[i]]++; }
  $("legend").innerHTML = D.classes.map(function (c, i) {
    return '<span><i style="background:' + c.colour + '"></i>' + c.label + " (" + perClass[i] + ")</span>";
  }).join("");
  $("state-legend").innerHTML = ["private", "shared", "unknown"].map(function (s) {
    return '<span><i style="background:' + D.stateColours[s] + '"></i>' + s + "</span>";
  }).join("");
  $("lanes").innerHTML = D.lanes.map(function (l, i) {
    return '<div data-vcpu="' + l.vcpu + '" data-events="' + perLane[i].length + '">' + l.name + " (" + perLane[i].length + ")</div>";
  }).join("") + '<div style="height:' + TIME_AXIS + 'px"></div>';

  var initial = new Uint8Array(D.pages);
  for (var j = 0, p = 0; j < D.initial.length; j += 2) { initial.fill(D.initial[j], p, p + D.initial[j + 1]); p += D.initial[j + 1]; }
  var full = { t0: 0, t1: Math.max(D.endTime, N ? D.t[N - 1] : 0, 1) * 1.01, p0: 0, p1: D.pages };
  // Start on the pages that changed (shift+wheel zooms out to all RAM)
  var lo = Infinity, hi = -Infinity;
  for (var k = 0; k < D.changes.length; k += 4) { lo = Math.min(lo, D.changes[k + 1]); hi = Math.max(hi, D.changes[k + 1] + D.changes[k + 2]); }
  if (hi > lo && hi - lo < D.pages / 2) {
    var pad = Math.max(8, Math.ceil((hi - lo) * 0.05));
    full.p0 = Math.max(0, lo - pad); full.p1 = Math.min(D.pages, hi + pad);
  }
  var view = Object.assign({}, full);
  var rgb = function (hex) { return [1, 3, 5].map(function (k) { return parseInt(hex.substr(k, 2), 16); }); };
  var COL = [rgb(D.stateColours.shared), rgb(D.stateColours.private), rgb(D.stateColours.unknown)];
  var tl = $("timeline"), map = $("map");
  var state = { marks: [], mapMs: 0, timelineMs: 0, renders: 0 };

  function firstAtOrAfter(idx, t) { // binary search in a lane's event indexes by end time
    var lo = 0, hi = idx.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (D.t[idx[mid]] < t) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function fit(c, h) {
    var w = Math.max(200, Math.floor(c.getBoundingClientRect().width));
    if (c.width !== w) c.width = w;
    if (h && c.height !== h) c.height = h;
  }
  function xOf(t, w) { return (t - view.t0) / (view.t1 - view.t0) * w; }
  function fmtTime(us) { return us >= 1000 ? (us / 1000).toFixed(3) + " ms" : us.toFixed(1) + " µs"; }
  function hex(n) { return "0x" + n.toString(16); }

  function drawTimeAxis(ctx, w, y) {
    ctx.fillStyle = "#495057"; ctx.font = "11px monospace"; ctx.textBaseline = "top";
    var span = view.t1 - view.t0, step = Math.pow(10, Math.floor(Math.log10(span / 6)));
    if (span / step > 12) step *= 5; else if (span / step > 6) step *= 2;
    for (var t = Math.ceil(view.t0 / step) * step; t <= view.t1; t += step) {
      var x = Math.round(xOf(t, w)) + 0.5;
      ctx.fillRect(x, y, 1, 4); ctx.fillText(fmtTime(t), x + 2, y + 4);
    }
  }

  function drawTimeline() {
    var start = performance.now();
    fit(tl, D.lanes.length * LANE_H + TIME_AXIS);
    var ctx = tl.getContext("2d"), w = tl.width;
    ctx.clearRect(0, 0, w, tl.height);
    var marks = D.lanes.map(function () { return 0; });
    for (var lane = 0; lane < D.lanes.length; lane++) {
      var y = lane * LANE_H;
      ctx.fillStyle = lane % 2 ? "#f8f9fa" : "#fff"; ctx.fillRect(0, y, w, LANE_H);
      var idx = perLane[lane];
      var paths = D.classes.map(function () { return new Path2D(); });
      for (var n = firstAtOrAfter(idx, view.t0); n < idx.length; n++) {
        var e = idx[n];
        var endT = D.t[e];
        var startT = endT - D.d[e];
        if (startT > view.t1) break;
        var x1 = xOf(endT, w), x0 = Math.min(xOf(startT, w), x1 - 1);
        // explicit requests fill the lane's upper part, memory faults and others its lower part
        var low = D.classes[D.c[e]].id.indexOf("fault") === 0 || D.c[e] >= 5;
        paths[D.c[e]].rect(x0, y + (low ? 14 : 3), Math.max(1, x1 - x0), 11);
        marks[lane]++;
      }
      for (var c = 0; c < paths.length; c++) { ctx.fillStyle = D.classes[c].colour; ctx.fill(paths[c]); }
    }
    drawTimeAxis(ctx, w, D.lanes.length * LANE_H);
    state.marks = marks;
    state.timelineMs = performance.now() - start;
    D.lanes.forEach(function (l, i) { $("lanes").children[i].dataset.marks = String(marks[i]); });
  }

  // The map: replay page changes in time order, one pixel column per time step.
  function drawMap() {
    var start = performance.now();
    fit(map, 360);
    var ctx = map.getContext("2d"), w = map.width, h = map.height;
    var img = ctx.createImageData(w, h), px = img.data;
    var p0 = Math.floor(view.p0), p1 = Math.ceil(view.p1), span = p1 - p0;
    var B = Math.min(h, span);
    var bucketOf = function (pg) { return Math.floor((pg - p0) * B / span); };
    var cnt = [new Int32Array(B), new Int32Array(B), new Int32Array(B)], size = new Int32Array(B);
    var st = initial.slice();
    var ch = D.changes, ci = 0;
    function apply(limitUs, track) {
      while (ci < ch.length && D.t[ch[ci]] <= limitUs) {
        var want = ch[ci + 3], end = Math.min(D.pages, ch[ci + 1] + ch[ci + 2]);
        for (var pg = ch[ci + 1]; pg < end; pg++) {
          var was = st[pg];
          if (was === want) continue;
          st[pg] = want;
          if (track && pg >= p0 && pg < p1) { var b = bucketOf(pg); cnt[was][b]--; cnt[want][b]++; }
        }
        ci += 4;
      }
    }
    apply(view.t0, false);
    for (var pg = p0; pg < p1; pg++) { var b = bucketOf(pg); cnt[st[pg]][b]++; size[b]++; }
    var rowBucket = new Int32Array(h);
    for (var y = 0; y < h; y++) rowBucket[y] = Math.min(B - 1, Math.floor(y * B / h));
    for (var x = 0; x < w; x++) {
      apply(view.t0 + (x + 1) * (view.t1 - view.t0) / w, true);
      for (var y2 = 0; y2 < h; y2++) {
        var bk = rowBucket[y2], s = size[bk] || 1, o = (y2 * w + x) * 4;
        var fp = cnt[1][bk] / s, fu = cnt[2][bk] / s, fs = 1 - fp - fu;
        px[o] = COL[0][0] * fs + COL[1][0] * fp + COL[2][0] * fu;
        px[o + 1] = COL[0][1] * fs + COL[1][1] * fp + COL[2][1] * fu;
        px[o + 2] = COL[0][2] * fs + COL[1][2] * fp + COL[2][2] * fu;
        px[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    ctx.fillStyle = "rgba(33,37,41,0.55)";
    var endX = xOf(D.endTime, w);
    if (endX < w) ctx.fillRect(Math.max(0, endX), 0, 1, h);
    state.mapMs = performance.now() - start;
    var axis = $("axis"), rows = 8, html = "";
    for (var r = 0; r <= rows; r++) {
      var page = Math.round(view.p0 + (view.p1 - view.p0) * r / rows);
      html += '<div style="position:absolute;top:' + Math.min(h - 14, Math.round(r * h / rows)) + 'px">' + hex(page * D.pageSize) + "</div>";
    }
    axis.style.position = "relative"; axis.style.height = h + "px"; axis.innerHTML = html;
  }

  function render() {
    drawTimeline();
    drawMap();
    state.renders++;
    $("view").textContent = "showing " + fmtTime(view.t0) + " – " + fmtTime(view.t1) + ", pages " + hex(Math.floor(view.p0) * D.pageSize) + " – " +
      hex(Math.ceil(view.p1) * D.pageSize) + " · timeline " + state.timelineMs.toFixed(1) + " ms, map " + state.mapMs.toFixed(1) + " ms";
  }
  var pending = false;
  function schedule() { if (!pending) { pending = true; requestAnimationFrame(function () { pending = false; render(); }); } }

  function zoomTime(factor, at) {
    var t = view.t0 + (view.t1 - view.t0) * at;
    var span = Math.min(full.t1 - full.t0, Math.max(0.5, (view.t1 - view.t0) * factor));
    view.t0 = Math.max(full.t0, t - span * at); view.t1 = Math.min(full.t1, view.t0 + span); view.t0 = view.t1 - span;
  }
  function zoomPages(factor, at) {
    var p = view.p0 + (view.p1 - view.p0) * at;
    var span = Math.min(D.pages, Math.max(1, (view.p1 - view.p0) * factor));
    view.p0 = Math.max(0, p - span * at); view.p1 = Math.min(D.pages, view.p0 + span); view.p0 = view.p1 - span;
  }
  [tl, map].forEach(function (c) {
    c.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var r = c.getBoundingClientRect(), f = ev.deltaY > 0 ? 1.25 : 0.8;
      if (ev.shiftKey && c === map) zoomPages(f, (ev.clientY - r.top) / r.height);
      else zoomTime(f, (ev.clientX - r.left) / r.width);
      schedule();
    }, { passive: false });
    c.addEventListener("dblclick", function () { view = Object.assign({}, full); schedule(); });
    var drag = null;
    c.addEventListener("mousedown", function (ev) { drag = { x: ev.clientX, y: ev.clientY, v: Object.assign({}, view) }; });
    window.addEventListener("mouseup", function () { drag = null; });
    window.addEventListener("mousemove", function (ev) {
      if (!drag) return;
      var r = c.getBoundingClientRect();
      var dt = (ev.clientX - drag.x) / r.width * (drag.v.t1 - drag.v.t0);
      var t0 = Math.min(Math.max(full.t0, drag.v.t0 - dt), full.t1 - (drag.v.t1 - drag.v.t0));
      view.t1 = t0 + (drag.v.t1 - drag.v.t0); view.t0 = t0;
      if (c === map) {
        var dp = (ev.clientY - drag.y) / r.height * (drag.v.p1 - drag.v.p0);
        var p0 = Math.min(Math.max(0, drag.v.p0 - dp), D.pages - (drag.v.p1 - drag.v.p0));
        view.p1 = p0 + (drag.v.p1 - drag.v.p0); view.p0 = p0;
      }
      schedule();
    });
  });

  var tip = $("tip");
  function showTip(ev, text) {
    if (!text) { tip.hidden = true; return; }
    tip.textContent = text; tip.hidden = false;
    tip.style.left = Math.min(window.innerWidth - 380, ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 14) + "px";
  }
  function describe(e) {
    var g = D.g[e] >= 0 ? " " + hex(D.g[e]) + "+" + hex(D.z[e]) + " (" + (D.z[e] / 1024) + " KiB)" : "";
    return "#" + D.q[e] + " " + D.lanes[D.l[e]].name + " at " + fmtTime(D.t[e]) + "\\n" + D.strings[D.k[e]] + g +
      "\\nresult: " + (D.strings[D.r[e]] || "-") + "\\nduration: " + D.d[e].toFixed(1) + " µs";
  }
  tl.addEventListener("mousemove", function (ev) {
    var r = tl.getBoundingClientRect(), lane = Math.floor((ev.clientY - r.top) / LANE_H);
    if (lane < 0 || lane >= D.lanes.length) return showTip(ev, "");
    var w = tl.width, x = (ev.clientX - r.left) * w / r.width, idx = perLane[lane];
    var t = view.t0 + x / w * (view.t1 - view.t0), slack = 4 / w * (view.t1 - view.t0);
    var best = -1, bestD = Infinity;
    for (var n = firstAtOrAfter(idx, t - slack); n < idx.length; n++) {
      var e = idx[n];
      if (D.t[e] - D.d[e] > t + slack) break;
      var dist = t < D.t[e] - D.d[e] ? D.t[e] - D.d[e] - t : t > D.t[e] ? t - D.t[e] : 0;
      if (dist < bestD) { bestD = dist; best = e; }
    }
    showTip(ev, best < 0 ? "" : describe(best));
  });
  tl.addEventListener("mouseleave", function (ev) { showTip(ev, ""); });
  map.addEventListener("mousemove", function (ev) {
    var r = map.getBoundingClientRect();
    var t = view.t0 + (ev.clientX - r.left) / r.width * (view.t1 - view.t0);
    var pg = Math.floor(view.p0 + (ev.clientY - r.top) / r.height * (view.p1 - view.p0));
    showTip(ev, "page " + hex(pg * D.pageSize) + " at " + fmtTime(t) + ": " + ["shared", "private", "unknown"][stateAt(pg, t)]);
  });
  map.addEventListener("mouseleave", function (ev) { showTip(ev, ""); });
  function stateAt(pg, t) {
    var s = initial[pg];
    for (var ci = 0; ci < D.changes.length && D.t[D.changes[ci]] <= t; ci += 4)
      if (pg >= D.changes[ci + 1] && pg < D.changes[ci + 1] + D.changes[ci + 2]) s = D.changes[ci + 3];
    return s;
  }
  window.addEventListener("resize", schedule);

  // For tests and the curious: what was drawn, and where a page and an instant are on the map.
  window.tsvmmView = {
    state: state,
    view: function () { return Object.assign({}, view); },
    setView: function (v) { Object.assign(view, v); render(); },
    reset: function () { view = Object.assign({}, full); tip.hidden = true; render(); },
    mapPoint: function (pg, t) {
      return { x: Math.floor((t - view.t0) / (view.t1 - view.t0) * map.width), y: Math.floor((pg - view.p0 + 0.5) / (view.p1 - view.p0) * map.height) };
    },
    timelinePoint: function (lane, t) { return { x: Math.floor(xOf(t, tl.width)), y: lane * LANE_H + 8 }; },
    stateAt: stateAt,
    events: N
  };
  render();
  document.body.dataset.rendered = "1";
})();
`;
