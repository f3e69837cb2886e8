// oddcube explorer: a hash-routed single page over the JSON API (/api/...). Plain JS, no build.
// Routes: #/ (ranked table, state in the query part), #/galaxy/PLATEIFU, #/map.
// Active learning: every label re-ranks on the server; the table's default order ("adjusted"),
// the map's default colouring and the "next" key j (GET /api/next) follow it.
"use strict";

const app = document.getElementById("app");
const statusEl = document.getElementById("status");
let summary = null;
let currentGalaxy = null; // plate-ifu shown on a galaxy page, for keyboard labels

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
// A label's tag: the words keep their colours; a relevance grade 0–5 (Astronomaly's scale) is a
// neutral "grade" tag showing its digit.
const GRADES = ["0", "1", "2", "3", "4", "5"];
function labelTag(label, testid) {
  const cls = GRADES.includes(label) ? "grade" : label;
  return `<span class="tag ${esc(cls)}"${testid ? ` data-testid="${testid}"` : ""}>${esc(label)}</span>`;
}
const fmt = (v) => {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return esc(v);
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e9) return String(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(2);
  return v.toPrecision(4);
};

// p- and q-values span decades down to ~1e-6: always scientific, so they line up and compare.
const sci = (v) => (v === null || v === undefined || Number.isNaN(v) ? "–" : v === 0 ? "0" : v.toExponential(2));
// Offsets to 0.1″, signed; a centred region reads ±0.0, not −0.0.
const signed = (v) => { const r = Math.round(v * 10) / 10; return (r > 0 ? "+" : r < 0 ? "−" : "±") + Math.abs(r).toFixed(1); };

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function showError(err) {
  app.innerHTML = `<p class="error" data-testid="error">${esc(err.message || err)}</p>`;
}

// ---------- table ----------
function tableState() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  return {
    sort: params.get("sort") || "adjusted",
    order: params.get("order") || "",
    offset: Number(params.get("offset") || 0),
    limit: Number(params.get("limit") || 50),
    q: params.get("q") || "",
    flag: params.get("flag") || "",
    ifu: params.get("ifu") || "",
    label: params.get("label") || "",
    kind: params.get("kind") || "",
    quality: params.get("quality") || "",
  };
}

function setTableState(state) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) if (v !== "" && v !== null && !(k === "offset" && v === 0)) params.set(k, v);
  location.hash = "#/?" + params.toString();
}

async function renderTable() {
  const s = tableState();
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(s)) if (v !== "") query.set(k, v);
  const data = await api("/api/galaxies?" + query.toString());
  const scoreCols = summary.score_columns;
  const columns = [
    { key: "rank", title: "rank", get: (r) => r.rank },
    { key: "plateifu", title: "plate-ifu", get: (r) => r.plateifu, text: true },
    { key: "mangaid", title: "MaNGA-ID", get: (r) => r.mangaid, text: true },
    { key: "ifu_size", title: "IFU", get: (r) => r.ifu_size },
    { key: "adjusted", title: "adjusted", get: (r) => r.live.adjusted },
    { key: "relevance", title: "relevance", get: (r) => r.live.relevance },
    ...scoreCols.map((c) => ({ key: c, title: c, get: (r) => r.scores[c] })),
    { key: "pvalue", title: "p-value", get: (r) => r.pvalue, sci: true },
    { key: "qvalue", title: "q-value", get: (r) => r.qvalue, sci: true },
    { key: "fdr_flag", title: "FDR", get: (r) => (r.fdr_flag ? "✔" : "") },
    { key: null, title: "label", get: (r) => (r.label ? labelTag(r.label) : ""), html: true, text: true },
  ];
  if (summary.kinds.length) columns.push({ key: null, title: "kind", get: (r) => r.kind, text: true });
  const option = (value, label, current) => `<option value="${esc(value)}"${String(value) === String(current) ? " selected" : ""}>${esc(label)}</option>`;
  const head = columns
    .map((c) => `<th class="${c.text ? "text" : ""} ${c.key === data.sort ? "sorted" : ""}" ${c.key ? `data-sort="${esc(c.key)}"` : ""}>${esc(c.title)}${c.key === data.sort ? (data.order === "desc" ? " ▼" : " ▲") : ""}</th>`)
    .join("");
  const body = data.rows
    .map((r) => `<tr class="${r.fdr_flag ? "flagged" : ""}" data-plateifu="${esc(r.plateifu)}">` +
      columns.map((c) => {
        const v = c.get(r);
        const content = c.html ? v : c.key === "plateifu" ? `<a href="#/galaxy/${encodeURIComponent(r.plateifu)}" data-testid="galaxy-link">${esc(v)}</a>` : c.sci ? sci(v) : fmt(v);
        return `<td class="${c.text ? "text" : ""}">${content}</td>`;
      }).join("") + "</tr>")
    .join("");
  const first = data.total ? data.offset + 1 : 0;
  const last = Math.min(data.offset + data.limit, data.total);
  app.innerHTML = `
    <h2>Ranked galaxies <span class="muted">(${summary.n} scored, ${summary.n_flagged} flagged at FDR ${summary.fdr}, ranked by ${esc(summary.rank_by)}; "adjusted" = its percentile squared × the lift in relevance learnt from your labels)</span></h2>
    ${summary.label_warnings.length ? `<p class="flag" data-testid="label-warnings">${summary.label_warnings.map(esc).join("<br>")}</p>` : ""}
    <div class="controls">
      <label>Search <input type="search" id="q" placeholder="plate-ifu or MaNGA-ID" value="${esc(s.q)}" data-testid="search"></label>
      <label><input type="checkbox" id="flag" ${s.flag ? "checked" : ""} data-testid="flag-filter"> FDR-flagged only</label>
      <label>IFU <select id="ifu">${option("", "any", s.ifu)}${summary.ifu_sizes.map((v) => option(v, v + " fibres", s.ifu)).join("")}</select></label>
      <label>Quality <select id="quality" data-testid="quality-filter">${[["", "any"], ["ok", "not CRITICAL"], ["critical", "CRITICAL only"]].map(([v, t]) => option(v, t, s.quality)).join("")}</select></label>
      <label>Label <select id="label" data-testid="label-filter">${["", "labelled", "unlabelled", "interesting", "artefact", "normal", ...GRADES].map((v) => option(v, v || "any", s.label)).join("")}</select></label>
      ${summary.kinds.length ? `<label>Kind <select id="kind">${option("", "any", s.kind)}${summary.kinds.map((k) => option(k, k, s.kind)).join("")}</select></label>` : ""}
      <label>Rows <select id="limit">${[25, 50, 100, 250].map((v) => option(v, v, s.limit)).join("")}</select></label>
    </div>
    <table class="catalog" data-testid="catalog"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>
    <div class="pager">
      <button id="prev" ${data.offset === 0 ? "disabled" : ""}>← previous</button>
      <span data-testid="page-info">rows ${first}–${last} of ${data.total}</span>
      <button id="next" ${last >= data.total ? "disabled" : ""}>next →</button>
    </div>`;
  const update = (changes) => setTableState({ ...s, offset: 0, ...changes });
  app.querySelectorAll("th[data-sort]").forEach((th) => th.addEventListener("click", () => {
    const key = th.dataset.sort;
    const order = key === data.sort ? (data.order === "desc" ? "asc" : "desc") : "";
    update({ sort: key, order });
  }));
  let timer = null;
  document.getElementById("q").addEventListener("input", (e) => { clearTimeout(timer); timer = setTimeout(() => update({ q: e.target.value }), 300); });
  document.getElementById("flag").addEventListener("change", (e) => update({ flag: e.target.checked ? "1" : "" }));
  document.getElementById("ifu").addEventListener("change", (e) => update({ ifu: e.target.value }));
  document.getElementById("quality").addEventListener("change", (e) => update({ quality: e.target.value }));
  document.getElementById("label").addEventListener("change", (e) => update({ label: e.target.value }));
  document.getElementById("limit").addEventListener("change", (e) => update({ limit: e.target.value }));
  const kind = document.getElementById("kind");
  if (kind) kind.addEventListener("change", (e) => update({ kind: e.target.value }));
  document.getElementById("prev").addEventListener("click", () => setTableState({ ...s, offset: Math.max(0, s.offset - s.limit) }));
  document.getElementById("next").addEventListener("click", () => setTableState({ ...s, offset: s.offset + s.limit }));
}

// ---------- galaxy ----------
const tile = (p, kind, line, zoom) => `/api/galaxy/${encodeURIComponent(p)}/tile/${kind}/${encodeURIComponent(line)}.png?zoom=${zoom}`;
const BPT_COLOURS = { sf: ["#0072b2", "star-forming"], composite: ["#009e73", "composite"], seyfert: ["#d55e00", "Seyfert"], liner: ["#e69f00", "LINER"], ambiguous: ["#cc79a7", "ambiguous"], unclassified: ["#f5f5f5", "S/N < 3"] };

function sharesChart(shares) {
  // Horizontal bars of each line's share of the χ² sum.
  const rowH = 18, left = 110, width = 420;
  const max = Math.max(1e-12, ...shares.map((s) => s.share || 0));
  const bars = shares.map((s, i) => {
    const w = ((s.share || 0) / max) * (width - left - 60);
    return `<text x="${left - 6}" y="${i * rowH + 13}" text-anchor="end" font-size="12">${esc(s.line)}</text>
      <rect x="${left}" y="${i * rowH + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="#c0392b"></rect>
      <text x="${left + w + 4}" y="${i * rowH + 13}" font-size="11" fill="#5f6b7a">${((s.share || 0) * 100).toFixed(1)}%</text>`;
  }).join("");
  return `<svg width="${width}" height="${shares.length * rowH + 24}" data-testid="line-shares" role="img" aria-label="per-line share of chi-squared">
    ${bars}<text x="${left}" y="${shares.length * rowH + 18}" font-size="11" fill="#5f6b7a">share of the galaxy's χ² (residual² / σ²) per line</text></svg>`;
}

async function setLabel(plateifu, label) {
  const result = await api("/api/labels", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ plateifu, label }) });
  const next = result.next && result.next.plateifu ? ` · next (j): ${result.next.plateifu}` : "";
  statusEl.textContent = (result.label ? `${plateifu} labelled ${result.label}` : `${plateifu} label cleared`) + next;
  document.querySelectorAll(".label-buttons button").forEach((b) => b.classList.toggle("active", b.dataset.label === result.label));
  const current = document.getElementById("current-label");
  if (current) current.innerHTML = result.label ? labelTag(result.label, "current-label-tag") : "none";
}

async function renderGalaxy(plateifu) {
  const g = await api("/api/galaxy/" + encodeURIComponent(plateifu));
  currentGalaxy = g.plateifu;
  const rows = [
    ["rank", g.rank], ["MaNGA-ID", g.mangaid], ["RA, Dec (deg)", g.ra != null ? `${fmt(g.ra)}, ${fmt(g.dec)}` : "–"], ["redshift z", g.z],
    ["IFU size (fibres)", g.ifu_size], ["usable spaxels", g.n_good],
    ...summary.score_columns.map((c) => [c, g.scores[c]]), ["p-value", sci(g.pvalue)], ["q-value", sci(g.qvalue)], ["FDR flag", g.fdr_flag ? "yes" : "no"],
  ];
  rows.push(["relevance (your labels)", g.live.relevance != null ? `${fmt(g.live.relevance)} ± ${fmt(g.live.relevance_sd)}` : "–"], ["review rank", g.live.review_rank]);
  if (g.kind) rows.push(["kind", g.kind]);
  if (g.bpt_class) rows.push(["BPT class (centre)", g.bpt_class]);
  if (g.daptype) rows.push(["DAPTYPE", g.daptype]);
  if (g.quality) {
    const bits = (mask, names) => (mask ? `${mask} (${names || "?"})` : "0");
    rows.push(["DAPQUAL", bits(g.quality.dapqual, g.quality.dapqual_bits)], ["DRP3QUAL", bits(g.quality.drp3qual, g.quality.drp3qual_bits)]);
  }
  const meta = rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${typeof v === "number" ? fmt(v) : esc(v ?? "–")}</td></tr>`).join("");
  const verdict = `<p class="verdict" data-testid="score-summary">score <b>${fmt(g.scores.score)}</b> <span class="muted">(σ above ordinary galaxies)</span> · p = ${sci(g.pvalue)} · q = ${sci(g.qvalue)} · ${g.fdr_flag ? `<span class="flag" data-testid="fdr-flagged">flagged at FDR ${esc(summary.fdr)}</span>` : `<span class="muted">not flagged at FDR ${esc(summary.fdr)}</span>`}</p>`;
  const a = g.anomaly;
  let anomaly = `<p class="muted" data-testid="no-anomaly-map">${esc(a?.reason || "no anomaly map")}</p>`;
  if (a && a.available) {
    const r = a.region;
    const o = a.outline;
    const where = r ? `region centre Δx ${signed(r.dx)}″ (along columns), Δy ${signed(r.dy)}″ (along rows) from the galaxy centre, area ${fmt(r.area)} arcsec²` : "no region recorded";
    const scaleNote = o ? (o.pixel_scale_from === "dataset" ? `${fmt(o.pixel_arcsec)}″ per pixel` : `${fmt(o.pixel_arcsec)}″ per pixel, from the map (no dataset attached)`) : "region not drawn: pixel scale unknown";
    anomaly = `<figure class="anomaly"><img src="${tile(g.plateifu, "anomaly", "map", 8)}" alt="anomaly map of ${esc(g.plateifu)}" data-testid="anomaly-map">
      <figcaption><div data-testid="dominant-line">dominant line: <b>${esc(a.line)}</b></div>
      <div class="muted">${where}; cyan circle of equal area (${scaleNote})</div>
      <div class="colourbar">${fmt(a.stretch.lo)}<img src="/api/colourbar/inferno.png" alt="">${fmt(a.stretch.hi)} <span class="muted">mean z² within a PSF, log stretch; local = ${fmt(a.local)}</span></div>
      ${a.consensus_note ? `<div class="muted" data-testid="consensus-note">${esc(a.consensus_note)}</div>` : ""}</figcaption></figure>`;
  }
  const labelButtons = ["interesting", "artefact", "normal"].map((l) =>
    `<button class="${l} ${g.label === l ? "active" : ""}" data-label="${l}" data-testid="label-${l}" title="key ${l[0]}">${l} (${l[0]})</button>`).join("");
  let maps = `<p class="muted" data-testid="no-maps">No maps for this galaxy: store them with <code>oddcube score --residuals all</code> or start the server with <code>--data DATASET</code>.</p>`;
  if (g.maps) {
    const recon = g.maps.has_recon;
    const header = g.lines.map((l) => `<th>${esc(l)}</th>`).join("");
    const row = (kind, title) => `<tr><th class="row">${title}</th>${g.lines.map((l) => `<td><img loading="lazy" alt="${esc(kind)} ${esc(l)}" src="${tile(g.plateifu, kind, l, 3)}" data-testid="tile-${kind}"></td>`).join("")}</tr>`;
    maps = `<div class="maps" data-testid="maps"><table><tr><th></th>${header}</tr>${row("input", "input")}${recon ? row("recon", "reconstruction") + row("residual", "residual (σ)") : ""}</table></div>
      <div class="controls"><span class="colourbar">flux (per-line 1–99.5 %)<img src="/api/colourbar/viridis.png" alt="">high</span>
      ${recon ? `<span class="colourbar">residual −<img src="/api/colourbar/diverging.png" alt="">+ (σ, symmetric)</span>` : `<span class="muted">reconstruction not stored (maps from ${esc(g.maps.source)})</span>`}
      <span class="muted">grey = masked; north up</span></div>
      <h3>BPT class maps ([NII]+[SII], Kewley+06, S/N ≥ 3)</h3>
      <div class="bpt"><figure><img src="${tile(g.plateifu, "bpt-input", "all", 6)}" alt="BPT input" data-testid="bpt-input"><figcaption>input</figcaption></figure>
      ${recon ? `<figure><img src="${tile(g.plateifu, "bpt-recon", "all", 6)}" alt="BPT reconstruction"><figcaption>reconstruction</figcaption></figure>` : ""}
      <div class="legend">${Object.entries(BPT_COLOURS).map(([k, [c, name]]) => `<div><span style="background:${c}"></span>${name}: ${g.bpt?.input?.[k] ?? 0}${recon ? " / " + (g.bpt?.recon?.[k] ?? 0) : ""}</div>`).join("")}<div><span style="background:#bebebe"></span>no data</div></div></div>`;
  }
  const neighbours = g.neighbours.map((n) => `<a href="#/galaxy/${encodeURIComponent(n.plateifu)}" data-testid="neighbour" data-plateifu="${esc(n.plateifu)}">
      ${n.has_maps ? `<img loading="lazy" src="${tile(n.plateifu, "input", "Ha-6564", 3)}" alt="Hα of ${esc(n.plateifu)}" onerror="this.replaceWith(Object.assign(document.createElement('div'),{className:'noimg',textContent:'no Hα'}))">` : `<div class="noimg">no maps</div>`}
      ${esc(n.plateifu)}<br><span class="muted">rank ${n.rank ?? "–"} · d = ${fmt(n.distance)}</span>${n.label ? `<br>${labelTag(n.label)}` : ""}</a>`).join("");
  app.innerHTML = `
    <div class="galaxy-head">
      <div>
        <h2 data-testid="galaxy-title">${esc(g.plateifu)}</h2>
        ${verdict}
        ${g.quality?.critical ? `<p class="flag" data-testid="critical">CRITICAL: the DAP or DRP flagged this galaxy's data as a critical failure (${esc([g.quality.dapqual_bits, g.quality.drp3qual_bits].filter(Boolean).join("; "))}); its score may reflect the failure, not the galaxy.</p>` : ""}
        <table class="meta" data-testid="galaxy-meta">${meta}</table>
        <p><a href="${esc(g.links.marvin)}" target="_blank" rel="noopener">Marvin (DR17)</a>${g.links.skyserver ? ` · <a href="${esc(g.links.skyserver)}" target="_blank" rel="noopener">SkyServer</a>` : ""}</p>
      </div>
      <div data-testid="anomaly">
        <h3>Anomaly map</h3>
        ${anomaly}
      </div>
      <div>
        <h3>Label</h3>
        <div class="label-buttons">${labelButtons}<button data-label="" title="key u">clear (u)</button></div>
        <div class="label-buttons grades" title="relevance on Astronomaly's 0–5 scale (keys 0–5): 0 none … 5 most; 0–2 sink like normal">relevance ${GRADES.map((v) => `<button class="grade ${g.label === v ? "active" : ""}" data-label="${v}" data-testid="label-grade-${v}" title="key ${v}">${v}</button>`).join("")}</div>
        <p><button id="next-galaxy" data-testid="next-galaxy" title="key j">next to review (j)</button></p>
        <p>current: <span id="current-label" data-testid="current-label">${g.label ? labelTag(g.label, "current-label-tag") : "none"}</span></p>
        <h3>Per-line share of χ²</h3>
        ${g.line_shares.length ? sharesChart(g.line_shares) : `<p class="muted">no per-line columns</p>`}
      </div>
    </div>
    <h3>Line maps</h3>${maps}
    <h3>Nearest neighbours in latent space</h3><div class="neighbours" data-testid="neighbours">${neighbours || `<p class="muted">none</p>`}</div>`;
  app.querySelectorAll(".label-buttons button").forEach((b) => b.addEventListener("click", () => setLabel(g.plateifu, b.dataset.label || null).catch((e) => (statusEl.textContent = e.message))));
  document.getElementById("next-galaxy").addEventListener("click", () => goNext().catch((e) => (statusEl.textContent = e.message)));
}

// The review queue: the unlabelled galaxy the blended ranking puts first.
async function goNext() {
  const next = await api("/api/next");
  if (!next.plateifu) { statusEl.textContent = "every galaxy is labelled"; return; }
  location.hash = "#/galaxy/" + encodeURIComponent(next.plateifu);
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || ["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName)) return;
  if (e.key === "j") { goNext().catch((err) => (statusEl.textContent = err.message)); return; }
  if (!currentGalaxy) return;
  const label = GRADES.includes(e.key) ? e.key : { i: "interesting", a: "artefact", n: "normal", u: null }[e.key];
  if (label !== undefined) setLabel(currentGalaxy, label).catch((err) => (statusEl.textContent = err.message));
});

// ---------- map ----------
let mapData = null;
async function renderMap() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const colour = params.get("colour") || "adjusted";
  if (!summary.projection) {
    app.innerHTML = `<p class="muted" data-testid="no-map">No latent map yet: run <code>oddcube project ${esc(summary.results_dir)}</code> and restart.</p>`;
    return;
  }
  mapData = await api("/api/map?colour=" + encodeURIComponent(colour));
  const choices = ["adjusted", "relevance", "relevance_sd", "rank", ...summary.score_columns, "pvalue", "qvalue"];
  const stretchNote = { log: "log scale", rank: "rank scale", linear: "linear" }[mapData.stretch] || mapData.stretch;
  app.innerHTML = `<h2>Latent map (${esc(mapData.method.toUpperCase())}) coloured by ${esc(colour)}</h2>
    <div class="controls"><label>Colour by <select id="colour">${choices.map((c) => `<option${c === colour ? " selected" : ""}>${esc(c)}</option>`).join("")}</select></label>
    <span class="colourbar" data-testid="map-legend">${esc(fmt(mapData.low_end))}<img src="/api/colourbar/plasma.png" alt="">${esc(fmt(mapData.high_end))} (${esc(stretchNote)}${mapData.stretch === "rank" ? "" : ", 1st–99th percentile"}${mapData.reversed ? ", low values bright" : ""})</span><span class="muted">hover for plate-ifu, click to open</span></div>
    <div id="map-wrap"><canvas id="map-canvas" width="900" height="700" data-testid="map-canvas"></canvas><div id="tooltip" data-testid="map-tooltip"></div></div>`;
  document.getElementById("colour").addEventListener("change", (e) => (location.hash = "#/map?colour=" + encodeURIComponent(e.target.value)));
  drawMap();
}

const PLASMA = ["#0d0887", "#46039f", "#7201a8", "#9c179e", "#bd3786", "#d8576b", "#ed7953", "#fb9f3a", "#fdca26", "#f0f921"];
function drawMap() {
  const canvas = document.getElementById("map-canvas");
  const ctx = canvas.getContext("2d");
  const { x, y, c } = mapData;
  const n = x.length;
  const finite = (v) => v !== null && Number.isFinite(v);
  const xs = x.filter(finite), ys = y.filter(finite);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const pad = 20, W = canvas.width, H = canvas.height;
  const sx = (v) => pad + ((v - x0) / (x1 - x0 || 1)) * (W - 2 * pad);
  const sy = (v) => H - pad - ((v - y0) / (y1 - y0 || 1)) * (H - 2 * pad);
  // The server places every point on the colour scale (mapData.t in [0, 1], 1 = anomalous end)
  // with the per-column stretch `oddcube plot map` uses; anomalous points are drawn last.
  const t = mapData.t;
  const order = [...Array(n).keys()].sort((a, b) => (t[a] ?? -1) - (t[b] ?? -1));
  const r = n > 30000 ? 1.2 : n > 3000 ? 2 : 3.5;
  ctx.clearRect(0, 0, W, H);
  mapData.screen = new Float32Array(2 * n);
  for (const i of order) {
    const px = sx(x[i]), py = sy(y[i]);
    mapData.screen[2 * i] = px; mapData.screen[2 * i + 1] = py;
    ctx.fillStyle = finite(t[i]) ? PLASMA[Math.max(0, Math.min(9, Math.floor(t[i] * 9.999)))] : "#bebebe";
    ctx.beginPath(); ctx.arc(px, py, r, 0, 2 * Math.PI); ctx.fill();
  }
  const tooltip = document.getElementById("tooltip");
  const nearest = (ev) => {
    const rect = canvas.getBoundingClientRect();
    const mx = (ev.clientX - rect.left) * (W / rect.width), my = (ev.clientY - rect.top) * (H / rect.height);
    let best = -1, bestD = 64;
    for (let i = 0; i < n; i++) { const dx = mapData.screen[2 * i] - mx, dy = mapData.screen[2 * i + 1] - my, d = dx * dx + dy * dy; if (d < bestD) { bestD = d; best = i; } }
    return [best, mx, my];
  };
  canvas.onmousemove = (ev) => {
    const [i] = nearest(ev);
    if (i < 0) { tooltip.style.display = "none"; return; }
    tooltip.style.display = "block";
    tooltip.style.left = mapData.screen[2 * i] + 10 + "px"; tooltip.style.top = mapData.screen[2 * i + 1] - 10 + "px";
    tooltip.textContent = `${mapData.plateifu[i]} · rank ${mapData.rank[i] ?? "–"} · ${mapData.colour} ${fmt(c[i])}`;
  };
  canvas.onmouseleave = () => (tooltip.style.display = "none");
  canvas.onclick = (ev) => { const [i] = nearest(ev); if (i >= 0) location.hash = "#/galaxy/" + encodeURIComponent(mapData.plateifu[i]); };
}

// ---------- router ----------
async function route() {
  currentGalaxy = null;
  const hash = location.hash || "#/";
  try {
    if (!summary) summary = await api("/api/summary");
    statusEl.textContent = `${summary.n} galaxies · ${summary.n_residuals} with stored maps${summary.has_dataset ? " · dataset attached" : ""}`;
    if (hash.startsWith("#/galaxy/")) await renderGalaxy(decodeURIComponent(hash.slice("#/galaxy/".length)));
    else if (hash.startsWith("#/map")) await renderMap();
    else await renderTable();
  } catch (err) {
    showError(err);
  }
}
window.addEventListener("hashchange", route);
route();
