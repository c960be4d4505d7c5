// The HTML view in a real browser (the browser tier: npm run test:browser): Debian's chromium, headless, driven by playwright-core. It
// checks what the page shows against the trace (marks per lane, the map's colours at known pages,
// a hover), measures a 100 000-event page, and keeps screenshots under the OS temp dir.
import { test, TestContext } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Browser, Page } from "playwright-core";
import { generateTrace } from "../support/traceGen";
import { parseTrace, PRIVATE, readTraceFile, statesAt, Trace } from "../../vmm/trace/reader";
import { STATE_COLOURS, toHtml } from "../../vmm/trace/html";
import { ROOT } from "../support/cli";

// The page's globals, seen from the callbacks page.evaluate runs in the browser (no DOM lib here)
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const window: any; // eslint-disable-line @typescript-eslint/no-explicit-any

const CHROMIUM = process.env.TSVMM_CHROMIUM || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];
const ARTIFACTS = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-trace-html-"));

async function launch(t: TestContext): Promise<Browser | undefined> {
  if (!fs.existsSync(CHROMIUM)) {
    const why = `${CHROMIUM} is missing (apt-get install chromium, or set TSVMM_CHROMIUM)`;
    if (process.env.CI === "true") throw new Error(`${why}, and CI=true forbids skipping`);
    t.skip(why);
    return undefined;
  }
  const { chromium } = await import("playwright-core");
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 60000 });
}

/** Write the page, open it with every non-file request counted, wait until it has drawn. */
async function open(browser: Browser, trace: Trace, name: string): Promise<{ page: Page; file: string; bytes: number; loadMs: number; outside: string[] }> {
  const file = path.join(ARTIFACTS, `${name}.html`);
  const html = toHtml(trace);
  fs.writeFileSync(file, html);
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const outside: string[] = [];
  page.on("request", (r) => {
    if (!r.url().startsWith("file://") && !r.url().startsWith("data:")) outside.push(r.url());
  });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const started = Date.now();
  await page.goto("file://" + file);
  await page.waitForSelector("body[data-rendered]", { timeout: 60000 });
  const loadMs = Date.now() - started;
  assert.deepEqual(errors, [], "no script errors");
  return { page, file, bytes: Buffer.byteLength(html), loadMs, outside };
}

async function screenshot(t: TestContext, page: Page, name: string): Promise<void> {
  const png = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: png, fullPage: true });
  t.diagnostic(`screenshot: ${png}`);
  console.log(`# screenshot: ${png}`);
}

const rgb = (hex: string) => [1, 3, 5].map((k) => parseInt(hex.substr(k, 2), 16));

/** Pages in the middle of runs long enough to own whole map rows, with their final state */
function probePages(trace: Trace, rows: number): Array<{ page: number; state: number }> {
  const final = statesAt(trace);
  const perRow = Math.ceil(final.length / rows);
  const picks: Array<{ page: number; state: number }> = [];
  for (let p = 0; p < final.length; ) {
    let q = p;
    while (q < final.length && final[q] === final[p]) q++;
    if (q - p >= perRow * 3) picks.push({ page: (p + q) >> 1, state: final[p] });
    p = q;
  }
  return picks;
}

/** The map's last column at these pages, as [r, g, b] */
function mapColours(page: Page, pages: number[]): Promise<number[][]> {
  return page.evaluate((pages) => {
    const c = document.getElementById("map");
    const ctx = c.getContext("2d");
    return pages.map((p: number) => Array.from(ctx.getImageData(c.width - 1, window.tsvmmView.mapPoint(p, 0).y, 1, 1).data.slice(0, 3)) as number[]);
  }, pages);
}

const colourOf = (state: number) => rgb(state === PRIVATE ? STATE_COLOURS.private : STATE_COLOURS.shared);

async function checkPage(t: TestContext, page: Page, trace: Trace): Promise<void> {
  // lanes: the marks drawn per vCPU equal the trace's events per vCPU
  const lanes = await page.$$eval("#lanes div[data-vcpu]", (ds) => ds.map((d) => ({ vcpu: Number(d.getAttribute("data-vcpu")), marks: Number(d.getAttribute("data-marks")), text: d.textContent })));
  const vcpus = [...new Set(trace.events.map((e) => e.vcpu))].sort((a, b) => a - b);
  for (const v of vcpus) {
    const lane = lanes.find((l) => l.vcpu === v);
    const want = trace.events.filter((e) => e.vcpu === v).length;
    assert.ok(lane, `a lane for vCPU ${v}`);
    assert.equal(lane.marks, want, `marks in the lane of vCPU ${v}`);
    assert.match(lane.text ?? "", new RegExp(`\\(${want}\\)`));
  }

  // the map: the last column shows the trace's final state at pages whose rows are all one state
  const rows = await page.$eval("#map", (c) => c.height);
  await page.evaluate((pages) => window.tsvmmView.setView({ p0: 0, p1: pages }), trace.initial.length);
  const final = statesAt(trace);
  const probes = probePages(trace, rows);
  assert.ok(probes.length > 0, "runs long enough to own a row");
  (await mapColours(page, probes.map((p) => p.page))).forEach((px, i) => assert.deepEqual(px, colourOf(probes[i].state), `page ${probes[i].page} at the end`));
  // zoomed to one page per row: every page of a window where the states change most
  const busiest = busiestWindow(final, rows);
  await page.evaluate(([p0, p1]) => window.tsvmmView.setView({ p0, p1 }), [busiest, busiest + rows]);
  const window_ = Array.from({ length: rows }, (_, i) => busiest + i);
  const colours = await mapColours(page, window_);
  window_.forEach((p, i) => assert.deepEqual(colours[i], colourOf(final[p]), `page ${p} at the end (zoomed)`));
  assert.ok(new Set(window_.map((p) => final[p])).size === 2, "the zoomed window shows both states");
  await page.evaluate(() => window.tsvmmView.reset());
  t.diagnostic(`map colours checked at ${probes.length} pages in the whole map and ${rows} pages zoomed`);
}

/** The first page of the `rows`-page window with the most state changes */
function busiestWindow(final: Uint8Array, rows: number): number {
  let best = 0;
  let bestChanges = -1;
  for (let start = 0; start + rows <= final.length; start += rows >> 1) {
    let changes = 0;
    for (let p = start + 1; p < start + rows; p++) if (final[p] !== final[p - 1]) changes++;
    if (changes > bestChanges) [best, bestChanges] = [start, changes];
  }
  return best;
}

test("the HTML page of a trace shows every event in its vCPU's lane and the final page states", { timeout: 120000 }, async (t) => {
  const browser = await launch(t);
  if (!browser) return;
  try {
    // a real run: smp-convert on 2 vCPUs in the lab, with KVM's hypercall events (fixtures README)
    const trace = readTraceFile(path.join(ROOT, "test", "fixtures", "traces", "smp-convert.ndjson.gz"));
    const { page, outside } = await open(browser, trace, "smp-convert");
    assert.deepEqual(outside, [], "the page asks for nothing outside itself");
    await checkPage(t, page, trace);

    // hover: zoomed in around one conversion, the tooltip names it
    const e = trace.events.find((x) => x.kind === "conversion" && x.outcome === "converted")!;
    const lane = (await page.$$eval("#lanes div[data-vcpu]", (ds) => ds.map((d) => Number(d.getAttribute("data-vcpu"))))).indexOf(e.vcpu);
    const endUs = e.time * 1000;
    const point = await page.evaluate(
      ([t0, t1, lane, at]) => {
        const v = window.tsvmmView;
        v.setView({ t0, t1 });
        const r = document.getElementById("timeline").getBoundingClientRect();
        const p = v.timelinePoint(lane, at);
        const c = document.getElementById("timeline");
        return { x: r.left + (p.x * r.width) / c.width, y: r.top + p.y };
      },
      [endUs - 20, endUs + 20, lane, endUs - 0.1] as const,
    );
    await page.mouse.move(point.x, point.y);
    const tip = await page.$eval("#tip", (d) => ({ hidden: d.hidden, text: d.textContent ?? "" }));
    assert.equal(tip.hidden, false);
    assert.match(tip.text, new RegExp(`#${e.seq} `));
    assert.match(tip.text, new RegExp(`0x${e.gpa!.toString(16)}\\+0x${e.size!.toString(16)}`));
    assert.match(tip.text, /result: ok/);
    await page.evaluate(() => window.tsvmmView.reset());
    await screenshot(t, page, "smp-convert");
  } finally {
    await browser.close();
  }
});

test("a 100 000-event trace: the page's size, its load and draw times, and what it shows", { timeout: 300000 }, async (t) => {
  const browser = await launch(t);
  if (!browser) return;
  try {
    const trace = parseTrace((await generateTrace(100000, { cpus: 4 })).text, "generated-100k");
    const { page, bytes, loadMs } = await open(browser, trace, "100k");
    const drawn = await page.evaluate(() => window.tsvmmView.state as { timelineMs: number; mapMs: number; marks: number[] });
    const numbers = `100 000 events: HTML ${(bytes / 2 ** 20).toFixed(1)} MiB; open to drawn ${loadMs} ms; timeline ${drawn.timelineMs.toFixed(0)} ms, map ${drawn.mapMs.toFixed(0)} ms`;
    t.diagnostic(numbers);
    console.log(`# ${numbers}`);
    assert.equal(drawn.marks.reduce((a, b) => a + b, 0), 100000);
    await checkPage(t, page, trace);
    // zooming redraws from the same data; it must stay interactive
    const redraw = await page.evaluate(() => {
      const v = window.tsvmmView;
      const t0 = performance.now();
      v.setView({ t0: 300000, t1: 320000, p0: 4096, p1: 6144 });
      return performance.now() - t0;
    });
    t.diagnostic(`zoomed redraw ${redraw.toFixed(0)} ms`);
    console.log(`# zoomed redraw ${redraw.toFixed(0)} ms`);
    assert.ok(bytes < 16 * 2 ** 20, `the page stays under 16 MiB (${bytes} bytes)`);
    assert.ok(loadMs < 30000 && redraw < 5000, "usable: drawn in seconds, not minutes");
    await screenshot(t, page, "100k-zoomed");
    await page.evaluate(() => window.tsvmmView.reset());
    await screenshot(t, page, "100k");
  } finally {
    await browser.close();
  }
});
