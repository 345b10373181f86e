// Pictures of one /api/predict reply: predictions, feature maps, C1 filters, the weight-sharing
// panel and the shift sweep chart. Pure drawing; app.js owns the state and the server calls.
// Every word comes from the message catalog through i18n.js.
import { element, fill, number, percent, t } from "/i18n.js";

export const LAYERS = ["c1", "s2", "c3", "s4", "c5"];
export const TITLES = { c1: "C1", s2: "S2", c3: "C3", s4: "S4", c5: "C5" };
export const ROLES = { cnn: "prediction-cnn", ordinary: "prediction-ordinary" };

export const $ = (id) => document.getElementById(id);

// ---- colours -------------------------------------------------------------------------

// A dark-to-bright ramp for activations (close to matplotlib's "magma").
const RAMP = [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]];

export function rampColour(t) {
  const x = Math.min(Math.max(t, 0), 1) * (RAMP.length - 1);
  const i = Math.min(Math.floor(x), RAMP.length - 2);
  const f = x - i;
  return RAMP[i].map((a, k) => Math.round(a + f * (RAMP[i + 1][k] - a)));
}

// Blue for negative, white for zero, red for positive (weights and signed values).
export function divergingColour(t) {
  const x = Math.min(Math.max(t, -1), 1);
  const fade = (c) => Math.round(255 - (255 - c) * Math.abs(x));
  return x < 0 ? [fade(37), fade(99), fade(235)] : [fade(220), fade(38), fade(38)];
}

export function greyColour(t) {
  const v = Math.round(Math.min(Math.max(t, 0), 1) * 255);
  return [v, v, v];
}

// Paint a 2-D array into a canvas of exactly its size, one pixel per value.
export function paintArray(canvas, rows, colour) {
  const height = rows.length;
  const width = rows[0].length;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  rows.forEach((row, y) =>
    row.forEach((value, x) => {
      const [r, g, b] = colour(value);
      const at = 4 * (y * width + x);
      image.data.set([r, g, b, 255], at);
    }),
  );
  context.putImageData(image, 0, 0);
}

// Paint a 2-D array as blocks of `cell` pixels, for canvases that also get drawn on top.
export function paintBlocks(canvas, rows, colour, cell) {
  const context = canvas.getContext("2d");
  rows.forEach((row, y) =>
    row.forEach((value, x) => {
      context.fillStyle = `rgb(${colour(value).join(",")})`;
      context.fillRect(x * cell, y * cell, cell, cell);
    }),
  );
  return context;
}

export const flat = (rows) => rows.flat(Infinity);
export const largest = (values) => values.reduce((a, b) => Math.max(a, Math.abs(b)), 1e-9);

// How a layer's maps are coloured: the magma ramp from 0 to the layer's largest value, or,
// where the layer has negative values, blue–white–red scaled to its largest magnitude.
export function layerColour(values) {
  const top = largest(values);
  const signed = values.some((v) => v < 0);
  return { top, signed, colour: signed ? (v) => divergingColour(v / top) : (v) => rampColour(v / top) };
}

// ---- predictions, maps, filters -----------------------------------------------------

// The data attributes say which view and probabilities a block shows (the browser test reads them).
// An int8 answer (serve --precision int8) comes with the fp32 model's: the block says whether
// their top-1 agrees on this drawing.
export function showPredictions(predictions, view, undertrained) {
  for (const prediction of predictions) {
    const block = $(ROLES[prediction.role]);
    block.dataset.view = JSON.stringify(view);
    block.dataset.probabilities = prediction.probabilities.join(",");
    block.dataset.precision = prediction.precision;
    const note = block.querySelector(".precision-note");
    note.hidden = !prediction.fp32;
    block.dataset.fp32Top = prediction.fp32 ? prediction.fp32.top[0].name : "";
    if (prediction.fp32) {
      const agree = prediction.agrees_with_fp32;
      note.textContent = t(agree ? "page.precision.agree" : "page.precision.differ", {
        digit: prediction.fp32.top[0].name, probability: percent(prediction.fp32.top[0].probability, 1),
      });
      note.className = `precision-note hint ${agree ? "agree" : "disagree"}`;
    }
    const list = block.querySelector(".top");
    list.replaceChildren(
      ...prediction.top.map((entry, rank) => {
        const item = document.createElement("li");
        item.className = rank === 0 ? "first" : "";
        const digit = document.createElement("span");
        digit.className = "digit";
        digit.textContent = entry.name;
        const bar = document.createElement("span");
        bar.className = "bar";
        const level = document.createElement("span");
        level.style.width = `${(100 * entry.probability).toFixed(1)}%`;
        bar.append(level);
        const share = document.createElement("span");
        share.className = "percent";
        share.textContent = percent(entry.probability, 1);
        item.append(digit, bar, share);
        return item;
      }),
    );
  }
  const [cnn, ordinary] = ["cnn", "ordinary"].map((role) => predictions.find((p) => p.role === role).top[0]);
  const moved = Object.entries(view).some(([k, v]) => v !== (k === "scale" ? 1 : 0));
  const verdict =
    cnn.name === ordinary.name
      ? t(moved ? "page.verdict.both_moved" : "page.verdict.both", { digit: cnn.name })
      : t("page.verdict.disagree", { cnn: cnn.name, ordinary: ordinary.name });
  $("verdict").textContent = undertrained ? `${verdict} ${t("page.verdict.undertrained")}` : verdict;
}

let mapCanvases = null; // built on the first reply (the shapes never change) and per language
let scales = {}; // per layer, the element that says its colour scale
export const STRIP = 12; // C5's 120 values of 1×1 maps are shown as one strip, 12 a row

export function forgetMaps() {
  mapCanvases = null;
}

// The cell of a map canvas under the pointer: {layer, map, row, column}.
function cellAt(event, layer, index, shape) {
  const canvas = event.currentTarget;
  const box = canvas.getBoundingClientRect();
  const x = Math.floor(((event.clientX - box.left) / box.width) * canvas.width);
  const y = Math.floor(((event.clientY - box.top) / box.height) * canvas.height);
  const column = Math.min(Math.max(x, 0), canvas.width - 1);
  const row = Math.min(Math.max(y, 0), canvas.height - 1);
  if (shape[1] * shape[2] === 1) return { layer, map: Math.min(row * STRIP + column, shape[0] - 1), row: 0, column: 0 };
  return { layer, map: index, row, column };
}

// `onCell(cell)` is told of the cell under the pointer (hover, or a tap on a touch screen).
function buildMaps(reply, onCell) {
  const holder = $("maps");
  holder.replaceChildren();
  mapCanvases = {};
  scales = {};
  const kinds = Object.fromEntries(reply.anatomy.layers.map((layer) => [layer.key, layer]));
  for (const key of LAYERS) {
    const map = reply.feature_maps[key];
    const [count, height, width] = map.shape;
    const described = kinds[key];
    const row = document.createElement("div");
    row.className = "layer";
    const title = document.createElement("h3");
    const counted = t("page.layer.count", { count: number(count), height, width });
    const size = described.kernel ? described.kernel.join("×") : "";
    scales[key] = element("small", "", "scale");
    title.append(element("b", TITLES[key]), ` ${t(`page.layer.kind.${described.kind}`, { size })}`,
      document.createElement("br"), element("small", counted), document.createElement("br"), scales[key]);
    const grid = document.createElement("div");
    grid.className = `maps maps-${key}`;
    grid.dataset.layer = key;
    const canvases = [];
    const pieces = height * width === 1 ? 1 : count;
    for (let i = 0; i < pieces; i += 1) {
      const canvas = document.createElement("canvas");
      canvas.className = "map";
      canvas.dataset.map = String(i);
      canvas.title =
        pieces === 1
          ? t("page.layer.all_values", { layer: TITLES[key], count: number(count) })
          : t("page.layer.map", { layer: TITLES[key], number: number(i + 1) });
      for (const kind of ["pointermove", "pointerdown"]) {
        canvas.addEventListener(kind, (event) => onCell(cellAt(event, key, i, map.shape), canvas));
      }
      grid.append(canvas);
      canvases.push(canvas);
    }
    row.append(title, grid);
    holder.append(row);
    mapCanvases[key] = canvases;
  }
  const cellMark = element("div", "", "cell-mark");
  cellMark.hidden = true;
  holder.append(cellMark);
}

export function showMaps(reply, onCell) {
  if (!mapCanvases) buildMaps(reply, onCell);
  for (const key of LAYERS) {
    const map = reply.feature_maps[key];
    const { top, signed, colour } = layerColour(flat(map.data));
    scales[key].textContent = t(signed ? "page.layer.scale_signed" : "page.layer.scale", { top: number(top, 2) });
    const canvases = mapCanvases[key];
    if (canvases.length === 1 && map.shape[0] > 1) {
      const values = map.data.map((m) => m[0][0]);
      const rows = [];
      for (let i = 0; i < values.length; i += STRIP) rows.push(values.slice(i, i + STRIP));
      paintArray(canvases[0], rows, colour);
    } else {
      map.data.forEach((rows, i) => paintArray(canvases[i], rows, colour));
    }
  }
}

// Outline the cell under the pointer on its map (`canvas`); null hides the outline.
export function markCell(cell, canvas) {
  const mark = document.querySelector("#maps .cell-mark");
  if (!mark) return;
  if (!cell || !canvas) {
    mark.hidden = true;
    return;
  }
  const holder = $("maps").getBoundingClientRect();
  const box = canvas.getBoundingClientRect();
  const [columns, rows] = [canvas.width, canvas.height];
  const strip = canvas.parentElement.dataset.layer === "c5";
  const x = strip ? cell.map % STRIP : cell.column;
  const y = strip ? Math.floor(cell.map / STRIP) : cell.row;
  Object.assign(mark.style, {
    left: `${box.left - holder.left + (x * box.width) / columns}px`,
    top: `${box.top - holder.top + (y * box.height) / rows}px`,
    width: `${box.width / columns}px`,
    height: `${box.height / rows}px`,
  });
  mark.hidden = false;
}

// ---- where each network looked -------------------------------------------------------

export const EXPLAINED = { cnn: "explain-cnn", ordinary: "explain-ordinary" };

// The digit in grey with the heat over it (warm colours, as opaque as the heat is strong),
// and a cross at the heat's centre of mass. The data attributes let the browser test read it.
export function showExplanations(reply) {
  for (const [role, id] of Object.entries(EXPLAINED)) {
    const explanation = reply.explanations[role];
    const figure = $(id);
    const canvas = figure.querySelector("canvas");
    const [height, width] = explanation.shape;
    const cell = canvas.width / width;
    const context = canvas.getContext("2d");
    explanation.data.forEach((row, y) =>
      row.forEach((heat, x) => {
        const grey = greyColour(reply.pixels[y][x] / 255);
        const warm = rampColour(0.4 + 0.6 * heat);
        const opacity = 0.85 * Math.min(Math.max(heat, 0), 1);
        const mixed = grey.map((g, k) => Math.round(g + opacity * (warm[k] - g)));
        context.fillStyle = `rgb(${mixed.join(",")})`;
        context.fillRect(x * cell, y * cell, cell, cell);
      }),
    );
    const [row, column] = explanation.centre;
    const [cx, cy] = [(column + 0.5) * cell, (row + 0.5) * cell];
    context.strokeStyle = "#22d3ee";
    context.lineWidth = 2;
    context.beginPath();
    context.moveTo(cx - 10, cy);
    context.lineTo(cx + 10, cy);
    context.moveTo(cx, cy - 10);
    context.lineTo(cx, cy + 10);
    context.stroke();
    figure.dataset.centre = explanation.centre.join(",");
    figure.dataset.shape = `${height}x${width}`;
    figure.querySelector(".centre").textContent = t("page.explain.centre", {
      x: number(column, 1), y: number(row, 1),
    });
  }
}

export function showFilters(filters, selected, onPick) {
  const picker = $("filter-picker");
  if (!picker.children.length) {
    filters.weights.forEach((_, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "filter";
      button.append(document.createElement("canvas"), document.createElement("span"));
      button.addEventListener("click", () => {
        onPick(i);
      });
      picker.append(button);
    });
  }
  const top = largest(flat(filters.weights));
  [...picker.children].forEach((button, i) => {
    button.setAttribute("aria-label", t("page.sharing.filter_label", { number: number(i + 1) }));
    button.querySelector("span").textContent = t("page.sharing.filter", { number: number(i + 1) });
    paintArray(button.querySelector("canvas"), filters.weights[i], (v) => divergingColour(v / top));
    button.classList.toggle("selected", i === selected);
    button.setAttribute("aria-pressed", String(i === selected));
  });
}

// ---- weight sharing ------------------------------------------------------------------

// The squashing after a layer, as the server names it (convnet/serve/anatomy.py).
export const ACTIVATIONS = {
  relu: { name: "ReLU", apply: (s) => Math.max(0, s) },
  scaled_tanh: { name: "1.7159·tanh(⅔·)", apply: (s) => 1.7159 * Math.tanh((2 / 3) * s) },
  identity: { name: "", apply: (s) => s },
};
// The reply's values have 4 decimals; a sum recomputed from up to 150 of their products
// agrees with the server's to this much (relative to the value, at least 1).
const AGREEMENT = 0.005;
export const agrees = (mine, servers) => Math.abs(mine - servers) <= AGREEMENT * Math.max(1, Math.abs(servers));

function fillTable(table, rows, colour, digits) {
  table.replaceChildren(
    ...rows.map((row) => {
      const line = document.createElement("tr");
      for (const value of row) {
        const cell = document.createElement("td");
        const [r, g, b] = colour(value);
        cell.style.background = `rgb(${r},${g},${b})`;
        cell.style.color = r * 0.3 + g * 0.59 + b * 0.11 > 140 ? "#111" : "#fff";
        cell.textContent = value.toFixed(digits);
        line.append(cell);
      }
      return line;
    }),
  );
}

// The window of C1 filter `filter` at output cell `position` (row-major), recomputed here from the
// input and the shared weights, beside the value the server's C1 map holds there.
export function showSharing(reply, filter, position) {
  const input = reply.model_input;
  const filters = reply.c1_filters;
  const weights = filters.weights[filter];
  const bias = filters.bias[filter];
  const output = reply.feature_maps.c1.data[filter];
  const size = weights.length;
  const side = output.length;
  const row = Math.floor(position / side);
  const column = position % side;
  const window = input.slice(row, row + size).map((line) => line.slice(column, column + size));

  const low = Math.min(...flat(input));
  const high = Math.max(...flat(input));
  const grey = (v) => greyColour((v - low) / (high - low || 1));
  const inputCanvas = $("sharing-input");
  const inputCell = inputCanvas.width / input.length;
  const context = paintBlocks(inputCanvas, input, grey, inputCell);
  context.strokeStyle = "#f59e0b";
  context.lineWidth = 3;
  context.strokeRect(column * inputCell, row * inputCell, size * inputCell, size * inputCell);

  const top = largest(flat(output));
  const outputCanvas = $("sharing-output");
  const outputCell = outputCanvas.width / side;
  const outputContext = paintBlocks(outputCanvas, output, (v) => rampColour(v / top), outputCell);
  outputContext.strokeStyle = "#22d3ee";
  outputContext.lineWidth = 3;
  outputContext.strokeRect(column * outputCell, row * outputCell, outputCell, outputCell);

  const wide = largest(flat(weights));
  fillTable($("window-table"), window, grey, 1);
  fillTable($("weights-table"), weights, (v) => divergingColour(v / wide), 2);

  let sum = bias;
  window.forEach((line, i) => line.forEach((value, j) => (sum += value * weights[i][j])));
  const activation = ACTIVATIONS[filters.activation] || ACTIVATIONS.identity;
  const mine = activation.apply(sum);
  const servers = output[row][column];
  const agree = agrees(mine, servers);
  const bold = (value) => element("b", number(value, 3));
  const lines = [document.createElement("span"), document.createElement("span")];
  fill(lines[0], "page.sharing.sum", { bias: number(bias, 3), sum: bold(sum) });
  fill(lines[1], "page.sharing.server", {
    map: number(filter + 1), row: number(row), column: number(column), value: bold(servers),
  });
  if (activation.name) {
    lines.splice(1, 0, document.createElement("span"));
    fill(lines[1], "page.sharing.activation", { activation: activation.name, value: bold(mine) });
  }
  const mark = element("span", t(agree ? "page.sharing.same" : "page.sharing.differs"), agree ? "agree" : "disagree");
  $("sharing-equation").replaceChildren(
    ...lines.flatMap((line, i) => (i ? [document.createElement("br"), line] : [line])), " ", mark,
  );
  $("position").max = String(side * side - 1);
  $("position").value = String(position);
  $("position-label").textContent = t("page.sharing.cell", { row: number(row), column: number(column) });

  const count = filters.weights.length;
  const parameters = count * (size * size + 1);
  const connections = count * side * side * (size * size + 1);
  $("sharing-counts").textContent = t("page.sharing.counts", {
    count: number(count), size, side, parameters: number(parameters), connections: number(connections),
  });
}

export function drawSweep(shifts, series) {
  const canvas = $("sweep-chart");
  const context = canvas.getContext("2d");
  const [left, right, top, bottom] = [48, 14, 34, 44];
  const width = canvas.width - left - right;
  const height = canvas.height - top - bottom;
  const x = (i) => left + (i / (shifts.length - 1)) * width;
  const y = (p) => top + (1 - p) * height;
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.font = "17px system-ui, sans-serif";
  context.fillStyle = "#475569";
  context.strokeStyle = "#e2e8f0";
  context.lineWidth = 1;
  for (const p of [0, 0.5, 1]) {
    context.beginPath();
    context.moveTo(left, y(p));
    context.lineTo(left + width, y(p));
    context.stroke();
    context.fillText(number(p, 1), 8, y(p) + 6);
  }
  shifts.forEach((shift, i) => {
    if (shift % 2 === 0) context.fillText(`${shift > 0 ? "+" : ""}${number(shift)}`, x(i) - 9, canvas.height - 24);
  });
  const axis = t("page.sweep.axis");
  context.fillText(axis, left + width / 2 - context.measureText(axis).width / 2, canvas.height - 3);
  const legend = [[t("page.role.cnn"), "#2563eb"], [t("page.role.ordinary"), "#d97706"]];
  let legendX = left;
  for (const [label, colour] of legend) {
    context.fillStyle = colour;
    context.fillRect(legendX, 9, 18, 5);
    context.fillText(label, legendX + 24, 17);
    legendX += 34 + context.measureText(label).width;
  }
  for (const [role, colour] of [["ordinary", "#d97706"], ["cnn", "#2563eb"]]) {
    context.strokeStyle = colour;
    context.fillStyle = colour;
    context.lineWidth = 3;
    context.beginPath();
    series[role].forEach((p, i) => (i ? context.lineTo(x(i), y(p)) : context.moveTo(x(i), y(p))));
    context.stroke();
    series[role].forEach((p, i) => context.fillRect(x(i) - 3, y(p) - 3, 6, 6));
  }
}
