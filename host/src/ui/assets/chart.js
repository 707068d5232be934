// A live line chart drawn as SVG: the last five minutes of one or more series, redrawn on
// every new sample. The newest value of each series is written beside the chart as text.

import { el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WINDOW_MS = 5 * 60 * 1000;
const WIDTH = 300;
const HEIGHT = 100;
const MAX_SERIES_COLOURS = 8;

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

export class Chart {
  /**
   * @param title   what is drawn
   * @param format  value → text (bytes, percent…)
   * @param max     a fixed top of the scale (100 for percentages), or a function of the samples
   */
  constructor(title, format, max) {
    this.format = format;
    this.max = max;
    this.series = new Map();
    this.plot = svg("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none", role: "img", "aria-label": title,
      "data-points": "0",
    });
    for (const y of [0.25, 0.5, 0.75]) {
      this.plot.append(svg("line", { x1: 0, x2: WIDTH, y1: HEIGHT * y, y2: HEIGHT * y, class: "grid" }));
    }
    this.scale = el("span", { class: "scale" });
    this.legend = el("ul", { class: "legend" });
    this.element = el("figure", { class: "chart" },
      el("figcaption", {}, el("span", { class: "title" }, title), this.scale),
      this.plot,
      el("div", { class: "axis" }, el("span", {}, "5 min ago"), el("span", {}, "now")),
      this.legend);
  }

  /** Adds one sample: `values` maps a series name to its value at `at` (milliseconds). */
  push(at, values) {
    for (const [name, value] of Object.entries(values)) {
      let series = this.series.get(name);
      if (!series) {
        const colour = `s${this.series.size % MAX_SERIES_COLOURS}`;
        series = {
          points: [],
          area: svg("polygon", { class: `area ${colour}` }),
          line: svg("polyline", { class: `line ${colour}` }),
          now: el("span", { class: "value" }),
        };
        this.plot.append(series.area, series.line);
        this.legend.append(el("li", {}, el("span", { class: `swatch ${colour}`, "aria-hidden": "true" }), `${name} `, series.now));
        this.series.set(name, series);
      }
      series.points.push([at, Number(value) || 0]);
      while (series.points.length && series.points[0][0] < at - WINDOW_MS) series.points.shift();
      series.now.textContent = this.format(value);
    }
    this.draw(at);
  }

  draw(now) {
    const all = [...this.series.values()];
    const top = typeof this.max === "function" ? this.max(all.flatMap((s) => s.points.map((p) => p[1]))) : this.max;
    const scaleTop = top > 0 ? top : 1;
    this.scale.textContent = `max ${this.format(scaleTop)}`;
    for (const series of all) {
      const points = series.points.map(([at, value]) => {
        const x = WIDTH - ((now - at) / WINDOW_MS) * WIDTH;
        const y = HEIGHT - (Math.min(value, scaleTop) / scaleTop) * HEIGHT;
        return `${x.toFixed(2)},${y.toFixed(2)}`;
      });
      series.line.setAttribute("points", points.join(" "));
      const first = points[0]?.split(",")[0] ?? WIDTH;
      series.area.setAttribute("points", `${first},${HEIGHT} ${points.join(" ")} ${WIDTH},${HEIGHT}`);
    }
    this.plot.setAttribute("data-points", String(all.length ? all[0].points.length : 0));
  }
}

/** A scale top for values with no natural maximum: the largest seen, at least `floor`. */
export function autoMax(floor) {
  return (values) => Math.max(floor, Math.max(...values) * 1.1);
}
