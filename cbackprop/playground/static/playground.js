// cbackprop playground: draws what the server computes; it computes nothing itself.
//
// Every number comes from the JSON API (lab.py, over the library's Network.trace,
// finite differences, gradcheck and fit with callbacks and health=True). The drawing
// is plain SVG and a canvas, written by hand in this one file: the package is
// installed from PyPI with no JavaScript build step and npm cannot be reached, and
// the few shapes drawn here (circles, lines, two polylines, a heat map) need no
// chart library.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const CLASS_COLORS = ["#2f6fd6", "#e07b00", "#2a9d4b", "#b3261e", "#7b4fc4", "#8c6d1f",
                      "#d6409f", "#4f5b66", "#17a2b8", "#a4b000"];

let state = null;        // the latest /api/state (or event)
let walk = null;         // the latest /api/walk
let stepIndex = 0;       // where the walk is
let walkVersion = -1;    // the state version the walk was fetched at
let fieldsVersion = -1;  // the state version the form fields were filled from
let drawPending = false;

// ---- numbers and SVG ------------------------------------------------------------

function fmt(v) {
  if (v === null || v === undefined) return "–";
  return Number(v).toPrecision(6);
}
function short(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return Number(v).toExponential(2);
  return Number(v).toFixed(4);
}
function paren(v) { return v < 0 ? "(" + fmt(v) + ")" : fmt(v); }
function el(tag, attrs, parent, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function sub(n) { return String(n).split("").map((d) => "₀₁₂₃₄₅₆₇₈₉"[d]).join(""); }
function sup(n) { return String(n).split("").map((d) => "⁰¹²³⁴⁵⁶⁷⁸⁹"[d]).join(""); }

// ---- talking to the server --------------------------------------------------------

function say(text, kind) {
  const m = $("message");
  m.textContent = text || "";
  m.className = text ? kind : "";
}

async function call(method, url, body) {
  const opts = { method: method, headers: {} };
  if (body instanceof Blob || body instanceof ArrayBuffer) {
    opts.body = body;
    opts.headers["Content-Type"] = "application/octet-stream";
  } else if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(url, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: "the server sent no JSON" }; }
  if (!r.ok) {
    say("Refused: " + (data && data.error ? data.error : r.status), "error");
    return null;
  }
  return data;
}

function accept(snapshot, message) {
  if (!snapshot) return false;
  say(message || "", "info");
  setState(snapshot, true);
  return true;
}

function setState(s, fillFields) {
  // A reply to a request may arrive after an event that is newer: keep the newest.
  if (state && s.version < state.version) return;
  state = s;
  if (fillFields || fieldsVersion < 0) fillForm();
  if (!s.running && s.version !== walkVersion) loadWalk();
  schedule();
}

async function loadWalk() {
  if (!state) return;
  const version = state.version;
  walkVersion = version;
  const ex = encodeURIComponent($("example").value.trim() || "lecture");
  const w = await call("GET", "/api/walk?example=" + ex);
  if (!w) return;
  const fresh = !walk || walk.sizes.join() !== w.sizes.join();
  walk = w;
  if (fresh) stepIndex = Math.min(stepIndex, steps().length - 1);
  schedule();
}

function fillForm() {
  const s = state;
  fieldsVersion = s.version;
  const data = $("data");
  clear(data);
  for (const name of s.data.choices) {
    const o = document.createElement("option");
    o.value = name; o.textContent = name;
    if (name === s.data.name || name.endsWith("/" + s.data.name)) o.selected = true;
    data.appendChild(o);
  }
  fillSelect($("output"), s.choices.outputs, s.spec.output);
  fillSelect($("optimizer"), s.choices.optimizers, s.settings.optimizer);
  $("hidden").value = s.spec.hidden.join(",");
  $("activations").value = s.spec.activations.join(",");
  $("seed").value = s.spec.seed;
  $("lr").value = s.settings.lr;
  $("momentum").value = s.settings.momentum;
  $("batch_size").value = s.settings.batch_size;
  $("epochs").value = s.settings.epochs;
}

function fillSelect(node, options, chosen) {
  clear(node);
  for (const name of options) {
    const o = document.createElement("option");
    o.value = name; o.textContent = name; o.selected = name === chosen;
    node.appendChild(o);
  }
}

function settingsBody() {
  return { optimizer: $("optimizer").value, lr: $("lr").value, momentum: $("momentum").value,
           batch_size: $("batch_size").value, epochs: $("epochs").value };
}

async function train(action) {
  if (action !== "pause") {
    const ok = await call("POST", "/api/settings", settingsBody());
    if (!ok) return;
  }
  const s = await call("POST", "/api/train", { action: action });
  if (s) { say("", ""); setState(s, false); }
}

// ---- the walk: forward, cost, backward, gradients, update ------------------------

function steps() {
  if (!walk) return [];
  const L = walk.layers.length;
  const out = [{ kind: "input" }];
  for (let l = 1; l <= L; l++) out.push({ kind: "forward", layer: l });
  out.push({ kind: "cost" });
  for (let l = L; l >= 1; l--) out.push({ kind: "backward", layer: l });
  out.push({ kind: "gradients" });
  out.push({ kind: "update" });
  return out;
}

function stepText(st) {
  const w = walk;
  const L = w.layers.length;
  if (st.kind === "input")
    return ["Input: a⁰ = x",
            `${w.example}: x = (${w.x.map(fmt).join(", ")}), target y = (${w.y.map(fmt).join(", ")}).`
            + " On the edges: the weights w. Next ▶ pushes x forward, layer by layer."];
  if (st.kind === "forward") {
    const l = st.layer;
    return [`Forward pass, layer ${l}: z${sup(l)} = a${sup(l - 1)}·W${sup(l)} + b${sup(l)}, `
            + `a${sup(l)} = σ(z${sup(l)})`,
            `Each unit sums its inputs a times its weights w (edges: blue w > 0, red w < 0, `
            + `width |w|). The number on each edge into layer ${l} is ∂z/∂w = a, the input `
            + `it carries.`];
  }
  if (st.kind === "cost")
    return [`Cost C = ${fmt(w.cost)}`,
            costFormula(w.loss) + `, from the output a${sup(L)} and the target y.`];
  if (st.kind === "backward") {
    const l = st.layer;
    if (l === L)
      return [`Backward pass, output layer ${l}: ∂C/∂z${sup(l)}`,
              w.loss === "cross_entropy" ? "Softmax with cross-entropy: ∂C/∂z = a − y."
                : "∂C/∂z = ∂C/∂a · σ'(z). Hover a unit to see its numbers."];
    return [`Backward pass, layer ${l}: ∂C/∂z = σ'(z)·Σ w·∂C/∂z′`,
            `Each unit gathers the ∂C/∂z′ of the layer after it, through the weights that `
            + `leave it, times its own σ'(z). Hover a unit to see the sum with its numbers.`];
  }
  if (st.kind === "gradients")
    return ["Gradients: ∂C/∂w = a·∂C/∂z for every weight",
            "On each edge: ∂C/∂w, a of the unit the weight leaves times ∂C/∂z of the unit it "
            + "enters. In the table, beside each, a "
            + `central finite difference (step ${w.fd_step}). gradcheck: largest relative `
            + `error ${w.gradcheck === null ? "–" : Number(w.gradcheck).toExponential(1)}.`];
  return [`Update: θ ← θ − η∇L with η = ${w.lr}`,
          `On each edge: the new w. Every weight moves against its gradient; on this `
          + `example the cost goes from `
          + `${fmt(w.cost)} to ${fmt(w.cost_after)}.`];
}

function costFormula(loss) {
  return { mse: "C = mean over the outputs of (a − y)²",
           cross_entropy: "C = −Σ y log a",
           huber: "C = mean over the outputs of huber(a − y)",
           binary_cross_entropy: "C = mean of −[y log a + (1 − y) log(1 − a)]" }[loss]
         || "C = " + loss;
}

function unitTooltip(l, j) {
  // The sum behind ∂C/∂z of unit j of layer l (1-based l), with the server's numbers.
  const w = walk, rec = w.layers[l - 1], L = w.layers.length;
  const d = rec.dC_dz[j];
  let text = `layer ${l}, unit ${j + 1}: z = ${fmt(rec.z[j])}, a = ${fmt(rec.a[j])}`;
  if (rec.dsigma) text += `, σ'(z) = ${fmt(rec.dsigma[j])}`;
  if (!shownUpTo("backward", l)) return text;
  if (l < L) {
    const next = w.layers[l];
    const terms = next.W[j].map((wk, k) => `${paren(wk)}·${paren(next.dC_dz[k])}`);
    text += `\n∂C/∂z = σ'(z)·[Σ w·∂C/∂z′] = ${fmt(rec.dsigma[j])}·[${terms.join(" + ")}]`
          + `\n      = ${fmt(rec.dsigma[j])}·${paren(rec.back_sum[j])} = ${fmt(d)}`;
  } else if (rec.dC_da) {
    text += `\n∂C/∂z = ∂C/∂a·σ'(z) = 2(a − y)/${rec.a.length}·σ'(z) = `
          + `${paren(rec.dC_da[j])}·${fmt(rec.dsigma[j])} = ${fmt(d)}`;
  } else if (rec.target) {
    text += `\n∂C/∂z = a − y = ${fmt(rec.a[j])} − ${fmt(rec.target[j])} = ${fmt(d)}`;
  } else {
    text += `\n∂C/∂z = ${fmt(d)}`;
  }
  return text;
}

function shownUpTo(kind, layer) {
  // Whether the walk has reached (kind, layer): forward l shows z, a up to l, …
  const all = steps();
  const target = all.findIndex((s) => s.kind === kind && (layer === undefined || s.layer === layer));
  return target >= 0 && stepIndex >= target;
}

// ---- drawing the network --------------------------------------------------------

function drawNetwork() {
  const svg = $("network");
  clear(svg);
  if (!state) return;
  const net = state.network;
  if (!net.unit_by_unit) { drawLayers(svg, net); return; }
  const sizes = net.sizes;
  const n = sizes.length;
  const big = Math.max(...sizes) > 6;   // numbers under the units only for small layers
  const top = big ? 46 : 50, bottom = big ? 16 : 72;
  // Room for three lines of numbers under each unit: taller for 5 or 6 units a layer.
  const W = 760, H = big ? 400 : Math.max(400, top + bottom + 95 * (Math.max(...sizes) - 1));
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const xs = sizes.map((_, l) => 80 + l * (W - 160) / Math.max(n - 1, 1));
  const r = big ? 9 : 20;
  const ys = sizes.map((m) => Array.from({ length: m }, (_, j) =>
    top + (H - top - bottom) * (m === 1 ? 0.5 : j / (m - 1)) * (m <= 3 ? 0.7 : 1)
    + (m <= 3 ? (H - top - bottom) * 0.15 : 0)));
  const st = steps()[stepIndex] || { kind: "none" };
  const haveWalk = walk && walk.sizes.join() === sizes.join();
  let wmax = 1e-12;
  for (const layer of net.layers) for (const row of layer.W) for (const v of row)
    wmax = Math.max(wmax, Math.abs(v));
  // layer names
  for (let l = 0; l < n; l++) {
    const name = l === 0 ? "input" : (l === n - 1 ? "output" : "hidden " + l);
    el("text", { x: xs[l], y: 13, "text-anchor": "middle", class: "layer-name" }, svg, name);
    if (l > 0) el("text", { x: xs[l], y: 27, "text-anchor": "middle", class: "layer-name" },
                  svg, net.layers[l - 1].activation);
  }
  // edges
  const labels = [];
  for (let l = 1; l < n; l++) {
    const Wl = net.layers[l - 1].W;
    for (let i = 0; i < sizes[l - 1]; i++) for (let j = 0; j < sizes[l]; j++) {
      const w = Wl[i][j];
      el("line", { x1: xs[l - 1] + r, y1: ys[l - 1][i], x2: xs[l] - r, y2: ys[l][j],
                   stroke: w >= 0 ? "#2f6fd6" : "#d0342c",
                   "stroke-opacity": 0.75, "stroke-width": 0.6 + 5.4 * Math.abs(w) / wmax,
                   class: "edge", "data-layer": l, "data-i": i, "data-j": j }, svg);
      if (!haveWalk || big) continue;
      let text = null;
      const rec = walk.layers[l - 1];
      // Numbers only: the step's title says what they are (∂z/∂w, ∂C/∂w, the new w).
      if (st.kind === "forward" && st.layer === l) text = fmt(rec.a_prev[i]);
      else if (st.kind === "gradients") text = fmt(rec.dC_dW[i][j]);
      else if (st.kind === "update") text = fmt(rec.W_new[i][j]);
      else if (st.kind === "input" || st.kind === "cost") text = fmt(w);
      if (text !== null) {
        // Labels of edges into unit j sit at the same fraction t along their edges, a
        // different t for each j, so that crossing edges do not put labels on each other.
        const t = sizes[l] === 1 ? 0.5 : 0.28 + 0.44 * j / (sizes[l] - 1);
        labels.push({ x: xs[l - 1] + r + t * (xs[l] - xs[l - 1] - 2 * r),
                      y: ys[l - 1][i] + t * (ys[l][j] - ys[l - 1][i]) - 4,
                      text: text, l: l, i: i, j: j });
      }
    }
  }
  for (const lab of labels)
    el("text", { x: lab.x, y: lab.y, "text-anchor": "middle", class: "edge-label",
                 "data-layer": lab.l, "data-i": lab.i, "data-j": lab.j }, svg, lab.text);
  // units
  for (let l = 0; l < n; l++) for (let j = 0; j < sizes[l]; j++) {
    const g = el("g", { class: "unit", "data-layer": l, "data-unit": j }, svg);
    const x = xs[l], y = ys[l][j];
    let fill = "#f7f9fb";
    const rec = haveWalk && l > 0 ? walk.layers[l - 1] : null;
    if (big && rec) {
      // Too small for numbers: the colour shows ∂C/∂z once the backward pass has reached
      // the layer, a once the forward pass has (blue < 0 < red, each layer on its own scale).
      const values = shownUpTo("backward", l) ? rec.dC_dz : (shownUpTo("forward", l) ? rec.a
                                                                                     : null);
      if (values) {
        const m = Math.max(...values.map(Math.abs), 1e-300);
        fill = diverging(0.5 + 0.5 * values[j] / m, 1);
      }
    }
    el("circle", { cx: x, cy: y, r: r, fill: fill, stroke: "#34425a", "stroke-width": 1.5 }, g);
    if (!big) el("text", { x: x, y: y + 4, "text-anchor": "middle", class: "unit-label" }, g,
                 l === 0 ? "x" + sub(j + 1) : (l === n - 1 ? "o" : "h") + sub(j + 1));
    const lines = [];
    if (haveWalk && l === 0) lines.push(["val-a", "a = " + fmt(walk.x[j])]);
    if (rec && shownUpTo("forward", l)) {
      lines.push(["val-z", "z = " + fmt(rec.z[j])]);
      lines.push(["val-a", "a = " + fmt(rec.a[j])]);
    }
    if (rec && shownUpTo("backward", l)) lines.push(["val-dcdz", "∂C/∂z = " + fmt(rec.dC_dz[j])]);
    if (!big) lines.forEach(([cls, text], k) => {
      el("text", { x: x, y: y + r + 15 + 15 * k, "text-anchor": "middle",
                   class: "unit-value " + cls }, g, text);
    });
    if (rec || (haveWalk && l === 0)) {
      g.addEventListener("mouseenter", (ev) => showTip(ev, l === 0
        ? `input ${j + 1}: a = x = ${fmt(walk.x[j])}` : unitTooltip(l, j)));
      g.addEventListener("mousemove", moveTip);
      g.addEventListener("mouseleave", hideTip);
    }
  }
}

function drawLayers(svg, net) {
  // Per layer, for networks too wide to draw unit by unit.
  const sizes = net.sizes, n = sizes.length, W = 760, H = 400;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const xs = sizes.map((_, l) => 70 + l * (W - 160) / Math.max(n - 1, 1));
  const maxm = Math.max(...sizes);
  const hs = sizes.map((m) => 60 + 260 * Math.sqrt(m / maxm));
  const norms = net.layers.map((x) => x.w_norm);
  const nmax = Math.max(...norms, 1e-12);
  for (let l = 1; l < n; l++) {
    const layer = net.layers[l - 1];
    el("path", { d: `M${xs[l - 1] + 22},${H / 2 - hs[l - 1] / 2} L${xs[l] - 22},${H / 2 - hs[l] / 2}`
                  + ` L${xs[l] - 22},${H / 2 + hs[l] / 2} L${xs[l - 1] + 22},${H / 2 + hs[l - 1] / 2} Z`,
                 fill: layer.w_mean >= 0 ? "#2f6fd6" : "#d0342c",
                 "fill-opacity": 0.12 + 0.5 * layer.w_norm / nmax }, svg);
    el("text", { x: (xs[l - 1] + xs[l]) / 2, y: H / 2 + 4, "text-anchor": "middle",
                 class: "edge-label" }, svg, `‖W${sup(l)}‖ = ${short(layer.w_norm)}`);
  }
  for (let l = 0; l < n; l++) {
    el("rect", { x: xs[l] - 22, y: H / 2 - hs[l] / 2, width: 44, height: hs[l], rx: 6,
                 fill: "#f7f9fb", stroke: "#34425a", "stroke-width": 1.5,
                 class: "layer-box", "data-layer": l }, svg);
    const name = l === 0 ? "input" : (l === n - 1 ? "output" : "hidden " + l);
    el("text", { x: xs[l], y: H / 2 - hs[l] / 2 - 8, "text-anchor": "middle",
                 class: "layer-name" }, svg, `${name}: ${sizes[l]}`);
    if (l > 0) el("text", { x: xs[l], y: H / 2 + hs[l] / 2 + 16, "text-anchor": "middle",
                            class: "layer-name" }, svg, net.layers[l - 1].activation);
  }
}

// ---- the table of parameters (gradients and update steps) -----------------------

function drawTable() {
  const box = $("param-table");
  const st = steps()[stepIndex];
  if (!walk || !st || (st.kind !== "gradients" && st.kind !== "update")) {
    box.innerHTML = "<p class='hint'>The table of every weight's ∂C/∂w (beside a finite "
      + "difference) and its update appears at the last two steps of the walk.</p>";
    return;
  }
  const rows = [];
  const limit = 200;
  walk.layers.forEach((rec, li) => {
    const l = li + 1;
    rec.dC_dW.forEach((row, i) => row.forEach((g, j) => rows.push(
      { name: `w${l}[${i + 1}→${j + 1}]`, l: l, i: i, j: j, kind: "w", a: rec.a_prev[i],
        d: rec.dC_dz[j], g: g, fd: rec.fd_W ? rec.fd_W[i][j] : null, w: rec.W[i][j],
        wn: rec.W_new[i][j] })));
    rec.dC_db.forEach((g, j) => rows.push(
      { name: `b${l}[${j + 1}]`, l: l, i: -1, j: j, kind: "b", a: null, d: rec.dC_dz[j], g: g,
        fd: rec.fd_b ? rec.fd_b[j] : null, w: rec.b[j], wn: rec.b_new[j] }));
  });
  let html = "<table id='params'><tr><th class='name'>parameter</th><th>a</th><th>∂C/∂z</th>"
    + "<th>∂C/∂w = a·∂C/∂z</th><th>finite diff.</th><th>w</th><th>w − η·∂C/∂w</th></tr>";
  for (const p of rows.slice(0, limit)) {
    html += `<tr data-param="${p.kind}" data-layer="${p.l}" data-i="${p.i}" data-j="${p.j}">`
      + `<td class="name">${p.name}</td><td class="a">${p.a === null ? "" : fmt(p.a)}</td>`
      + `<td class="dcdz">${fmt(p.d)}</td><td class="dcdw">${fmt(p.g)}</td>`
      + `<td class="fd">${fmt(p.fd)}</td><td class="w">${fmt(p.w)}</td>`
      + `<td class="wnew">${fmt(p.wn)}</td></tr>`;
  }
  html += "</table>";
  if (rows.length > limit) html += `<p>… and ${rows.length - limit} more parameters.</p>`;
  box.innerHTML = html;
}

// ---- training figures -----------------------------------------------------------

function drawStatus() {
  const s = state, c = s.curve, last = c.loss.length - 1;
  const loss = last >= 0 ? c.loss[last] : null, val = last >= 0 ? c.val_loss[last] : null;
  const d = s.data;
  $("status").innerHTML = `${s.running ? "<b>training…</b>" : "idle"} · epoch `
    + `<b id="epochs-done">${Number(s.epochs_done).toFixed(s.epochs_done % 1 ? 3 : 0)}</b>`
    + ` · loss <b id="loss-now">${loss === null ? "–" : fmt(loss)}</b>`
    + ` · validation <b id="val-loss-now">${val === null ? "–" : fmt(val)}</b><br>`
    + `${d.name}: ${d.rows} training rows, ${d.val_rows} validation, ${d.n_inputs} inputs, `
    + `${d.kind === "regression" ? "real targets" : d.n_outputs + " classes"} · network `
    + `${s.network.sizes.join("-")} (${s.network.n_params} parameters, ${s.network.loss}, `
    + `${s.network.dtype})`
    + (s.notice ? `<br><span class="warn">${s.notice}</span>` : "");
}

// A chart's SVG, cleared, with its plotting area (W×H, margins L, R, T, B) framed.
function chartArea(id, W, H, L, R, T, B) {
  const svg = $(id);
  clear(svg);
  el("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fbfcfd",
               stroke: "#ccd" }, svg);
  return svg;
}

function drawCurve() {
  const c = state.curve;
  const W = 330, H = 210, L = 46, R = 8, T = 8, B = 26;
  const svg = chartArea("curve", W, H, L, R, T, B);
  const xs = c.epoch;
  const vals = c.loss.concat(c.val_loss).filter((v) => v !== null && isFinite(v));
  if (!xs.length || !vals.length) {
    el("text", { x: (W + L) / 2, y: H / 2, "text-anchor": "middle", class: "layer-name" },
       svg, "no training yet");
    return;
  }
  const x0 = 0, x1 = Math.max(xs[xs.length - 1], 1e-9);
  const y0 = 0, y1 = Math.max(...vals) * 1.05;
  const px = (x) => L + (W - L - R) * (x - x0) / (x1 - x0);
  const py = (y) => T + (H - T - B) * (1 - (y - y0) / (y1 - y0 || 1));
  for (let k = 0; k <= 4; k++) {
    const y = y0 + (y1 - y0) * k / 4;
    el("line", { x1: L, x2: W - R, y1: py(y), y2: py(y), stroke: "#e3e7ec" }, svg);
    el("text", { x: L - 4, y: py(y) + 4, "text-anchor": "end", "font-size": 11 }, svg, short(y));
  }
  el("text", { x: L, y: H - 8, "font-size": 11 }, svg, "0");
  el("text", { x: W - R, y: H - 8, "text-anchor": "end", "font-size": 11 }, svg,
     "epoch " + (x1 % 1 ? x1.toFixed(2) : x1));
  for (const [key, color] of [["loss", "#2f6fd6"], ["val_loss", "#e07b00"]]) {
    const pts = [];
    xs.forEach((x, i) => { const v = c[key][i]; if (v !== null) pts.push(`${px(x)},${py(v)}`); });
    if (pts.length === 1) {
      const [x, y] = pts[0].split(",");
      el("circle", { cx: x, cy: y, r: 3, fill: color }, svg);
    }
    el("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2,
                     class: "curve-" + key }, svg);
  }
}

function drawSurface() {
  const canvas = $("surface"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const s = state.surface;
  if (!s) {
    $("surface-title").textContent = "Decision surface (2-D data only)";
    ctx.fillStyle = "#5a6880"; ctx.font = "13px system-ui"; ctx.textAlign = "center";
    ctx.fillText(`${state.data.n_inputs} inputs: no plane to draw`, 105, 105);
    return;
  }
  $("surface-title").textContent = s.kind === "regression"
    ? "Output over the plane" : "Decision surface, with the points";
  const n = s.n, cw = canvas.width / n, ch = canvas.height / n;
  const [lo, hi] = s.range;
  const k = state.data.n_outputs;
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {
    const idx = r * n + c;
    let color;
    if (s.kind === "regression") color = diverging((s.value[idx] - lo) / (hi - lo || 1), 1);
    else {
      const conf = Math.max(0, (s.confidence[idx] - 1 / k) / (1 - 1 / k));
      color = withAlpha(CLASS_COLORS[s["class"][idx] % 10], 0.15 + 0.55 * conf);
    }
    ctx.fillStyle = color;
    // row 0 of the grid is the lowest y: draw it at the bottom
    ctx.fillRect(Math.floor(c * cw), Math.floor(canvas.height - (r + 1) * ch),
                 Math.ceil(cw) + 1, Math.ceil(ch) + 1);
  }
  const [x0, x1, y0, y1] = s.extent;
  for (const [x, y, label] of s.points) {
    ctx.beginPath();
    ctx.arc((x - x0) / (x1 - x0) * canvas.width, (1 - (y - y0) / (y1 - y0)) * canvas.height,
            2.6, 0, 2 * Math.PI);
    ctx.fillStyle = s.kind === "regression" ? diverging((label - lo) / (hi - lo || 1), 1)
      : CLASS_COLORS[label % 10];
    ctx.fill();
    ctx.lineWidth = 0.8; ctx.strokeStyle = "#fff"; ctx.stroke();
  }
}

function withAlpha(hex, a) {
  // The colour a over white, opaque (so neighbouring cells do not darken their seams).
  const v = parseInt(hex.slice(1), 16);
  const mix = (c) => Math.round(a * c + (1 - a) * 255);
  return `rgb(${mix(v >> 16)},${mix((v >> 8) & 255)},${mix(v & 255)})`;
}
function diverging(t, a) {
  t = Math.min(1, Math.max(0, t));
  const lo = [47, 111, 214], mid = [247, 247, 247], hi = [208, 52, 44];
  const [p, q, u] = t < 0.5 ? [lo, mid, t * 2] : [mid, hi, t * 2 - 1];
  const c = p.map((v, i) => Math.round(v + (q[i] - v) * u));
  return `rgba(${c[0]},${c[1]},${c[2]},${a})`;
}

function drawHealth() {
  const g = state.grad_norms;
  const W = 680, H = 120, L = 50, R = 120, T = 6, B = 16;
  const svg = chartArea("health-chart", W, H, L, R, T, B);
  const rows = state.health;
  if (g.length) {
    const flat = g.flat().filter((v) => v > 0);
    let lo = Math.log10(Math.min(...flat)), hi = Math.log10(Math.max(...flat));
    if (hi - lo < 1) { lo -= 0.5; hi += 0.5; }
    lo = Math.floor(lo); hi = Math.ceil(hi);
    const px = (i) => L + (W - L - R) * (g.length === 1 ? 0.5 : i / (g.length - 1));
    const py = (v) => T + (H - T - B) * (1 - (Math.log10(Math.max(v, 1e-300)) - lo) / (hi - lo));
    for (let e = lo; e <= hi; e++) {
      el("text", { x: L - 4, y: py(10 ** e) + 4, "text-anchor": "end", "font-size": 10 }, svg,
         "1e" + e);
    }
    const layers = g[0].length;
    for (let l = 0; l < layers; l++) {
      const color = CLASS_COLORS[l % 10];
      const pts = g.map((row, i) => `${px(i)},${py(row[l])}`).join(" ");
      el("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2 }, svg);
      el("text", { x: W - R + 6, y: T + 14 + 15 * l, fill: color, "font-size": 12 }, svg,
         `layer ${l + 1} (${rows[l] ? rows[l].activation : ""})`);
    }
  } else {
    el("text", { x: (W - R + L) / 2, y: H / 2, "text-anchor": "middle", class: "layer-name" },
       svg, "train an epoch to measure each layer's health");
  }
  const pct = (v) => (v === null || v === undefined) ? "–" : Math.round(v * 100) + " %";
  let html = "";
  if (rows.length) {
    html = "<table id='health-table'><tr><th class='name'>layer</th><th>units</th>"
      + "<th class='name'>activation</th><th>‖∂C/∂θ‖</th><th>‖Δθ‖/‖θ‖</th><th>dead</th>"
      + "<th>saturated</th></tr>";
    for (const r of rows)
      html += `<tr><td class="name">${r.layer + 1}</td><td>${r.units}</td>`
        + `<td class="name">${r.activation}</td><td>${short(r.grad_norm)}</td>`
        + `<td>${short(r.update_ratio)}</td><td>${pct(r.dead_fraction)}</td>`
        + `<td>${pct(r.saturated_fraction)}</td></tr>`;
    html += "</table>";
  }
  for (const w of state.health_warnings) html += `<p class="warn">${escapeHtml(w)}</p>`;
  $("health").innerHTML = html;
}

function escapeHtml(t) {
  return String(t).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                  '"': "&quot;" })[c]);
}

// ---- tooltip --------------------------------------------------------------------

function showTip(ev, text) {
  const t = $("tooltip");
  t.textContent = "";
  for (const line of text.split("\n")) {
    const d = document.createElement("div");
    d.textContent = line;
    t.appendChild(d);
  }
  t.style.display = "block";
  moveTip(ev);
}
function moveTip(ev) {
  const t = $("tooltip");
  t.style.left = Math.min(ev.clientX + 14, window.innerWidth - t.offsetWidth - 8) + "px";
  t.style.top = (ev.clientY + 14) + "px";
}
function hideTip() { $("tooltip").style.display = "none"; }

// ---- putting it together --------------------------------------------------------

function schedule() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; draw(); });
}

function draw() {
  if (!state) return;
  const all = steps();
  if (all.length) {
    stepIndex = Math.max(0, Math.min(stepIndex, all.length - 1));
    const [title, text] = stepText(all[stepIndex]);
    $("step-title").textContent = `Step ${stepIndex + 1}/${all.length}: ${title}`;
    $("step-text").textContent = text;
  }
  $("back").disabled = stepIndex <= 0;
  $("next").disabled = stepIndex >= all.length - 1;
  drawNetwork();
  drawTable();
  drawStatus();
  drawCurve();
  drawSurface();
  drawHealth();
}

function wire() {
  // Drawn at once (not on the next frame), so the page never shows a step behind.
  $("next").onclick = () => { stepIndex++; draw(); };
  $("back").onclick = () => { stepIndex--; draw(); };
  $("example").onchange = () => { stepIndex = 0; loadWalk(); };
  $("build").onclick = async () => {
    const s = await call("POST", "/api/network", {
      hidden: $("hidden").value, activations: $("activations").value,
      output: $("output").value, seed: $("seed").value });
    if (accept(s, "Built a " + (s ? s.network.sizes.join("-") : "") + " network.")) {
      stepIndex = 0; loadWalk();
    }
  };
  $("data").onchange = async () => {
    const s = await call("POST", "/api/data", { name: $("data").value });
    if (accept(s, s ? `Data set ${s.data.name}.` : "")) { stepIndex = 0; loadWalk(); }
    else if (state) fillForm();
  };
  $("start").onclick = () => train("start");
  $("pause").onclick = () => train("pause");
  $("step").onclick = () => train("step");
  $("epoch").onclick = () => train("epoch");
  $("load").onchange = async () => {
    const file = $("load").files[0];
    if (!file) return;
    const s = await call("POST", "/api/model", file);
    if (accept(s, `Opened ${file.name}.`)) { stepIndex = 0; loadWalk(); }
    $("load").value = "";
  };
  window.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
    if (ev.key === "ArrowRight") $("next").click();
    if (ev.key === "ArrowLeft") $("back").click();
  });
}

async function start() {
  wire();
  const s = await call("GET", "/api/state");
  if (s) setState(s, true);
  // The server sends its latest state at most ten times a second, however fast it trains.
  const events = new EventSource("/api/events");
  events.onmessage = (ev) => setState(JSON.parse(ev.data), false);
}

start();
