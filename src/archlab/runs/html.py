"""report.html: one self-contained, offline, interactive page.

The data (chart specs, table) is embedded as JSON in a ``<script type="application/json">``
block and drawn by a small vanilla-JS SVG renderer (no CDN, no network):

* hover: a crosshair and a tooltip with every visible arm's value (and band) at that x;
* zoom: drag a rectangle, or mouse wheel (zooms x around the cursor); double-click resets;
* legend: click an arm to hide/show it (in every chart at once);
* log y: a chart whose spec has ``logy`` starts on a log y axis, as its PNG does; every chart
  whose values are all positive (losses) has a "log y" box to switch.
"""

from __future__ import annotations

import html
import json
from typing import Any

from archlab.runs.values import fmt

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #ddd;border-radius:6px;padding:6px;position:relative}
.chart h3{font-size:13px;margin:2px 4px 4px;font-weight:600}
.legend span{cursor:pointer;margin-right:12px;user-select:none;font-size:12px}.legend span.off{opacity:.35}
.logy{font-size:12px;margin-left:8px;font-weight:400;cursor:pointer}
.legend i{display:inline-block;width:12px;height:3px;vertical-align:middle;margin-right:4px}
.tip{position:absolute;pointer-events:none;background:#fff;border:1px solid #999;border-radius:4px;
padding:4px 6px;font-size:12px;white-space:nowrap;display:none;box-shadow:0 1px 4px #0002}
svg text{font-size:11px;fill:#444}.hint{color:#777;font-size:12px}
"""

JS = r"""
const DATA = JSON.parse(document.getElementById('archlab-data').textContent);
// anything that came from a run (arm labels, notes) is text, never markup
const esc = t => String(t).replace(/[&<>"']/g, ch => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'})[ch]);
const NS = 'http://www.w3.org/2000/svg', W = 620, H = 340, M = {l: 62, r: 14, t: 10, b: 40};
const hidden = new Set(), charts = [];
const el = (tag, attrs, parent) => {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
};
const fmt = v => v == null ? 'n/a' : (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0))
  ? v.toExponential(2) : +v.toPrecision(4) + '';

// tick labels: the fewest significant digits that keep every label distinct
function tickLabels(ts) {
  for (let p = 3; p <= 12; p++) {
    const out = ts.map(v => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0)) ? v.toExponential(p - 1) : +v.toPrecision(p) + '');
    if (new Set(out).size === out.length) return out;
  }
  return ts.map(String);
}

function ticks(lo, hi, log) {
  if (log && hi / lo >= 10) {  // within one decade, linear values are the readable ticks
    const out = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
      for (const m of [1, 3]) { const v = m * 10 ** e; if (v >= lo && v <= hi) out.push(v); }
    return out.length >= 2 ? out : [lo, hi];
  }
  const raw = (hi - lo) / 6, mag = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map(f => f * mag).find(s => raw / s <= 1) || mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

// every y (and band edge, marker) of the chart > 0: a log y axis can show it
function positive(spec) {
  return spec.series.every(s => [s.y, s.lo || [], s.hi || [], (s.markers || []).map(m => m.y)]
    .every(ys => ys.every(y => y == null || y > 0)));
}

function extent(spec, logy) {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of spec.series) {
    if (hidden.has(s.name)) continue;
    const pts = s.x.map((x, i) => [x, s.y[i], (s.lo || s.y)[i], (s.hi || s.y)[i]])
      .concat((s.markers || []).map(m => [m.x, m.y, m.y, m.y]));
    for (const [x, y, lo, hi] of pts) {
      if (x == null || y == null || (spec.logx && x <= 0) || (logy && y <= 0)) continue;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x);
      y0 = Math.min(y0, lo ?? y); y1 = Math.max(y1, hi ?? y);
    }
  }
  if (!isFinite(x0)) return null;
  if (x0 === x1) { x0 = spec.logx ? x0 / 2 : x0 - 1; x1 = spec.logx ? x1 * 2 : x1 + 1; }
  if (logy) {  // pad in log space
    const pad = (Math.log10(y1) - Math.log10(y0)) * 0.05 || 0.02;
    return {x0, x1, y0: y0 / 10 ** pad, y1: y1 * 10 ** pad};
  }
  const pad = (y1 - y0) * 0.05 || 0.5;
  return {x0, x1, y0: y0 - pad, y1: y1 + pad};
}

function makeChart(spec, host) {
  const box = document.createElement('div'); box.className = 'chart'; host.appendChild(box);
  box.innerHTML = '<h3></h3><div class="legend"></div>';
  box.querySelector('h3').textContent = spec.title;
  const svg = el('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'data-chart': spec.id}, box);
  const tip = document.createElement('div'); tip.className = 'tip'; box.appendChild(tip);
  const c = {spec, svg, tip, view: null, logy: !!spec.logy && positive(spec)};
  if (positive(spec)) {  // switch the y axis between linear and log (the view resets)
    const label = document.createElement('label'); label.className = 'logy';
    const box2 = document.createElement('input'); box2.type = 'checkbox'; box2.checked = c.logy;
    box2.dataset.chart = spec.id;
    box2.onchange = () => { c.logy = box2.checked; c.view = null; draw(c); };
    label.append(box2, ' log y'); box.querySelector('h3').appendChild(label);
  }
  const legend = box.querySelector('.legend');
  for (const s of spec.series) {
    const item = document.createElement('span');
    item.innerHTML = `<i style="background:${esc(s.color)}"></i>`;
    item.appendChild(document.createTextNode(s.name));
    item.dataset.arm = s.name;
    item.onclick = () => { hidden.has(s.name) ? hidden.delete(s.name) : hidden.add(s.name); redrawAll(); };
    legend.appendChild(item);
  }
  c.legend = legend;
  attachEvents(c);
  charts.push(c);
  return c;
}

function scales(c) {
  const v = c.view || extent(c.spec, c.logy), lg = c.spec.logx, ly = c.logy;
  const f = x => lg ? Math.log10(x) : x, fy = y => ly ? Math.log10(y) : y;
  const sx = x => M.l + (f(x) - f(v.x0)) / (f(v.x1) - f(v.x0)) * (W - M.l - M.r);
  const sy = y => H - M.b - (fy(y) - fy(v.y0)) / (fy(v.y1) - fy(v.y0)) * (H - M.t - M.b);
  const ix = px => { const t = f(v.x0) + (px - M.l) / (W - M.l - M.r) * (f(v.x1) - f(v.x0)); return lg ? 10 ** t : t; };
  const iy = py => { const t = fy(v.y0) + (H - M.b - py) / (H - M.t - M.b) * (fy(v.y1) - fy(v.y0)); return ly ? 10 ** t : t; };
  return {v, sx, sy, ix, iy};
}

function pathOf(xs, ys, sx, sy) {
  let d = '', pen = false;
  xs.forEach((x, i) => {
    const y = ys[i];
    if (x == null || y == null) { pen = false; return; }
    d += (pen ? 'L' : 'M') + sx(x).toFixed(1) + ',' + sy(y).toFixed(1); pen = true;
  });
  return d;
}

function draw(c) {
  const {svg, spec} = c;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  c.legend.querySelectorAll('span').forEach(s => s.classList.toggle('off', hidden.has(s.dataset.arm)));
  const ext = c.view || extent(spec, c.logy);
  if (!ext) return;
  svg.dataset.logy = String(c.logy);
  const {v, sx, sy} = scales(c);
  const clipId = 'clip-' + spec.id;
  el('rect', {x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b}, el('clipPath', {id: clipId}, svg));
  const axes = el('g', {}, svg);
  const xt = ticks(v.x0, v.x1, spec.logx), xl = tickLabels(xt);
  xt.forEach((t, i) => {
    el('line', {x1: sx(t), x2: sx(t), y1: M.t, y2: H - M.b, stroke: '#eee'}, axes);
    el('text', {x: sx(t), y: H - M.b + 14, 'text-anchor': 'middle'}, axes).textContent = xl[i];
  });
  const yt = ticks(v.y0, v.y1, c.logy), yl = tickLabels(yt);
  yt.forEach((t, i) => {
    el('line', {x1: M.l, x2: W - M.r, y1: sy(t), y2: sy(t), stroke: '#eee'}, axes);
    el('text', {x: M.l - 4, y: sy(t) + 4, 'text-anchor': 'end'}, axes).textContent = yl[i];
  });
  el('rect', {x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, fill: 'none', stroke: '#999'}, axes);
  el('text', {x: (W + M.l) / 2, y: H - 6, 'text-anchor': 'middle'}, axes).textContent = spec.xlabel + (spec.logx ? ' (log)' : '');
  el('text', {x: 12, y: (H - M.b) / 2, transform: `rotate(-90 12 ${(H - M.b) / 2})`, 'text-anchor': 'middle'}, axes).textContent = spec.ylabel + (c.logy ? ' (log)' : '');
  const plot = el('g', {'clip-path': `url(#${clipId})`}, svg);
  for (const s of spec.series) {
    if (hidden.has(s.name)) continue;
    const g = el('g', {'data-arm': s.name, class: 'series'}, plot);
    if (s.lo) {
      const xs = s.x.concat([...s.x].reverse()), ys = s.hi.concat([...s.lo].reverse());
      el('path', {d: pathOf(xs, ys, sx, sy) + 'Z', fill: s.color, opacity: 0.18, class: 'band'}, g);
    }
    el('path', {d: pathOf(s.x, s.y, sx, sy), fill: 'none', stroke: s.color, 'stroke-width': 1.8, class: 'line'}, g);
    if (s.points || s.x.length === 1) s.x.forEach((x, i) => s.y[i] != null &&
      el('circle', {cx: sx(x), cy: sy(s.y[i]), r: 3.5, fill: s.color}, g));
    for (const m of s.markers || []) {
      const x = sx(m.x), y = sy(m.y);
      el('path', {d: `M${x - 5},${y - 5}L${x + 5},${y + 5}M${x - 5},${y + 5}L${x + 5},${y - 5}`,
                  stroke: s.color, 'stroke-width': 2.2, class: 'diverged'}, g);
    }
  }
  c.cross = el('line', {y1: M.t, y2: H - M.b, stroke: '#888', 'stroke-dasharray': '3,3', visibility: 'hidden'}, svg);
  c.sel = el('rect', {fill: '#4682b433', stroke: '#4682b4', visibility: 'hidden'}, svg);
}

function nearest(xs, x, logx) {
  let best = -1, bd = Infinity;
  xs.forEach((v, i) => {
    if (v == null) return;
    const d = Math.abs(logx ? Math.log10(v) - Math.log10(x) : v - x);
    if (d < bd) { bd = d; best = i; }
  });
  return best;
}

function attachEvents(c) {
  const {svg, tip, spec} = c;
  let drag = null;
  const pos = e => { const r = svg.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  svg.addEventListener('mousemove', e => {
    if (!extent(spec, c.logy)) return;
    const [px, py] = pos(e), {ix, sx} = scales(c);
    if (drag) {
      const x = Math.min(drag[0], px), y = Math.min(drag[1], py);
      Object.entries({x, y, width: Math.abs(px - drag[0]), height: Math.abs(py - drag[1]), visibility: 'visible'})
        .forEach(([k, v]) => c.sel.setAttribute(k, v));
    }
    if (px < M.l || px > W - M.r) { tip.style.display = 'none'; c.cross.setAttribute('visibility', 'hidden'); return; }
    const x = ix(px);
    let rows = '', xAt = null;
    for (const s of spec.series) {
      if (hidden.has(s.name)) continue;
      const i = nearest(s.x, x, spec.logx);
      if (i < 0) continue;
      xAt = xAt ?? s.x[i];
      const band = s.lo ? ` [${fmt(s.lo[i])}, ${fmt(s.hi[i])}]` : '';
      const n = s.n ? ` n=${s.n[i]}` : '';
      rows += `<div><b style="color:${esc(s.color)}">■</b> ${esc(s.name)}: ${fmt(s.y[i])}${band}${n}</div>`;
      for (const m of s.markers || []) if (Math.abs(sx(m.x) - px) < 8)
        rows += `<div style="color:${esc(s.color)}">× ${esc(m.label)} at ${fmt(m.x)}</div>`;
    }
    if (!rows) { tip.style.display = 'none'; return; }
    tip.innerHTML = `<div>${esc(spec.xlabel)} ≈ ${fmt(xAt ?? x)}</div>` + rows;
    tip.style.display = 'block';
    tip.style.left = Math.min(px + 16, W - 180) + 'px';
    tip.style.top = (py + 30) + 'px';
    c.cross.setAttribute('x1', px); c.cross.setAttribute('x2', px); c.cross.setAttribute('visibility', 'visible');
  });
  svg.addEventListener('mouseleave', () => { tip.style.display = 'none'; drag = null; draw(c); });
  svg.addEventListener('mousedown', e => { drag = pos(e); e.preventDefault(); });
  svg.addEventListener('mouseup', e => {
    if (!drag) return;
    const [px, py] = pos(e), {v: cur, ix, iy} = scales(c), d = drag; drag = null;
    if (Math.abs(px - d[0]) > 5) {
      const v = {x0: ix(Math.min(px, d[0])), x1: ix(Math.max(px, d[0])), y0: cur.y0, y1: cur.y1};
      if (Math.abs(py - d[1]) > 5) { v.y0 = iy(Math.max(py, d[1])); v.y1 = iy(Math.min(py, d[1])); }
      c.view = v;
    }
    draw(c);
  });
  svg.addEventListener('wheel', e => {
    e.preventDefault();
    const [px] = pos(e), {v, ix} = scales(c), k = e.deltaY < 0 ? 0.8 : 1.25, x = ix(px), lg = spec.logx;
    const f = t => lg ? Math.log10(t) : t, g = t => lg ? 10 ** t : t;
    c.view = {...v, x0: g(f(x) - (f(x) - f(v.x0)) * k), x1: g(f(x) + (f(v.x1) - f(x)) * k)};
    draw(c);
  }, {passive: false});
  svg.addEventListener('dblclick', () => { c.view = null; draw(c); });
}

function redrawAll() { charts.forEach(draw); }

const host = document.getElementById('charts');
for (const spec of DATA.charts) makeChart(spec, host);
redrawAll();
document.body.dataset.rendered = String(charts.length);
"""


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(
    result: dict[str, Any],
    charts: list[dict[str, Any]],
    table: tuple,
    notes: list[str],
    setup: str,
    verdict_lines: list[str],
) -> str:
    """The whole page as a string; ``table`` is ``(header, rows)`` from ``report.table_rows``,
    ``setup`` and ``verdict_lines`` the Markdown report's (``report.setup_line`` …)."""
    # "<" only ever occurs inside JSON strings: \u003c keeps run text from opening or closing
    # tags (</script>, <script>, <!--) inside the data block
    data = json.dumps({"charts": charts, "result": result}, allow_nan=False)
    data = data.replace("<", "\\u003c")
    verdicts = "".join(f"<li>{html.escape(v[2:]).replace('**', '')}</li>" for v in verdict_lines)
    extra = "".join(f"<li>{html.escape(n)}</li>" for n in notes + result["warnings"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>archlab compare</title>
<style>{CSS}</style></head><body>
<h1>archlab compare</h1>
<p>{html.escape(setup.replace("**", "").replace("`", ""))}</p>
<p>Baseline seed noise (std of final val loss over seeds): {fmt(result["seed_noise"], ".4f")}</p>
{_table_html(*table)}
<ul>{verdicts}</ul>
<p class="hint">Hover for values · drag a rectangle or use the mouse wheel to zoom · double-click to reset ·
click an arm in a legend to hide/show it everywhere.</p>
<div id="charts" class="charts"></div>
{f"<h2>Notes</h2><ul>{extra}</ul>" if extra else ""}
<script type="application/json" id="archlab-data">{data}</script>
<script>{JS}</script>
</body></html>
"""
