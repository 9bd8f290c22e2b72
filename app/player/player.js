// The stepper's player (app/player.py documents the protocol). Everything a step changes is drawn here,
// in the browser, from frames the server sent ahead: playing keeps its speed on the browser's clock and a
// key acts at once, whatever the server is doing. One player state per component survives re-renders.
const PLAYERS = (globalThis.__nestedPlayers = globalThis.__nestedPlayers || {});
const ROW = 48; // tokens per strip row (as the Plotly strip)
const REPORT_MS = 300; // a resting position is told to the server after this long without a move
const RETRY_MS = 4000; // a window asked for and not received is asked for again
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

function lerpColour(stops, t) {
  t = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(t));
  const f = t - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// 0..254 bytes on the symmetric-log scale: blue (negative) - white (0) - red (positive), as RdBu reversed
const DIVERGING = [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]];
const DIV_LUT = Array.from({ length: 256 }, (_, q) => {
  const c = lerpColour(DIVERGING, Math.min(q, 254) / 254).match(/\d+/g).map(Number);
  return c;
});

function symexp(q, zmax) { // the byte back to a value (the server's quantize, inverted)
  const top = Math.sign(zmax) * Math.log10(1 + Math.abs(zmax) / 1e-6);
  const s = ((q - 127) / 127) * top;
  return Math.sign(s) * (Math.pow(10, Math.abs(s)) - 1) * 1e-6;
}

function el(tag, attrs = {}, parent = null) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  if (parent) parent.appendChild(e);
  return e;
}

function newPlayer() {
  return {
    sig: null, n: 0, names: {}, speeds: [1, 2, 5, 10, 30],
    scalars: new Map(), frames: new Map(), // token -> row / frame (null: no matrices kept for it)
    index: 0, playing: false, speed: 5, seq: -1,
    born: Math.random().toString(36).slice(2, 8), // report ids stay unique across page reloads
    t0: 0, i0: 0, pending: null, nonce: 0, reportTimer: null, raf: null,
    stats: { played: 0, playSeconds: 0, stalls: 0 }, // read by the browser tests and the bench
  };
}

function build(p, root) {
  root.innerHTML = "";
  const bar = el("div", { class: "nlp-bar" }, root);
  p.btnBack = el("button", { class: "nlp-btn", title: "Back one token (←)", "data-testid": "nlp-back", text: "◀ Back" }, bar);
  p.btnPlay = el("button", { class: "nlp-btn nlp-primary", title: "Play / pause (space)", "data-testid": "nlp-play", text: "▶ Play" }, bar);
  p.btnStep = el("button", { class: "nlp-btn", title: "Step one token (→)", "data-testid": "nlp-step", text: "Step ▶" }, bar);
  p.scrub = el("input", { type: "range", min: "0", max: "0", value: "0", class: "nlp-scrub", "aria-label": "Token", "data-testid": "nlp-scrub" }, bar);
  p.pos = el("span", { class: "nlp-pos" }, bar);
  p.status = el("span", { class: "nlp-status", "data-testid": "nlp-status" }, bar);
  p.model = el("div", { class: "nlp-model" }, root);
  p.head = el("div", { class: "nlp-head", "data-testid": "nlp-head" }, root);
  p.pred = el("div", { class: "nlp-pred" }, root);
  p.cmpLine = el("div", { class: "nlp-pred" }, root);
  p.strip = el("div", { class: "nlp-strip", "data-testid": "nlp-strip" }, root);
  p.stripLegend = el("div", { class: "nlp-caption" }, root);
  p.heats = el("div", { class: "nlp-heats" }, root);
  p.heatNow = heatPanel(p.heats, "nlp-heat-now");
  p.heatChange = heatPanel(p.heats, "nlp-heat-change");
  p.heatNote = el("div", { class: "nlp-caption" }, root);
  p.curves = el("div", { class: "nlp-curves", "data-testid": "nlp-curves" }, root);
  p.btnBack.onclick = () => move(p, -1);
  p.btnStep.onclick = () => move(p, +1);
  p.btnPlay.onclick = () => toggle(p);
  // dragging only shows what is here; the server hears of the position where the drag ends
  p.scrub.oninput = () => { if (p.playing) pause(p); p.index = Number(p.scrub.value); render(p); };
  p.scrub.onchange = () => jump(p, Number(p.scrub.value));
  p.root = root;
}

function heatPanel(parent, id) {
  const box = el("div", { class: "nlp-heat" }, parent);
  const title = el("div", { class: "nlp-heat-title" }, box);
  const canvas = el("canvas", { width: "32", height: "32", class: "nlp-canvas", "data-testid": id }, box);
  const legend = el("div", { class: "nlp-legend" }, box);
  const tip = el("div", { class: "nlp-tip" }, box);
  const panel = { box, title, canvas, legend, tip, frame: null, zmax: 1 };
  canvas.onmousemove = (ev) => {
    const f = panel.frame;
    if (!f) { tip.textContent = ""; return; }
    const r = canvas.getBoundingClientRect();
    const [h, w] = f.shape;
    const col = Math.min(w - 1, Math.floor(((ev.clientX - r.left) / r.width) * w));
    const row = Math.min(h - 1, Math.floor(((ev.clientY - r.top) / r.height) * h));
    const q = f.bytes[row * w + col];
    tip.textContent = `row ${row}, col ${col}: ≈ ${symexp(q, panel.zmax).toPrecision(3)}`;
  };
  canvas.onmouseleave = () => { tip.textContent = ""; };
  return panel;
}

function legendHtml(zmax) {
  // tick labels where the symmetric-log scale puts them (the bar spans -zmax .. zmax)
  const sl = (v) => Math.sign(v) * Math.log10(1 + Math.abs(v) / 1e-6);
  const top = sl(zmax);
  const ticks = [1e-5, 1e-3, 1e-1, 1, 10].filter((v) => v <= zmax * 1.0001);
  const vals = [...ticks.slice().reverse().map((v) => -v), 0, ...ticks];
  const spans = vals.map((v) => {
    const left = 50 + (50 * sl(v)) / top;
    const shift = left > 97 ? "-100%" : left < 3 ? "0" : "-50%";
    return `<span style="left:${left.toFixed(1)}%;transform:translateX(${shift})">${v === 0 ? "0" : v.toString().replace("-", "−")}</span>`;
  });
  return `<span class="nlp-grad"></span><span class="nlp-ticks">${spans.join("")}</span>`;
}

function decodeFrame(f) {
  if (!f) return null;
  const raw = (s) => (s ? Uint8Array.from(atob(s), (c) => c.charCodeAt(0)) : null);
  return { shape: f.shape, m: raw(f.m), d: raw(f.d), max: f.max };
}

function absorb(p, data) {
  if (data.sig !== p.sig) { p.sig = data.sig; p.scalars.clear(); p.frames.clear(); p.pending = null; }
  p.n = data.n; p.names = data.names || {}; p.speeds = data.speeds || p.speeds; p.window = data.window || 32;
  (data.scalars || []).forEach((s, k) => p.scalars.set(data.scalars_from + k, s));
  (data.frames || []).forEach((f, k) => p.frames.set(data.frames_from + k, decodeFrame(f)));
  if (p.pending && p.frames.has(p.pending.start)) p.pending = null;
  p.progress = data.progress || null; // the server streamed a bounded piece toward a far window
  if (p.progress) { p.pending = null; setTimeout(() => prefetch(p), 0); } // ask again (unless moved away)
  const cmd = data.cmd || {};
  if (cmd.seq !== undefined && cmd.seq > p.seq) {
    p.seq = cmd.seq;
    if (cmd.speed) p.speed = cmd.speed;
    if (cmd.index !== undefined) p.index = Math.max(0, Math.min(p.n - 1, cmd.index));
    if (cmd.playing !== undefined) p.playing = cmd.playing;
    p.t0 = performance.now(); p.i0 = p.index; // a new speed or position restarts the clock
  }
  p.index = Math.max(0, Math.min(Math.max(p.n - 1, 0), p.index));
}

function report(p, now = false) {
  clearTimeout(p.reportTimer);
  const send = () => {
    if (!p.send) return;
    p.rid = (p.rid || 0) + 1;
    p.send("view", { rid: `${p.born}-${p.rid}`, index: p.index, playing: p.playing, seq: p.seq,
      need: p.pending ? { start: p.pending.start, nonce: p.pending.nonce, windows: p.pending.windows } : null });
  };
  if (now) send(); else p.reportTimer = setTimeout(send, REPORT_MS);
}

function prefetch(p) {
  // the first token within the lookahead whose frame is missing: ask for its window (once, then retried)
  const ahead = Math.max(16, Math.ceil(p.speed * 3));
  for (let i = p.index; i < Math.min(p.n, p.index + ahead); i++) {
    if (!p.frames.has(i)) {
      const start = Math.floor(i / p.window) * p.window;
      const t = performance.now();
      if (!p.pending || p.pending.start !== start || t - p.pending.t > RETRY_MS) {
        const windows = p.playing ? Math.min(4, Math.max(1, Math.ceil(p.speed / 8))) : 1; // ~3 s of play a request
        p.pending = { start, nonce: ++p.nonce, t, windows };
        report(p, true);
      }
      return;
    }
  }
}

function move(p, delta) {
  if (p.playing) pause(p);
  jump(p, p.index + delta);
}

function jump(p, i) {
  i = Math.max(0, Math.min(p.n - 1, i));
  if (p.playing) { p.i0 = i; p.t0 = performance.now(); }
  p.index = i;
  render(p);
  prefetch(p);
  if (!p.playing) report(p);
}

function toggle(p) { if (p.playing) pause(p); else play(p); }

function play(p) {
  if (p.index >= p.n - 1) p.index = 0; // at the end, play starts over
  p.playing = true; p.t0 = performance.now(); p.i0 = p.index;
  p.stats = { played: 0, playSeconds: 0, stalls: 0, started: p.t0 };
  render(p);
  report(p, true);
}

function pause(p) {
  p.playing = false;
  render(p);
  report(p, true);
}

function tick(p, now) {
  if (p.playing) {
    const target = Math.min(p.n - 1, p.i0 + Math.floor(((now - p.t0) * p.speed) / 1000));
    if (target > p.index) {
      let i = p.index;
      while (i < target && p.frames.has(i + 1)) i++;
      if (i < target) { // the window is not here yet: hold, and restart the clock when it comes
        if (!p.waiting) p.stats.stalls++; // one stall per wait, however many frames it lasts
        p.waiting = true; p.i0 = i; p.t0 = now;
      } else p.waiting = false;
      if (i !== p.index) { p.stats.played += i - p.index; p.index = i; render(p); }
    }
    if (p.stats.started === undefined) p.stats.started = now;
    p.stats.playSeconds = (now - p.stats.started) / 1000;
    if (p.index >= p.n - 1) pause(p);
    prefetch(p);
  }
  p.raf = requestAnimationFrame((t) => tick(p, t));
}

function fmt(x, digits = 3) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); }

function render(p) {
  if (!p.root) return;
  const i = p.index, s = p.scalars.get(i), f = p.frames.get(i);
  p.btnPlay.textContent = p.playing ? "❚❚ Pause" : "▶ Play";
  p.scrub.max = String(Math.max(0, p.n - 1));
  p.scrub.value = String(i);
  p.pos.textContent = `${i} / ${Math.max(0, p.n - 1)}`;
  const waiting = !p.frames.has(i) || !s;
  p.status.textContent = waiting && p.progress
    ? `streaming the text: ${p.progress.done.toLocaleString()} / ${p.progress.target.toLocaleString()} tokens (step elsewhere to stop)`
    : waiting ? "loading…" : p.playing ? `playing at ${p.speed} tokens/s` : "";
  p.root.dataset.index = String(i);
  p.root.dataset.playing = String(p.playing);
  p.root.dataset.played = String(p.stats.played);
  p.root.dataset.stalls = String(p.stats.stalls);
  p.model.textContent = p.names.main ? `${p.names.main}${p.names.frozen ? ` (frozen: ${p.names.frozen})` : ""}` : "";
  if (!s) { p.head.textContent = `Token ${i}: (loading)`; return; }
  p.head.innerHTML = "";
  el("span", { text: `Token ${i}: ` }, p.head);
  el("b", { text: `'${s.c}'` }, p.head);
  el("span", { text: ` — next-token loss ${s.loss === null ? "unknown (last token)" : `${fmt(s.loss)} nats`}` }, p.head);
  p.pred.textContent = "Predicted next: " + s.top.map(([c, q]) => `${c} ${q.toFixed(2)}`).join(" · ");
  p.cmpLine.textContent = s.cmp_loss !== undefined
    ? `${p.names.other}: loss ${s.cmp_loss === null ? "unknown" : `${fmt(s.cmp_loss)} nats`}, top guess ${s.cmp_top}` : "";
  drawStrip(p, i);
  drawHeat(p.heatNow, f && f.m, f, 1, `${p.names.memory || "memory"} after token ${i}`, p);
  drawHeat(p.heatChange, f && f.d, f, 0.1, "change from the previous token", p);
  p.heats.style.display = p.names.memory ? "" : "none";
  p.heatNote.textContent = !p.names.memory ? ""
    : !f ? `No memory matrices kept for token ${i} (a saved trace keeps a window of them).`
    : `Largest |entry| of ${p.names.memory}: ${Number(f.max).toExponential(1)}` + (f.max < 1e-6
      ? " — below the colour scale's 10⁻⁶ floor: this memory has decayed to (nearly) nothing (its retention α_t"
        + " shrinks it every token), so the map is white."
      : ".");
  drawCurves(p, i);
}

function drawStrip(p, i) {
  const first = Math.max(0, Math.floor(i / ROW) * ROW - 3 * ROW);
  const vals = [];
  for (let t = first; t <= i; t++) { const s = p.scalars.get(t); if (s && s.v !== null) vals.push(s.v); }
  // the colour range is the shown cells' 5th to 95th percentile: one outlier must not darken the rest
  const sorted = vals.slice().sort((a, b) => a - b);
  const q = (f) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(f * (sorted.length - 1))))];
  const lo = sorted.length ? q(0.05) : 0, hi = sorted.length ? q(0.95) : 1;
  let html = "";
  for (let t = first; t < first + 4 * ROW && t < p.n; t++) {
    const s = t <= i ? p.scalars.get(t) : null;
    const bg = s && s.v !== null ? lerpColour(VIRIDIS, hi > lo ? (s.v - lo) / (hi - lo) : 0.5) : "transparent";
    const dark = s && s.v !== null && hi > lo && (s.v - lo) / (hi - lo) < 0.55;
    const title = s ? `token ${t}: '${s.c}'  ${p.names.colour} ${fmt(s.v, 4)}` : "";
    const ch = s ? s.c.replace(/&/g, "&amp;").replace(/</g, "&lt;") : "";
    html += `<span class="nlp-cell${t === i ? " nlp-current" : ""}${dark ? " nlp-dark" : ""}" style="background:${bg}" title="${title.replace(/"/g, "&quot;")}">${ch}</span>`;
  }
  p.strip.innerHTML = html;
  p.stripLegend.innerHTML = vals.length
    ? `Strip: tokens ${first}–${i} coloured by <b>${p.names.colour}</b> from ${fmt(lo, 4)} <span class="nlp-vgrad"></span> ${fmt(hi, 4)} (the shown cells' 5th to 95th percentile; beyond it the end colour; hover a cell for its value; red box: the current token).`
    : "";
}

function drawHeat(panel, bytes, f, zmax, title, p) {
  panel.title.textContent = title;
  panel.zmax = zmax;
  panel.legend.innerHTML = legendHtml(zmax);
  const ctx = panel.canvas.getContext("2d");
  if (!bytes) { panel.frame = null; ctx.clearRect(0, 0, panel.canvas.width, panel.canvas.height); return; }
  const [h, w] = f.shape;
  if (panel.canvas.width !== w) panel.canvas.width = w;
  if (panel.canvas.height !== h) panel.canvas.height = h;
  const img = ctx.createImageData(w, h);
  for (let k = 0; k < h * w; k++) {
    const c = DIV_LUT[bytes[k]];
    img.data[4 * k] = c[0]; img.data[4 * k + 1] = c[1]; img.data[4 * k + 2] = c[2]; img.data[4 * k + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  panel.frame = { shape: f.shape, bytes };
}

function drawCurves(p, i) {
  const first = Math.max(0, i - 191);
  const series = (p.names.rates || []).map(([key, label]) => ({ key, label }));
  if (p.names.other) series.push({ key: "loss", label: `${p.names.main} loss (nats)`, other: "cmp_loss" });
  if (!series.length) { p.curves.innerHTML = ""; return; }
  const W = 900, H = 86, padL = 58, padR = 10;
  const x = (t) => padL + ((t - first) / Math.max(1, i - first)) * (W - padL - padR);
  let svg = "";
  series.forEach((ser, row) => {
    const keys = ser.other ? [ser.key, ser.other] : [ser.key];
    const vals = [];
    for (let t = first; t <= i; t++) {
      const s = p.scalars.get(t);
      keys.forEach((k) => { if (s && s[k] !== null && s[k] !== undefined) vals.push(s[k]); });
    }
    let lo = vals.length ? Math.min(...vals) : 0, hi = vals.length ? Math.max(...vals) : 1;
    if (hi - lo < 1e-12) { hi = lo + 1e-6; }
    const y0 = row * (H + 18) + 16, y = (v) => y0 + H - ((v - lo) / (hi - lo)) * H;
    svg += `<text x="${padL}" y="${y0 - 4}" class="nlp-axis-title">${ser.label}</text>`;
    svg += `<text x="${padL - 4}" y="${y0 + 8}" class="nlp-tick" text-anchor="end">${Number(hi).toPrecision(3)}</text>`;
    svg += `<text x="${padL - 4}" y="${y0 + H}" class="nlp-tick" text-anchor="end">${Number(lo).toPrecision(3)}</text>`;
    svg += `<rect x="${padL}" y="${y0}" width="${W - padL - padR}" height="${H}" class="nlp-frame"/>`;
    keys.forEach((k, j) => {
      let d = "";
      for (let t = first; t <= i; t++) {
        const s = p.scalars.get(t);
        if (!s || s[k] === null || s[k] === undefined) continue;
        d += `${d ? "L" : "M"}${x(t).toFixed(1)},${y(s[k]).toFixed(1)}`;
      }
      svg += `<path d="${d}" class="nlp-line nlp-line${j}"/>`;
    });
    if (row === series.length - 1 || !ser.other) {
      for (let t = first; t <= i; t++) {
        const s = p.scalars.get(t);
        if (s && s.cms && ser.key === "surprise") svg += `<line x1="${x(t)}" x2="${x(t)}" y1="${y0}" y2="${y0 + H}" class="nlp-cms"/>`;
      }
    }
    svg += `<line x1="${x(i)}" x2="${x(i)}" y1="${y0}" y2="${y0 + H}" class="nlp-now"/>`;
  });
  const h = series.length * (H + 18) + 30;
  svg += `<text x="${padL}" y="${h - 6}" class="nlp-tick">token ${first}</text>`;
  svg += `<text x="${W - padR}" y="${h - 6}" class="nlp-tick" text-anchor="end">token ${i} (token index →)</text>`;
  const legend = (p.names.other ? `<span class="nlp-key0">— ${p.names.main}</span> <span class="nlp-key1">┄ ${p.names.other}</span> · ` : "")
    + (series.some((s) => s.key === "surprise") ? "<span class=\"nlp-keycms\">┆ CMS update of this layer</span> · " : "")
    + "<span class=\"nlp-keynow\">│ current token</span> · the last 192 tokens; each panel's own scale (min and max at its left)";
  p.curves.innerHTML = `<svg viewBox="0 0 ${W} ${h}" class="nlp-svg" role="img" aria-label="curves">${svg}</svg><div class="nlp-caption">${legend}</div>`;
}

function onKey(p, ev) {
  if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const k = ev.key;
  if (k !== "ArrowRight" && k !== "ArrowLeft" && k !== " ") return;
  const t = ev.target;
  const tag = t && t.tagName ? t.tagName.toLowerCase() : "";
  const combo = t && t.getAttribute && t.getAttribute("role") === "combobox";
  if (combo && t.getAttribute("aria-expanded") === "true") return; // an open list owns the keys
  if (!combo && (tag === "textarea" || tag === "select" || (t && t.isContentEditable))) return;
  if (!combo && tag === "input" && !["range", "checkbox", "radio", "button"].includes((t.type || "").toLowerCase())) return;
  if (tag === "input" && t.classList && t.classList.contains("nlp-scrub") && k !== " ") return; // the range moves itself
  ev.preventDefault();
  ev.stopPropagation();
  if (combo || (tag === "input" && t !== p.scrub)) t.blur(); // a closed selectbox gives the keys back to the player
  if (k === "ArrowRight") move(p, +1);
  else if (k === "ArrowLeft") move(p, -1);
  else toggle(p);
}

export default function (component) {
  const { data, key, parentElement, setStateValue } = component;
  if (!data) return undefined;
  const p = PLAYERS[key] || (PLAYERS[key] = newPlayer());
  p.send = setStateValue;
  let root = parentElement.querySelector(".nlp-root");
  if (!root) root = el("div", { class: "nlp-root" }, parentElement);
  if (p.root !== root || !root.firstChild) build(p, root);
  absorb(p, data);
  render(p);
  prefetch(p);
  if (p.raf === null) p.raf = requestAnimationFrame((t) => tick(p, t));
  // one key handler per player, whether or not the previous render was cleaned up
  if (p.keys) document.removeEventListener("keydown", p.keys, true);
  const keys = (ev) => onKey(p, ev);
  p.keys = keys;
  document.addEventListener("keydown", keys, true);
  return () => {
    document.removeEventListener("keydown", keys, true);
    if (p.keys === keys) p.keys = null;
    if (p.raf !== null) cancelAnimationFrame(p.raf);
    p.raf = null;
  };
}
