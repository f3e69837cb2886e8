// End-to-end test of `oddcube serve` in headless Debian Chromium, driven by playwright-core:
// load the table, open the top anomaly, see its maps, click a neighbour, add a label with the
// keyboard, reload (and restart the server) and see the label kept; follow the review queue with
// j and label three galaxies, seeing the table re-ranked and `next` move on; hover and click the
// latent map. Screenshots go to $SCREENSHOTS (default /tmp/oddcube-browser).
//
// Inputs (environment): ODDCUBE_BIN (default $CARGO_TARGET_DIR/release/oddcube), ODDCUBE_RESULTS
// (default: a synthetic RESULTS directory written by the `synthetic_results` example), and
// optionally ODDCUBE_DATA, ODDCUBE_MODEL, ODDCUBE_KINDS passed to `serve` as --data/--model/--truth
// (e.g. the directories `oddcube demo` leaves behind).
// Run from anywhere: `node tests/browser/e2e.mjs` (after `npm ci` in tests/browser).

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const targetDir = process.env.CARGO_TARGET_DIR || join(repo, "target");
const bin = process.env.ODDCUBE_BIN || join(targetDir, "release", "oddcube");
const shots = process.env.SCREENSHOTS || "/tmp/oddcube-browser";
mkdirSync(shots, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error("FAILED: " + message);
  console.log("ok -", message);
}

let results = process.env.ODDCUBE_RESULTS;
let serveArgs = [];
for (const [env, flag] of [["ODDCUBE_DATA", "--data"], ["ODDCUBE_MODEL", "--model"], ["ODDCUBE_KINDS", "--truth"]]) {
  if (process.env[env]) serveArgs.push(flag, process.env[env]);
}
if (!results) {
  results = mkdtempSync(join(tmpdir(), "oddcube-e2e-"));
  execFileSync("cargo", ["run", "--release", "-q", "-p", "oddcube-explore", "--example", "synthetic_results", "--", results, "200", "1"], {
    cwd: repo,
    stdio: "inherit",
  });
  serveArgs = ["--truth", join(results, "kinds.csv")];
}
check(existsSync(bin), `oddcube binary at ${bin}`);
execFileSync(bin, ["project", results, "--seed", "1"], { stdio: "inherit" });

function startServer() {
  return new Promise((resolveUrl, reject) => {
    const child = spawn(bin, ["serve", "--results", results, "--port", "0", ...serveArgs], { stdio: ["ignore", "pipe", "inherit"] });
    let buffer = "";
    child.stdout.on("data", (chunk) => {
      buffer += chunk;
      const match = buffer.match(/http:\/\/127\.0\.0\.1:\d+\//);
      if (match) resolveUrl({ child, url: match[0] });
    });
    child.on("exit", (code) => reject(new Error(`server exited with ${code}`)));
    setTimeout(() => reject(new Error("server did not print its URL within 30 s")), 30000);
  });
}

const stop = (server) => new Promise((done) => { server.child.removeAllListeners("exit"); server.child.on("exit", done); server.child.kill(); });

let server = await startServer();
console.log("serving", results, "at", server.url);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
  page.on("pageerror", (err) => failures.push("page error: " + err.message));
  page.on("console", (msg) => { if (msg.type() === "error" && !msg.text().includes("404")) failures.push("console: " + msg.text()); });

  // 1. The ranked table.
  await page.goto(server.url);
  await page.waitForSelector("[data-testid=catalog] tbody tr");
  const n = await page.evaluate(() => fetch("/api/summary").then((r) => r.json()).then((s) => s.n));
  const rows = await page.locator("[data-testid=catalog] tbody tr").count();
  check(rows === Math.min(50, n), `table shows a page of ${Math.min(50, n)} rows (got ${rows})`);
  check((await page.textContent("[data-testid=page-info]")).includes(`of ${n}`), `pager counts ${n} galaxies`);
  await page.screenshot({ path: join(shots, "1-table.png"), fullPage: false });

  // Sorting by a score column from its header.
  await page.click("th[data-sort=lof]");
  await page.waitForFunction(() => location.hash.includes("sort=lof"));
  await page.waitForSelector("th.sorted[data-sort=lof]");
  const lofs = await page.$$eval("[data-testid=catalog] tbody tr", (trs) => trs.map((tr) => tr.dataset.plateifu));
  check(lofs.length === rows, "sorted table re-rendered");
  await page.click("[data-testid=nav-table]");
  await page.goto(server.url + "#/");
  await page.waitForSelector("[data-testid=catalog] tbody tr");

  // p- and q-values in the table, in scientific notation; the FDR filter shows the flagged ones.
  const pCell = await page.$eval("[data-testid=catalog] tbody tr td:nth-child(" + ((await page.$$eval("[data-testid=catalog] th", (ths) => ths.findIndex((th) => th.dataset.sort === "pvalue"))) + 1) + ")", (td) => td.textContent);
  check(/^(0|\d\.\d\de[-+]\d+)$/.test(pCell.trim()), `p-value in scientific notation (${pCell.trim()})`);
  const nFlagged = await page.evaluate(() => fetch("/api/summary").then((r) => r.json()).then((s) => s.n_flagged));
  await page.check("[data-testid=flag-filter]");
  await page.waitForFunction(() => location.hash.includes("flag=1"));
  // "of 20" must not match the unfiltered "of 200": the count must end there.
  await page.waitForFunction((n) => new RegExp(`of ${n}(\\D|$)`).test(document.querySelector("[data-testid=page-info]")?.textContent ?? ""), nFlagged);
  const flaggedRows = await page.$$eval("[data-testid=catalog] tbody tr", (trs) => trs.map((tr) => tr.classList.contains("flagged")));
  check(flaggedRows.length === Math.min(50, nFlagged) && flaggedRows.every(Boolean), `FDR-flagged only shows the ${nFlagged} flagged galaxies`);
  await page.screenshot({ path: join(shots, "1b-flagged.png"), fullPage: false });
  await page.goto(server.url + "#/");
  await page.waitForSelector("[data-testid=catalog] tbody tr:nth-child(2)");

  // 2. Open the top anomaly and see its maps.
  const top = page.locator("[data-testid=galaxy-link]").first();
  const topId = (await top.textContent()).trim();
  await top.click();
  await page.waitForSelector("[data-testid=galaxy-title]");
  check((await page.textContent("[data-testid=galaxy-title]")).trim() === topId, `galaxy page of the top anomaly ${topId}`);
  await page.waitForFunction(() => [...document.querySelectorAll("[data-testid=maps] img")].every((img) => img.complete && img.naturalWidth > 0));
  const tiles = await page.locator("[data-testid=tile-input]").count();
  const residualTiles = await page.locator("[data-testid=tile-residual]").count();
  check(tiles === 19 && residualTiles === 19, `19 input and 19 residual maps loaded (got ${tiles}, ${residualTiles})`);
  await page.waitForFunction(() => { const img = document.querySelector("[data-testid=bpt-input]"); return img && img.complete && img.naturalWidth > 0; });
  check(await page.locator("[data-testid=line-shares] rect").count() === 19, "per-line χ² shares drawn for 19 lines");
  // The anomaly map, its region's dominant line, and the calibrated score with p and q.
  await page.waitForFunction(() => { const img = document.querySelector("[data-testid=anomaly-map]"); return img && img.complete && img.naturalWidth > 0; });
  const detail = await page.evaluate((id) => fetch("/api/galaxy/" + encodeURIComponent(id)).then((r) => r.json()), topId);
  const lineText = (await page.textContent("[data-testid=dominant-line]")).trim();
  check(detail.anomaly.available && detail.lines.includes(detail.anomaly.line) && lineText === `dominant line: ${detail.anomaly.line}`, `anomaly map shown, ${lineText}`);
  const verdict = await page.textContent("[data-testid=score-summary]");
  check(/score .* p = (0|\d\.\d\de[-+]\d+) · q = (0|\d\.\d\de[-+]\d+)/.test(verdict), `score, p and q shown: ${verdict.trim()}`);
  await page.screenshot({ path: join(shots, "2-galaxy.png"), fullPage: true });

  // 3. Click a neighbour.
  const neighbour = page.locator("[data-testid=neighbour]").first();
  const neighbourId = await neighbour.getAttribute("data-plateifu");
  await neighbour.click();
  await page.waitForFunction((id) => document.querySelector("[data-testid=galaxy-title]")?.textContent.trim() === id, neighbourId);
  check(true, `neighbour ${neighbourId} opened`);

  // 4. Label it with the keyboard, reload, restart the server: the label stays.
  await page.keyboard.press("a");
  await page.waitForFunction(() => document.querySelector("[data-testid=current-label-tag]")?.textContent === "artefact");
  check(true, "key a labels the galaxy artefact");
  await page.reload();
  await page.waitForSelector("[data-testid=galaxy-title]");
  await page.waitForSelector("[data-testid=current-label-tag]");
  check((await page.textContent("[data-testid=current-label-tag]")) === "artefact", "label kept after a reload");
  const csv = readFileSync(join(results, "labels.csv"), "utf8");
  check(csv.includes(`${neighbourId},artefact,`), "labels.csv on disk has the label");
  await stop(server);
  server = await startServer();
  await page.goto(server.url + "#/galaxy/" + encodeURIComponent(neighbourId));
  await page.waitForSelector("[data-testid=current-label-tag]");
  check((await page.textContent("[data-testid=current-label-tag]")) === "artefact", "label kept after a server restart");
  await page.goto(server.url + "#/?label=artefact");
  await page.waitForSelector("[data-testid=catalog] tbody tr");
  const labelled = await page.$$eval("[data-testid=catalog] tbody tr", (trs) => trs.map((tr) => tr.dataset.plateifu));
  check(labelled.length === 1 && labelled[0] === neighbourId, "table filtered by label shows it");
  await page.screenshot({ path: join(shots, "3-labelled.png") });
  await page.keyboard.press("i"); // no galaxy page: must do nothing

  // 4b. Active learning: j follows /api/next; three keyboard labels re-rank the table and move
  // the queue on, without a reload.
  const order = async () => page.evaluate(() => fetch("/api/galaxies?sort=adjusted&limit=30").then((r) => r.json()).then((t) => t.rows.map((r) => r.plateifu)));
  const before = await order();
  await page.goto(server.url + "#/");
  // Only the hash changes, so the page is not reloaded: the one-row table filtered by label is
  // still there until the new page of rows arrives (a race that loses on a loaded machine).
  await page.waitForFunction((n) => document.querySelectorAll("[data-testid=catalog] tbody tr").length >= n, before.length, { timeout: 15000 })
    .catch(() => {});
  const tableBefore = await page.$$eval("[data-testid=catalog] tbody tr", (trs) => trs.slice(0, 30).map((tr) => tr.dataset.plateifu));
  check(tableBefore.join() === before.join(), "the table's default order is the live blend");
  const visited = [];
  for (const key of ["i", "n", "n"]) {
    const expected = await page.evaluate(() => fetch("/api/next").then((r) => r.json()).then((n) => n.plateifu));
    const title = await page.locator("[data-testid=galaxy-title]").count() ? (await page.textContent("[data-testid=galaxy-title]")).trim() : null;
    await page.keyboard.press("j");
    await page.waitForFunction((id) => document.querySelector("[data-testid=galaxy-title]")?.textContent.trim() === id, expected);
    check(expected !== title && !visited.includes(expected), `j opens the next galaxy to review, ${expected}`);
    visited.push(expected);
    await page.keyboard.press(key);
    const want = { i: "interesting", n: "normal" }[key];
    await page.waitForFunction((w) => document.querySelector("[data-testid=current-label-tag]")?.textContent === w, want);
  }
  const after = await order();
  const moved = after.filter((id, i) => before[i] !== id).length;
  check(moved > 0, `three labels re-ranked the table (${moved} of the first 30 places changed)`);
  check(after[0] === visited[0], "the galaxy labelled interesting now leads the table");
  const nextNow = await page.evaluate(() => fetch("/api/next").then((r) => r.json()).then((n) => n.plateifu));
  check(!visited.includes(nextNow) && nextNow !== neighbourId, `next moved on to an unlabelled galaxy (${nextNow})`);
  await page.goto(server.url + "#/");
  await page.waitForSelector("[data-testid=catalog] tbody tr");
  const tableAfter = await page.$$eval("[data-testid=catalog] tbody tr", (trs) => trs.slice(0, 30).map((tr) => tr.dataset.plateifu));
  check(tableAfter.join() === after.join(), "the table page shows the new order");
  await page.screenshot({ path: join(shots, "3b-active.png") });
  const lines = readFileSync(join(results, "labels.csv"), "utf8").trim().split("\n");
  check(visited.every((id) => lines.some((l) => l.startsWith(id + ","))), "labels.csv has one line per keyboard label");

  // 4c. A graded relevance (Astronomaly's 0–5 scale) from the keyboard: key 4 on the next galaxy.
  const graded = await page.evaluate(() => fetch("/api/next").then((r) => r.json()).then((n) => n.plateifu));
  await page.keyboard.press("j");
  await page.waitForFunction((id) => document.querySelector("[data-testid=galaxy-title]")?.textContent.trim() === id, graded);
  await page.keyboard.press("4");
  await page.waitForFunction(() => document.querySelector("[data-testid=current-label-tag]")?.textContent === "4");
  check(await page.locator("[data-testid=label-grade-4].active").count() === 1, "key 4 grades the galaxy 4 and marks its button");
  const gradedLines = readFileSync(join(results, "labels.csv"), "utf8").trim().split("\n");
  check(gradedLines.some((l) => l.startsWith(`${graded},4,`)), "labels.csv has the grade");
  const nextAfterGrade = await page.evaluate(() => fetch("/api/next").then((r) => r.json()).then((n) => n.plateifu));
  check(nextAfterGrade !== graded, "next moves on from the graded galaxy");

  // 5. The latent map: hover shows a plate-ifu, click opens the galaxy.
  await page.goto(server.url + "#/map");
  await page.waitForSelector("[data-testid=map-canvas]");
  const box = await page.locator("[data-testid=map-canvas]").boundingBox();
  const point = await page.evaluate(() => { const i = 0; return [mapData.screen[0], mapData.screen[1], mapData.plateifu[i]]; });
  const canvasSize = await page.evaluate(() => { const c = document.getElementById("map-canvas"); return [c.width, c.height]; });
  const px = box.x + (point[0] * box.width) / canvasSize[0];
  const py = box.y + (point[1] * box.height) / canvasSize[1];
  await page.mouse.move(px, py);
  await page.waitForSelector("[data-testid=map-tooltip]", { state: "visible" });
  const tip = await page.textContent("[data-testid=map-tooltip]");
  check(tip.includes("rank"), `hover shows a galaxy: ${tip}`);
  await page.screenshot({ path: join(shots, "4-map.png") });
  await page.mouse.click(px, py);
  await page.waitForSelector("[data-testid=galaxy-title]");
  check(true, `clicking the map opened ${(await page.textContent("[data-testid=galaxy-title]")).trim()}`);

  // 6. A broken link shows a readable error, not a blank page.
  await page.goto(server.url + "#/galaxy/no-such-galaxy");
  await page.waitForSelector("[data-testid=error]");
  check((await page.textContent("[data-testid=error]")).includes("no galaxy"), "unknown galaxy shows an error");
} finally {
  await browser.close();
  await stop(server);
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log(`browser test passed; screenshots in ${shots}`);
