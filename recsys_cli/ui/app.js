// recsys dashboard: plain JavaScript over the server's JSON API (the same endpoints curl uses).
// No build step, no library, no external URL: the page works offline.
"use strict";

const KEY_STORE = "recsys-api-key";
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
const state = { runs: [], items: new Map(), rated: new Map(), ratedMeta: new Map() };

// ----- helpers --------------------------------------------------------------------------------------
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fmt(x, digits = 3) {
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return x.toLocaleString("en-US");
  return x.toFixed(digits);
}
const pct = (x, d = 1) => (x === null || x === undefined ? "–" : (100 * x).toFixed(d) + "%");

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers["X-API-Key"] = key;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = Object.assign({}, options, { method: options.method || "POST", body: JSON.stringify(options.json) });
  }
  let res;
  try {
    res = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {  // no HTTP answer at all (a TypeError, "Failed to fetch"): the server is gone
    throw new ApiError(0, { error: `Cannot reach the server at ${location.host}: is \`recsys serve\` still running? (${e.message})` });
  }
  if (!res.ok) {
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (res.status === 401) {
      showBanner(key ? "The server refused this API key: enter the right one at the top right."
        : "This server needs an API key: enter it at the top right.");
    }
    throw new ApiError(res.status, body);
  }
  return options.raw ? res : res.json();
}

function showBanner(text) {
  const b = $("banner");
  b.textContent = text;
  b.hidden = !text;
}

function showError(target, err) {
  target.replaceChildren(el("p", { class: "error" }, err.message || String(err)));
}

function busy(target, text = "loading…") {
  target.replaceChildren(el("p", { class: "hint busy" }, text));
}

// Each view shows the answer to its newest request only: a slower, older answer (a run switched while its list
// was on its way) is dropped instead of overwriting the newer one.
const latest = {};
function ticket(view) {
  const t = (latest[view] = (latest[view] || 0) + 1);
  return () => latest[view] === t;
}

// An integer field (an id, a count) as the API wants it: "+3" -> "3", "1e3" -> "1000"; anything else is sent as typed
// (the server's 422 names it).
function intField(id) {
  const input = $(id);
  const raw = input.value.trim();
  if (/^[+-]?\d+$/.test(raw)) return raw.replace(/^\+/, "");
  return Number.isSafeInteger(input.valueAsNumber) ? String(input.valueAsNumber) : raw;
}

const qs = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString();

// ----- items (title, genres) ----------------------------------------------------------------------------
async function itemInfo(run, ids) {
  const missing = ids.filter((i) => !state.items.has(`${run}/${i}`));
  await Promise.all(missing.map(async (i) => {
    try {
      state.items.set(`${run}/${i}`, await api(`/items/${i}?${qs({ run })}`));
    } catch (e) {  // remembered only when the server says the item is unknown: a failed call is asked again later
      if (e.status === 404) state.items.set(`${run}/${i}`, { item_id: i });
    }
  }));
  return (i) => state.items.get(`${run}/${i}`) || { item_id: i };
}

// One part of a row's `reasons` (recsys recommend --explain): {kind, item_id, title, contribution}; strings pass.
const REASON_LABELS = { popular: "popular with everyone", baseline: "global mean + biases", residual: "solver residual" };
function reasonText(r) {
  if (r === null || r === undefined) return "";
  if (typeof r === "string") return r;
  const name = r.kind === "rated" ? `you rated ${r.title || "item " + r.item_id}`
    : r.kind === "genre" ? `genre ${r.title}` : (r.title || REASON_LABELS[r.kind] || r.kind || "");
  const c = typeof r.contribution === "number" ? ` ${r.contribution >= 0 ? "+" : "−"}${Math.abs(r.contribution).toFixed(3)}` : "";
  return (name + c).trim() || JSON.stringify(r);
}

// One recommendation list as a table: rank, title (+ genres), score, reasons when the server sends them.
async function renderList(target, run, rows, opts = {}) {
  if (!rows.length) {
    target.replaceChildren(el("p", { class: "hint" }, "no items"));
    return;
  }
  const info = await itemInfo(run, rows.map((r) => r.item_id));
  if (opts.current && !opts.current()) return;
  const hasReasons = rows.some((r) => r.reasons && r.reasons.length);
  const maxScore = Math.max(...rows.map((r) => Math.abs(r.score || 0)), 1e-12);
  const table = el("table", { class: "recs" },
    el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "movie"), el("th", {}, "score"),
      hasReasons ? el("th", {}, "because") : null)),
    el("tbody", {}, rows.map((r) => {
      const meta = info(r.item_id);
      const genres = (meta.genres || []).map((g) => el("span", { class: "genre" }, g));
      const shared = opts.highlight && opts.highlight.has(r.item_id);
      const reasons = (r.reasons || []).map(reasonText).filter(Boolean);
      return el("tr", { class: shared ? "shared" : null, "data-item": r.item_id },
        el("td", { class: "rank" }, r.rank),
        el("td", { class: "movie" }, el("div", { class: "title" }, r.title || meta.title || `item ${r.item_id}`,
          el("span", { class: "id" }, ` #${r.item_id}`)), el("div", { class: "genres" }, genres)),
        el("td", { class: "score" }, el("div", { class: "bar" },
          el("span", { style: `width:${Math.max(2, 100 * Math.abs(r.score || 0) / maxScore).toFixed(1)}%` })),
          fmt(r.score, 3), r.fallback ? el("div", { class: "fallback" }, r.fallback.replace("_", " ")) : null),
        hasReasons ? el("td", { class: "reasons" }, reasons.length ? el("ul", {}, reasons.map((t) => el("li", {}, t))) : "") : null);
    })));
  target.replaceChildren(table);
}

// ----- runs -------------------------------------------------------------------------------------------------
async function loadRuns() {
  state.runs = await api("/runs");
  const names = state.runs.map((r) => r.run);
  const label = (r) => `${r.run}  (${r.model})`;
  for (const select of document.querySelectorAll(".run-select")) {
    const current = select.value;
    select.replaceChildren(...state.runs.map((r) => el("option", { value: r.run }, label(r))));
    const preferred = state.runs.find((r) => r.default) || state.runs[0];
    select.value = names.includes(current) ? current : preferred ? preferred.run : "";
  }
  if (state.runs.length > 1 && (!state.pickedB || $("cmp-b").value === $("cmp-a").value)) {
    // B: another run, one trained on A's dataset and split when there is one (the A/B test needs that)
    const a = state.runs.find((r) => r.run === $("cmp-a").value);
    const others = state.runs.filter((r) => r.run !== a.run);
    const twin = others.find((r) => r.split && r.dataset === a.dataset && r.split === a.split);
    $("cmp-b").value = (twin || others[0]).run;
  }
  // The map needs item vectors: prefer a factor model.
  const factor = state.runs.find((r) => /svd|als|bpr|hybrid/.test(r.model));
  if (factor) $("map-run").value = factor.run;
  const datasets = [...new Set(state.runs.map((r) => r.dataset))];
  $("ins-dataset").replaceChildren(...datasets.map((d) => el("option", { value: d }, d)));
}

// ----- recommend ---------------------------------------------------------------------------------------------
async function recommend() {
  const target = $("rec-list");
  const run = $("rec-run").value, user = intField("rec-user");
  const current = ticket("recommend");
  busy(target);
  $("rec-note").textContent = "";
  try {
    const query = { run, user, n: intField("rec-n"), exclude_seen: $("rec-seen").checked };
    // the server answers "reasons": null where a run's explanations cannot be had: one request either way
    const rows = await api(`/recommend?${qs({ ...query, explain: true })}`);
    if (!current()) return;
    const fb = rows.length && rows[0].fallback;
    const note = fb === "popularity"
      ? `User ${user} is not in this run's training data: the popularity ranking.`
      : `Top ${rows.length} for user ${user} from ${run}.`;
    await renderList(target, run, rows, { current });
    if (current()) $("rec-note").textContent = note;
  } catch (e) { if (current()) showError(target, e); }
}

// ----- cold start -----------------------------------------------------------------------------------------------
function stars(item) {
  const current = state.rated.get(item.item_id);
  return el("span", { class: "stars" }, [1, 2, 3, 4, 5].map((v) => el("button", {
    type: "button", class: current >= v ? "star on" : "star", title: `${v} star${v > 1 ? "s" : ""}`,
    "data-item": item.item_id, "data-value": v,
    onclick: () => { state.rated.set(item.item_id, v); state.ratedMeta.set(item.item_id, item); renderRated(); renderPicks(state.lastPicks); },
  }, "★")));
}

function renderPicks(items) {
  state.lastPicks = items || [];
  const target = $("cs-results");
  if (!state.lastPicks.length) { target.replaceChildren(el("p", { class: "hint" }, "no match")); return; }
  target.replaceChildren(...state.lastPicks.map((it) => el("div", { class: "pick" },
    el("span", { class: "title" }, it.title || `item ${it.item_id}`, el("span", { class: "id" }, ` #${it.item_id}`)),
    stars(it))));
}

function renderRated() {
  const target = $("cs-rated");
  if (!state.rated.size) { target.replaceChildren(el("span", { class: "hint" }, "none yet")); return; }
  target.replaceChildren(...[...state.rated.entries()].map(([id, v]) => {
    const meta = state.ratedMeta.get(id) || {};
    return el("span", { class: "chip" }, `${meta.title || "item " + id} `, el("b", {}, "★".repeat(v)),
      el("button", { type: "button", title: "remove", onclick: () => { state.rated.delete(id); renderRated(); renderPicks(state.lastPicks); } }, "×"));
  }));
}

async function searchItems() {
  const run = $("cs-run").value;
  const q = $("cs-query").value.trim();
  const current = ticket("search");
  try {
    if (!q) {  // the most popular movies: what an unknown visitor is recommended
      const rows = await api(`/recommend?${qs({ run, user: -1, n: 12 })}`);
      const info = await itemInfo(run, rows.map((r) => r.item_id));
      if (current()) renderPicks(rows.map((r) => Object.assign({ title: r.title }, info(r.item_id))));
    } else {
      const found = await api(`/items?${qs({ run, q, limit: 12 })}`);
      if (current()) renderPicks(found);
    }
  } catch (e) { if (current()) showError($("cs-results"), e); }
}

async function coldStart() {
  const run = $("cs-run").value;
  const target = $("cs-list");
  const current = ticket("coldstart");
  busy(target);
  try {
    if (!state.rated.size) {
      const rows = await api(`/recommend?${qs({ run, user: -1, n: 10 })}`);
      if (!current()) return;
      $("cs-title").textContent = `Most popular (no ratings yet), from ${run}`;
      await renderList(target, run, rows, { current });
      return;
    }
    const ratings = Object.fromEntries(state.rated);
    const rows = await api("/recommend", { json: { run, ratings, n: 10, explain: true } });
    if (!current()) return;
    $("cs-title").textContent = `For you, from your ${state.rated.size} rating${state.rated.size > 1 ? "s" : ""}, by ${run}`;
    await renderList(target, run, rows, { current });
  } catch (e) { if (current()) showError(target, e); }
}

// ----- compare + A/B -----------------------------------------------------------------------------------------------
async function compareLists() {
  const a = $("cmp-a").value, b = $("cmp-b").value, user = intField("cmp-user"), n = intField("cmp-n");
  const current = ticket("compare");
  $("cmp-a-title").textContent = `A: ${a}`;
  $("cmp-b-title").textContent = `B: ${b}`;
  $("cmp-note").textContent = "";
  busy($("cmp-a-list")); busy($("cmp-b-list"));
  try {
    const [ra, rb] = await Promise.all([api(`/recommend?${qs({ run: a, user, n })}`), api(`/recommend?${qs({ run: b, user, n })}`)]);
    if (!current()) return;
    const ia = new Set(ra.map((r) => r.item_id)), ib = new Set(rb.map((r) => r.item_id));
    const both = new Set([...ia].filter((i) => ib.has(i)));
    const unknown = [[a, ra], [b, rb]].filter(([, rows]) => rows.length && rows[0].fallback === "popularity").map(([run]) => run);
    $("cmp-note").textContent = `User ${user}: ${both.size} of ${ra.length} movies in both lists (highlighted).` + (unknown.length
      ? ` User ${user} is not in the training data of ${unknown.join(" and ")}: ${unknown.length > 1 ? "both lists are" : "that list is"} the popularity ranking.` : "");
    await Promise.all([renderList($("cmp-a-list"), a, ra, { highlight: both, current }), renderList($("cmp-b-list"), b, rb, { highlight: both, current })]);
  } catch (e) { if (current()) { showError($("cmp-a-list"), e); $("cmp-b-list").replaceChildren(); } }
}

function niceTicks(lo, hi, count = 5) {
  const span = hi - lo || Math.abs(hi) || 1;
  const step0 = span / count;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= count) || 10 * mag;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-12; t += step) out.push(Math.abs(t) < 1e-12 ? 0 : t);
  return out;
}

// The A/B chart as inline SVG: per-arm CTR with its t interval, and the lift (B - A) distribution with its interval.
function abChart(chart, alpha) {
  const W = 1040, H = 320, pad = { l: 64, r: 20, t: 34, b: 54 }, gap = 70;
  const pw = (W - pad.l - pad.r - gap) / 2, ph = H - pad.t - pad.b;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", id: "ab-chart", role: "img",
    "aria-label": "A/B test chart" });
  // left: arms
  const arms = chart.arms;
  const top = Math.max(...arms.map((a) => a.ci_high), 1e-9) * 1.15;
  const y = (v) => pad.t + ph - (v / top) * ph;
  const left = svg("g", { class: "arms" });
  left.append(svg("text", { x: pad.l, y: 18, class: "chart-title" }, `CTR per arm (${Math.round(100 * (1 - alpha))}% CI)`));
  for (const t of niceTicks(0, top, 5)) {
    left.append(svg("line", { x1: pad.l, x2: pad.l + pw, y1: y(t), y2: y(t), class: "grid" }));
    left.append(svg("text", { x: pad.l - 8, y: y(t) + 4, class: "tick", "text-anchor": "end" }, pct(t, top < 0.1 ? 1 : 0)));
  }
  const bw = pw / (arms.length * 2);
  arms.forEach((a, i) => {
    const cx = pad.l + pw * (i + 0.5) / arms.length;
    const colour = PALETTE[i % PALETTE.length];
    left.append(svg("rect", { x: cx - bw / 2, y: y(a.user_ctr_mean), width: bw, height: Math.max(0, y(0) - y(a.user_ctr_mean)),
      fill: colour, class: "arm-bar", "data-arm": a.arm }, svg("title", {}, `${a.label}: ${pct(a.user_ctr_mean, 2)} (${pct(a.ci_low, 2)} – ${pct(a.ci_high, 2)})`)));
    // a t interval of a few users' CTRs can reach below 0: the whisker stops at the axis (no cap there), not
    // across the run names under it; the tooltip keeps the interval as computed
    const low = Math.max(0, a.ci_low);
    left.append(svg("line", { x1: cx, x2: cx, y1: y(low), y2: y(a.ci_high), class: "whisker" }));
    for (const v of a.ci_low < 0 ? [a.ci_high] : [a.ci_low, a.ci_high]) {
      left.append(svg("line", { x1: cx - 10, x2: cx + 10, y1: y(v), y2: y(v), class: "whisker" }));
    }
    left.append(svg("text", { x: cx, y: y(a.ci_high) - 8, class: "value", "text-anchor": "middle" }, pct(a.user_ctr_mean, 1)));
    const name = a.label.length > 38 ? a.label.slice(0, 37) + "…" : a.label;
    left.append(svg("text", { x: cx, y: pad.t + ph + 20, class: "tick", "text-anchor": "middle" }, name));
    left.append(svg("text", { x: cx, y: pad.t + ph + 36, class: "tick muted", "text-anchor": "middle" }, `${fmt(a.users)} users`));
  });
  left.append(svg("line", { x1: pad.l, x2: pad.l + pw, y1: y(0), y2: y(0), class: "axis" }));
  root.append(left);
  // right: lift distribution
  const x0 = pad.l + pw + gap;
  const right = svg("g", { class: "lift" });
  const ci = chart.lift_ci;
  right.append(svg("text", { x: x0, y: 18, class: "chart-title" }, `Lift in per-user CTR (B − A), ${ci.source}`));
  const lift = chart.lift;
  const hist = lift.length && lift[0].resamples !== undefined;
  const xs = hist ? lift.flatMap((r) => [r.lift_low, r.lift_high]) : lift.map((r) => r.lift);
  let lo = Math.min(...xs, ci.ci_low ?? 0, 0), hi = Math.max(...xs, ci.ci_high ?? 0, 0);
  const margin = (hi - lo) * 0.05 || 0.01;
  lo -= margin; hi += margin;
  const ys = hist ? lift.map((r) => r.resamples) : lift.map((r) => r.density);
  const ytop = Math.max(...ys, 1e-12) * 1.1;
  const X = (v) => x0 + ((v - lo) / (hi - lo)) * pw;
  const Y = (v) => pad.t + ph - (v / ytop) * ph;
  for (const t of niceTicks(lo, hi, 6)) {
    right.append(svg("line", { x1: X(t), x2: X(t), y1: pad.t, y2: pad.t + ph, class: "grid" }));
    right.append(svg("text", { x: X(t), y: pad.t + ph + 20, class: "tick", "text-anchor": "middle" }, (t > 0 ? "+" : "") + (100 * t).toFixed(1) + " pp"));
  }
  if (hist) {
    for (const r of lift) {
      right.append(svg("rect", { x: X(r.lift_low), y: Y(r.resamples), width: Math.max(0.5, X(r.lift_high) - X(r.lift_low) - 0.5),
        height: Y(0) - Y(r.resamples), class: "hist" }));
    }
  } else {
    right.append(svg("path", { d: lift.map((r, i) => `${i ? "L" : "M"}${X(r.lift).toFixed(1)},${Y(r.density).toFixed(1)}`).join(""), class: "density" }));
  }
  right.append(svg("line", { x1: X(0), x2: X(0), y1: pad.t, y2: pad.t + ph, class: "zero" }));
  for (const v of [ci.ci_low, ci.ci_high]) {
    if (v === null || v === undefined || !isFinite(v)) continue;
    right.append(svg("line", { x1: X(v), x2: X(v), y1: pad.t, y2: pad.t + ph, class: "ci-line" }));
  }
  right.append(svg("line", { x1: x0, x2: x0 + pw, y1: Y(0), y2: Y(0), class: "axis" }));
  right.append(svg("text", { x: x0 + pw / 2, y: H - 8, class: "tick muted", "text-anchor": "middle" },
    hist ? "bootstrap resamples per bin; dashed: interval, solid: no difference" : "normal approximation; dashed: interval"));
  root.append(right);
  return root;
}

async function runAbTest() {
  const target = $("ab-result");
  const a = $("cmp-a").value, b = $("cmp-b").value;
  const current = ticket("abtest");
  if (a === b) { showError(target, new Error("pick two different runs")); return; }
  busy(target, "simulating the experiment…");
  try {
    const r = await api(`/abtest?${qs({ run_a: a, run_b: b, users: intField("ab-users"), k: intField("ab-k"), click_model: $("ab-click").value, bootstrap: intField("ab-boot") })}`);
    if (!current()) return;
    const t = r.tests[r.primary_test];
    const verdict = el("p", { class: r.winner.significant ? "verdict win" : "verdict" }, r.winner.message);
    const arms = el("table", { class: "small" },
      el("thead", {}, el("tr", {}, ["arm", "run", "users", "impressions", "clicks", "per-user CTR"].map((h, i) => el("th", { class: i < 2 ? "text" : null }, h)))),
      el("tbody", {}, r.arms.map((x) => el("tr", {}, el("td", {}, x.arm), el("td", { class: "text" }, x.run), el("td", {}, fmt(x.users)),
        el("td", {}, fmt(x.impressions)), el("td", {}, fmt(x.clicks)), el("td", {}, pct(x.user_ctr_mean, 2))))));
    const facts = el("dl", { class: "facts" },
      el("dt", {}, "lift (B − A)"), el("dd", {}, `${(100 * t.diff).toFixed(2)} pp [${(100 * t.ci_low).toFixed(2)}, ${(100 * t.ci_high).toFixed(2)}]`),
      el("dt", {}, "relative lift"), el("dd", {}, pct(t.rel_lift, 1)),
      el("dt", {}, `p (${t.name})`), el("dd", {}, t.p_value.toPrecision(3)),
      r.tests.bootstrap ? [el("dt", {}, "P(B better)"), el("dd", {}, pct(r.tests.bootstrap.prob_b_better, 1))] : null,
      el("dt", {}, "sample ratio"), el("dd", {}, r.srm.mismatch ? `mismatch (p = ${r.srm.p_value.toPrecision(3)})` : `ok (B share ${pct(r.srm.observed_b_share, 1)})`));
    const warnings = (r.warnings || []).map((w) => el("p", { class: "warning" }, w));
    target.replaceChildren(verdict, el("div", { class: "columns ab-top" }, arms, facts), ...warnings, abChart(r.chart, r.settings.alpha),
      el("p", { class: "hint" }, `${fmt(r.settings.sampled_users)} users, k = ${r.settings.k}, ${(r.notes || []).join("; ")}, seed ${r.settings.seed}.`));
  } catch (e) { if (current()) showError(target, e); }
}

// ----- insights ---------------------------------------------------------------------------------------------------------
function smallTable(rows, columns, limit = 10) {
  return el("table", { class: "small" },
    el("thead", {}, el("tr", {}, columns.map(([c, label]) => el("th", { class: rows.length && typeof rows[0][c] === "string" ? "text" : null }, label)))),
    el("tbody", {}, rows.slice(0, limit).map((r) => el("tr", {}, columns.map(([c]) =>
      el("td", { class: typeof r[c] === "string" ? "text" : null }, typeof r[c] === "number" && !Number.isInteger(r[c]) ? fmt(r[c], 2) : fmt(r[c])))))));
}

async function loadFigure(holder, dataset, name) {
  try {
    const res = await api(`/figures/${encodeURIComponent(dataset)}/${encodeURIComponent(name)}.svg`, { raw: true });
    const url = URL.createObjectURL(await res.blob());
    holder.replaceChildren(el("img", { src: url, alt: name, class: "figure-img" }));
  } catch (e) { showError(holder, e); }
}

async function insights() {
  const dataset = $("ins-dataset").value;
  const target = $("ins-body");
  if (!dataset) return;
  const current = ticket("insights");
  busy(target, "computing insights…");
  try {
    const ins = await api(`/insights/${encodeURIComponent(dataset)}`);
    if (!current()) return;
    const s = ins.summary;
    const facts = el("dl", { class: "facts wide" },
      [["ratings", fmt(s.ratings)], ["users", fmt(s.users)], ["items", `${fmt(s.items)} (${fmt(s.rated_items)} rated)`],
        ["sparsity", pct(s.sparsity, 2)], ["mean rating", fmt(s.mean_rating, 2)], ["Gini (items / users)", `${fmt(s.gini_items, 3)} / ${fmt(s.gini_users, 3)}`],
        ["top 10% of items hold", pct(s.top_10pct_items_share)], ["period", s.first_rating ? `${s.first_rating} – ${s.last_rating}` : "–"]]
        .map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    const statements = ins.statements.length
      ? el("ul", { class: "statements" }, ins.statements.slice(0, 8).map((t) => el("li", {}, t))) : null;
    const tops = el("div", { class: "columns" },
      el("div", {}, el("h3", {}, "Most rated"), smallTable(ins.tables.top_items_by_count || [], [["title", "movie"], ["ratings", "ratings"], ["mean_rating", "mean"]])),
      el("div", {}, el("h3", {}, "Best rated (damped mean)"), smallTable(ins.tables.top_items_by_damped_mean || [], [["title", "movie"], ["ratings", "ratings"], ["damped_mean", "damped mean"]])));
    const figures = el("div", { class: "figures" }, ins.figures.map((f) => {
      const holder = el("div", { class: "figure-holder" }, el("p", { class: "hint busy" }, "drawing…"));
      loadFigure(holder, dataset, f.name);
      return el("figure", { "data-figure": f.name }, holder, el("figcaption", {}, f.caption));
    }));
    target.replaceChildren(...[el("h2", {}, dataset), facts, statements, tops, el("h2", {}, "Figures"), figures].filter(Boolean));
  } catch (e) { if (current()) showError(target, e); }
}

const MAP_NOTE = $("map-note").textContent;

// ----- latent map ----------------------------------------------------------------------------------------------------------
async function drawMap() {
  const run = $("map-run").value;
  const target = $("map-body");
  const projection = $("map-projection").value;
  const current = ticket("map");
  $("map-note").textContent = MAP_NOTE;  // the last map's description goes with it
  busy(target, projection === "pca" ? "projecting item vectors…" : `projecting item vectors (${projection}: this takes a while)…`);
  try {
    const m = await api(`/map?${qs({ run, projection })}`);
    if (!current()) return;
    const counts = new Map();
    for (const p of m.points) counts.set(p.genre || "unknown", (counts.get(p.genre || "unknown") || 0) + 1);
    const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 7).map(([g]) => g);
    const colour = (g) => (top.includes(g || "unknown") ? PALETTE[top.indexOf(g || "unknown")] : "#bbbbbb");
    const W = 1040, H = 560, pad = 40;
    const xs = m.points.map((p) => p.x), ys = m.points.map((p) => p.y);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const X = (v) => pad + ((v - x0) / (x1 - x0 || 1)) * (W - 2 * pad - 170);
    const Y = (v) => H - pad - ((v - y0) / (y1 - y0 || 1)) * (H - 2 * pad);
    const find = $("map-find").value.trim().toLowerCase();
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart map", id: "map-chart", role: "img", "aria-label": "item map" });
    root.append(svg("line", { x1: pad, x2: W - 170 - pad, y1: Y(0), y2: Y(0), class: "grid" }));
    root.append(svg("line", { x1: X(0), x2: X(0), y1: pad, y2: H - pad, class: "grid" }));
    const hits = [];
    // grey (other genres) first, so the coloured ones are drawn on top
    const ordered = [...m.points].sort((a, b) => (top.includes(a.genre || "unknown") ? 1 : 0) - (top.includes(b.genre || "unknown") ? 1 : 0));
    for (const p of ordered) {
      const hit = find && (p.title || "").toLowerCase().includes(find);
      if (hit) hits.push(p);
      root.append(svg("circle", { cx: X(p.x).toFixed(1), cy: Y(p.y).toFixed(1), r: hit ? 6 : 3.2, fill: colour(p.genre),
        class: hit ? "dot hit" : "dot", "data-item": p.item_id }, svg("title", {}, `${p.title || "item " + p.item_id} (${p.genre || "no genre"})`)));
    }
    for (const p of hits.slice(0, 12)) root.append(svg("text", { x: X(p.x) + 8, y: Y(p.y) + 4, class: "label" }, p.title));
    const lx = W - 160;
    top.forEach((g, i) => {
      root.append(svg("circle", { cx: lx, cy: pad + 10 + i * 22, r: 6, fill: PALETTE[i] }));
      root.append(svg("text", { x: lx + 14, y: pad + 14 + i * 22, class: "tick" }, `${g} (${counts.get(g)})`));
    });
    root.append(svg("circle", { cx: lx, cy: pad + 10 + top.length * 22, r: 6, fill: "#bbbbbb" }));
    root.append(svg("text", { x: lx + 14, y: pad + 14 + top.length * 22, class: "tick" }, "other first genres"));
    const ev = m.explained_variance;
    const [ax1, ax2] = ev ? [`PC 1 (${pct(ev[0])} of variance)`, `PC 2 (${pct(ev[1])})`] : m.axes;
    root.append(svg("text", { x: (W - 170) / 2, y: H - 10, class: "tick muted", "text-anchor": "middle" }, ax1));
    root.append(svg("text", { x: 14, y: H / 2, class: "tick muted", "text-anchor": "middle", transform: `rotate(-90 14 ${H / 2})` }, ax2));
    const how = { pca: "on the first two principal components of its item vectors", tsne: "on a t-SNE map of its item vectors (neighbourhoods kept, not distances)", umap: "on a UMAP map of its item vectors (neighbourhoods kept, not distances)" }[m.projection];
    const sep = m.genre_separation;
    const sil = sep ? ` Genre silhouette on this map ${fmt(sep.silhouette, 3)} (shuffled genres ${fmt(sep.shuffled, 3)}, ${fmt(sep.items)} movies).` : "";
    $("map-note").textContent = `${fmt(m.shown)} of ${fmt(m.items)} movies of ${m.run} (${m.model}) ${how}; colour: first genre.${sil} Hover a dot for its title.`;
    target.replaceChildren(root);
  } catch (e) { if (current()) showError(target, e); }
}

// ----- leaderboard ----------------------------------------------------------------------------------------------------------
async function leaderboard() {
  const target = $("lb-body");
  const current = ticket("leaderboard");
  busy(target);
  try {
    const board = await api(`/leaderboard?${qs({ metric: $("lb-metric").value, kind: $("lb-kind").value })}`);
    if (!current()) return;
    const sel = $("lb-metric"), kind = $("lb-kind").value;
    if (!board.rows.length) {  // keep the metric menu as it was: an empty filter is no reason to lose the choice
      target.replaceChildren(el("p", { class: "hint" }, kind
        ? `No ${kind} entry in the ledger has metrics${sel.value ? ` (${sel.value})` : ""}; pick “all” or another kind.`
        : "No ledger entry has metrics yet: run `recsys evaluate RUN`."));
      return;
    }
    sel.replaceChildren(...board.metrics.map((m) => el("option", { value: m }, m)));
    sel.value = board.metric;
    const others = board.metrics.filter((m) => m !== board.metric && /^(rmse|mae|ndcg@10|precision@10|recall@10|map@10)$/.test(m)).slice(0, 4);
    const table = el("table", { class: "small leaderboard" },
      el("thead", {}, el("tr", {}, ["#", "run", "model", "dataset", "split", "entry", `${board.metric} ${board.lower_is_better ? "↓" : "↑"}`, ...others, "when"].map((h, i) => el("th", { class: i >= 1 && i <= 5 || h === "when" ? "text" : null }, h)))),
      el("tbody", {}, board.rows.map((r, i) => el("tr", {},
        el("td", {}, i + 1), el("td", { class: "text" }, r.run || "–"), el("td", { class: "text" }, r.model || "–"),
        el("td", { class: "text" }, r.dataset || "–"), el("td", { class: "text" }, r.split || "–"), el("td", { class: "text" }, r.kind),
        el("td", { class: "best" }, fmt(r.metrics[board.metric], 4)), others.map((m) => el("td", {}, fmt(r.metrics[m], 4))),
        el("td", { class: "text muted" }, (r.created || "").replace("T", " ").slice(0, 16))))));
    target.replaceChildren(table);
  } catch (e) { if (current()) showError(target, e); }
}

// ----- tabs and start-up ------------------------------------------------------------------------------------------------------
const LOADERS = { recommend, coldstart: () => { searchItems(); coldStart(); }, compare: compareLists, insights, map: drawMap, leaderboard };
const loaded = new Set();

function showTab() {
  const tab = (location.hash || "#recommend").slice(1);
  const name = LOADERS[tab] ? tab : "recommend";
  for (const s of document.querySelectorAll(".panel")) s.hidden = s.id !== name;
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.tab === name);
  const nav = $("tabs"), active = nav.querySelector("a.active");  // on a phone the tabs scroll: show the current one
  if (active && nav.scrollWidth > nav.clientWidth) nav.scrollLeft = Math.max(0, active.offsetLeft - nav.offsetLeft - 12);
  if (!loaded.has(name) && state.runs.length) { loaded.add(name); LOADERS[name](); }
}

// Forms can be used before the run list has arrived: their actions wait for it (a run select is empty until then).
let runsLoaded;
const runsReady = new Promise((resolve) => { runsLoaded = resolve; });

function on(id, event, fn, { waitForRuns = true } = {}) {
  $(id).addEventListener(event, async (e) => {
    if (event === "submit") e.preventDefault();
    if (waitForRuns) await runsReady;
    fn();
  });
}

async function start() {
  try {
    await loadRuns();
  } catch (e) {
    if (e.status !== 401) showBanner(e.status ? `The API answered ${e.status}: ${e.message}` : e.message);
    return;
  }
  runsLoaded();
  showTab();
}

$("api-key").value = sessionStorage.getItem(KEY_STORE) || "";
on("key-form", "submit", () => {
  sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
  showBanner("");
  loaded.clear();
  start();
}, { waitForRuns: false });
on("rec-form", "submit", recommend);
on("cs-form", "submit", searchItems);
on("cs-go", "click", coldStart);
on("cs-clear", "click", () => { state.rated.clear(); renderRated(); renderPicks(state.lastPicks); coldStart(); });
on("cmp-form", "submit", compareLists);
// a run picked in a list's menu shows that run's list at once (not the last run's under the new name)
on("rec-run", "change", recommend);
on("cs-run", "change", () => { searchItems(); coldStart(); });
// the A/B result below names "A" and "B": a new pair makes it someone else's, so it goes
function runsChanged() {
  ticket("abtest");  // an A/B test still on its way is for the old pair: dropped
  if ($("ab-result").childNodes.length) $("ab-result").replaceChildren(el("p", { class: "hint" }, "The runs changed: run the A/B test again."));
  compareLists();
}
on("cmp-a", "change", runsChanged);
on("cmp-b", "change", () => { state.pickedB = true; runsChanged(); });
on("ab-form", "submit", runAbTest);
on("ins-form", "submit", insights);
on("map-form", "submit", drawMap);
on("lb-form", "submit", leaderboard);
on("lb-metric", "change", leaderboard);
on("lb-kind", "change", leaderboard);
let searchTimer = null;
$("cs-query").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => runsReady.then(searchItems), 200);
});
window.addEventListener("hashchange", showTab);
start();
