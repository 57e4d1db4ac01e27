// A line chart of concurrent listeners over time, drawn as inline SVG (no library).

import {el, svg} from "./ui.js";

const W = 560;
const H = 180;
const PAD = {top: 14, right: 14, bottom: 26, left: 34};

function niceMax(value) {
  if (value <= 4) return 4;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function timeLabel(ms) {
  return new Date(ms).toLocaleTimeString(undefined, {hour: "2-digit", minute: "2-digit"});
}

/**
 * Draw `points` ([{t: ms, v: listeners}], any order) into `figure`, replacing the
 * previous drawing but keeping the figure's caption.
 */
export function drawChart(figure, points) {
  figure.querySelector("svg")?.remove();
  figure.querySelector(".chart-empty")?.remove();
  const caption = figure.querySelector("figcaption");
  const sorted = [...points].sort((a, b) => a.t - b.t);
  if (sorted.length < 2) {
    figure.insertBefore(el("p", {class: "chart-empty meta",
      text: "The chart fills in as listeners come and go."}), caption);
    return;
  }
  // At least a minute wide, ending now, so a young space's line starts at the left.
  const t1 = sorted[sorted.length - 1].t;
  const t0 = Math.min(sorted[0].t, t1 - 60_000);
  const top = niceMax(Math.max(...sorted.map((p) => p.v)));
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Concurrent listeners: now ${sorted[sorted.length - 1].v}, ` +
      `peak ${Math.max(...sorted.map((p) => p.v))}`});
  const defs = svg("defs");
  const gradient = svg("linearGradient", {id: "chart-fill", x1: 0, y1: 0, x2: 0, y2: 1});
  gradient.append(svg("stop", {offset: "0", class: "chart-stop-top"}),
    svg("stop", {offset: "1", class: "chart-stop-bottom"}));
  defs.append(gradient);
  root.append(defs);
  for (const value of [0, top / 2, top]) {
    root.append(svg("line", {x1: PAD.left, x2: W - PAD.right, y1: y(value), y2: y(value),
      class: "chart-grid"}));
    const label = svg("text", {x: PAD.left - 8, y: y(value) + 4, class: "chart-label",
      "text-anchor": "end"});
    label.textContent = String(Math.round(value));
    root.append(label);
  }
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const label = svg("text", {x: x(t), y: H - 6, class: "chart-label", "text-anchor": anchor});
    label.textContent = timeLabel(t);
    root.append(label);
  }
  // Steps, not slopes: the count holds until it changes.
  let line = `M${x(t0)},${y(sorted[0].v)}H${x(sorted[0].t)}`;
  for (const p of sorted.slice(1)) line += `H${x(p.t)}V${y(p.v)}`;
  const last = sorted[sorted.length - 1];
  const area = `${line}H${x(last.t)}V${y(0)}H${x(t0)}Z`;
  root.append(svg("path", {d: area, class: "chart-area"}));
  root.append(svg("path", {d: line, class: "chart-line"}));
  root.append(svg("circle", {cx: x(last.t), cy: y(last.v), r: 4, class: "chart-dot"}));
  figure.insertBefore(root, caption);
}
