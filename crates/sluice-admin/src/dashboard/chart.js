// Stacked bar charts drawn as inline SVG: one bar per time window, one
// coloured segment per series. No library, no external resource.

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#2f6feb", "#d4731c", "#1a7f37", "#8250df", "#cf222e", "#0b8a8a", "#9a6700", "#6e7781"];

export function colour(i) {
  return COLOURS[i % COLOURS.length];
}

function node(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function short(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

/**
 * Draws into `container`: `windows` is `[{label, values: {series: n}}]`,
 * `series` the ordered series names (their colours are their indexes).
 */
export function stackedBars(container, windows, series) {
  const width = 520, height = 180, left = 40, bottom = 20, top = 8;
  const plotH = height - bottom - top;
  const totals = windows.map((w) => series.reduce((s, name) => s + (w.values[name] ?? 0), 0));
  const max = Math.max(1, ...totals);
  const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  svg.append(node("title", {}, `maximum ${short(max)} per window`));
  svg.append(node("line", { class: "axis", x1: left, y1: top + plotH, x2: width, y2: top + plotH }));
  svg.append(node("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, short(max)));
  svg.append(node("text", { x: left - 4, y: top + plotH, "text-anchor": "end" }, "0"));
  const slot = (width - left) / Math.max(1, windows.length);
  windows.forEach((w, i) => {
    const x = left + i * slot + slot * 0.1;
    let y = top + plotH;
    series.forEach((name, s) => {
      const v = w.values[name] ?? 0;
      if (v <= 0) return;
      const h = (v / max) * plotH;
      y -= h;
      const rect = node("rect", { x, y, width: slot * 0.8, height: h, fill: colour(s) });
      rect.append(node("title", {}, `${name}, ${w.label}: ${v}`));
      svg.append(rect);
    });
    if (i % 3 === 0) {
      svg.append(node("text", { x: x + slot * 0.4, y: height - 6, "text-anchor": "middle" }, w.label));
    }
  });
  container.replaceChildren(svg);
}

/** A legend: one swatch and name per series. */
export function legend(container, series) {
  container.replaceChildren(
    ...series.map((name, i) => {
      const item = document.createElement("span");
      const swatch = node("svg", { width: 10, height: 10, viewBox: "0 0 10 10" });
      swatch.append(node("rect", { width: 10, height: 10, fill: colour(i) }));
      item.append(swatch, document.createTextNode(name));
      return item;
    }),
  );
}
