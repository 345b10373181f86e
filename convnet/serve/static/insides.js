// The CNN's insides from one /api/predict reply, each recomputed here from the numbers the
// server sent and checked against the server's own value: the input region that feeds a
// cell (receptive field), a pooling window and its winner, a C3 cell as a sum over the S2
// maps its connection table names, and F6 with the output scores and their probabilities.
// Pure drawing; app.js owns which cell is picked. Every word comes from the catalogs.
import { element, fill, number, percent, t } from "/i18n.js";
import {
  $, ACTIVATIONS, TITLES, agrees, divergingColour, flat, greyColour, largest, layerColour, paintArray, paintBlocks, rampColour,
} from "/views.js";

const described = (reply, key) => reply.anatomy.layers.find((layer) => layer.key === key);
const bold = (value, digits = 3) => element("b", number(value, digits));
const mark = (agree) => element("span", t(agree ? "page.sharing.same" : "page.sharing.differs"), agree ? "agree" : "disagree");

// ---- colour legend -------------------------------------------------------------------

export function drawLegend() {
  for (const [id, colour] of [["legend-ramp", (x) => rampColour(x)], ["legend-diverging", (x) => divergingColour(2 * x - 1)]]) {
    const canvas = $(id);
    const context = canvas.getContext("2d");
    for (let x = 0; x < canvas.width; x += 1) {
      context.fillStyle = `rgb(${colour(x / (canvas.width - 1)).join(",")})`;
      context.fillRect(x, 0, 1, canvas.height);
    }
  }
}

// ---- receptive field -----------------------------------------------------------------

// Cell (row, column) of a layer's maps: the input rows and columns that feed it, clipped
// to the 32×32 input (a field may reach past it where the layer pads).
export function fieldOf(layer, row, column) {
  const { size, step, start } = layer.field;
  const top = start[0] + row * step[0];
  const left = start[1] + column * step[1];
  return { top, left, bottom: top + size[0] - 1, right: left + size[1] - 1, size };
}

export function showField(reply, cell) {
  const input = reply.model_input;
  const canvas = $("field-input");
  const side = input.length;
  const unit = canvas.width / side;
  const low = Math.min(...flat(input));
  const high = Math.max(...flat(input));
  const context = paintBlocks(canvas, input, (v) => greyColour((v - low) / (high - low || 1)), unit);
  const layer = described(reply, cell.layer);
  const field = fieldOf(layer, cell.row, cell.column);
  const [top, left] = [Math.max(field.top, 0), Math.max(field.left, 0)];
  const [bottom, right] = [Math.min(field.bottom, side - 1), Math.min(field.right, side - 1)];
  // dim what does not feed the cell, outline what does
  context.fillStyle = "rgb(15 23 42 / 0.6)";
  context.beginPath();
  context.rect(0, 0, canvas.width, canvas.height);
  context.rect(left * unit, top * unit, (right - left + 1) * unit, (bottom - top + 1) * unit);
  context.fill("evenodd");
  context.strokeStyle = "#22d3ee";
  context.lineWidth = 3;
  context.strokeRect(left * unit + 1.5, top * unit + 1.5, (right - left + 1) * unit - 3, (bottom - top + 1) * unit - 3);
  const figure = $("field");
  figure.dataset.field = [top, left, bottom, right].join(",");
  figure.dataset.cell = [cell.layer, cell.map, cell.row, cell.column].join(",");
  const where = cell.layer === "c5"
    ? t("page.field.unit", { layer: TITLES[cell.layer], number: number(cell.map + 1) })
    : t("page.field.cell", { layer: TITLES[cell.layer], number: number(cell.map + 1), row: number(cell.row), column: number(cell.column) });
  $("field-caption").textContent = t("page.field.caption", {
    cell: where, top: number(top), bottom: number(bottom), left: number(left), right: number(right),
    height: number(bottom - top + 1), width: number(right - left + 1),
  });
}

// ---- a pooling window ----------------------------------------------------------------

const SOURCES = { s2: "c1", s4: "c3" }; // the maps each pooling layer reads

// One cell of S2 or S4 from its window of C1 or C3: which cell wins a max pooling, the
// mean of an average pooling, the 1998 subsampling's sum × coefficient + bias.
export function showPooling(reply, pick) {
  const layer = described(reply, pick.layer);
  const source = reply.feature_maps[SOURCES[pick.layer]].data[pick.map];
  const pooled = reply.feature_maps[pick.layer].data[pick.map];
  const [k, stride] = [layer.kernel[0], layer.stride[0]];
  const [row0, column0] = [pick.row * stride, pick.column * stride];
  const window = source.slice(row0, row0 + k).map((line) => line.slice(column0, column0 + k));
  const values = flat(window);
  const winner = values.indexOf(Math.max(...values));

  const scale = layerColour(flat(source));
  const sourceCanvas = $("pooling-source");
  const unit = sourceCanvas.width / source.length;
  const context = paintBlocks(sourceCanvas, source, scale.colour, unit);
  context.strokeStyle = "#f59e0b";
  context.lineWidth = 3;
  context.strokeRect(column0 * unit, row0 * unit, k * unit, k * unit);
  const outScale = layerColour(flat(pooled));
  const outputCanvas = $("pooling-output");
  const outUnit = outputCanvas.width / pooled.length;
  const outContext = paintBlocks(outputCanvas, pooled, outScale.colour, outUnit);
  outContext.strokeStyle = "#22d3ee";
  outContext.lineWidth = 3;
  outContext.strokeRect(pick.column * outUnit, pick.row * outUnit, outUnit, outUnit);

  const from = TITLES[SOURCES[pick.layer]];
  const to = TITLES[pick.layer];
  $("pooling-source-caption").textContent = t("page.pooling.source", { layer: from, number: number(pick.map + 1) });
  $("pooling-output-caption").textContent = t("page.pooling.output", { layer: to, number: number(pick.map + 1) });
  $("pooling-window").replaceChildren(
    ...window.map((line, i) => {
      const tr = document.createElement("tr");
      line.forEach((value, j) => {
        const cell = element("td", number(value, 3));
        const [r, g, b] = scale.colour(value);
        cell.style.background = `rgb(${r},${g},${b})`;
        cell.style.color = r * 0.3 + g * 0.59 + b * 0.11 > 140 ? "#111" : "#fff";
        if (layer.kind === "max" && i * k + j === winner) cell.className = "winner";
        tr.append(cell);
      });
      return tr;
    }),
  );

  const listed = values.map((v) => number(v, 3)).join(", ");
  const servers = pooled[pick.row][pick.column];
  const lines = [];
  let mine = null;
  if (layer.kind === "max") {
    mine = values[winner];
    lines.push(["page.pooling.max", { values: listed, value: bold(mine), row: number(row0 + Math.floor(winner / k)), column: number(column0 + (winner % k)) }]);
  } else if (layer.kind === "average") {
    mine = values.reduce((a, b) => a + b, 0) / values.length;
    lines.push(["page.pooling.average", { values: listed, count: number(values.length), value: bold(mine) }]);
  } else if (layer.kind === "subsampling") {
    const { weight, bias } = reply.anatomy.pooling[pick.layer];
    const sum = values.reduce((a, b) => a + b, 0) * weight[pick.map] + bias[pick.map];
    const activation = ACTIVATIONS[layer.activation] || ACTIVATIONS.identity;
    mine = activation.apply(sum);
    lines.push(["page.pooling.subsampling", { values: listed, weight: number(weight[pick.map], 3), bias: number(bias[pick.map], 3), sum: bold(sum) }]);
    if (activation.name) lines.push(["page.sharing.activation", { activation: activation.name, value: bold(mine) }]);
  } else {
    lines.push(["page.pooling.learned", {}]);
  }
  lines.push(["page.pooling.server", { layer: to, number: number(pick.map + 1), row: number(pick.row), column: number(pick.column), value: bold(servers) }]);
  const parts = lines.map(([key, values]) => {
    const span = document.createElement("span");
    fill(span, key, values);
    return span;
  });
  const equation = $("pooling-equation");
  equation.replaceChildren(...parts.flatMap((part, i) => (i ? [document.createElement("br"), part] : [part])));
  if (mine !== null) equation.append(" ", mark(agrees(mine, servers)));
  equation.dataset.kind = layer.kind;
}

// ---- C3: a sum over several S2 maps --------------------------------------------------

export function showC3(reply, pick) {
  const c3 = reply.anatomy.c3;
  const s2 = reply.feature_maps.s2.data;
  const sources = c3.sources[pick.map];
  const size = c3.weights[pick.map][0].length;
  const s2Scale = layerColour(flat(s2));
  const weightTop = largest(flat(c3.weights[pick.map]));

  // the connection table: rows the S2 maps, columns the C3 maps; the picked column marked
  const table = $("c3-table");
  const head = document.createElement("tr");
  head.append(element("th", ""), ...c3.sources.map((_, j) => element("th", number(j + 1), j === pick.map ? "picked" : "")));
  const rows = s2.map((_, i) => {
    const tr = document.createElement("tr");
    tr.append(element("th", number(i + 1)));
    c3.sources.forEach((inputs, j) => {
      const cell = element("td", inputs.includes(i) ? "●" : "", j === pick.map ? "picked" : "");
      tr.append(cell);
    });
    return tr;
  });
  table.replaceChildren(head, ...rows);

  let total = c3.bias[pick.map];
  const terms = sources.map((source, n) => {
    const kernel = c3.weights[pick.map][n];
    const map = s2[source];
    const window = map.slice(pick.row, pick.row + size).map((line) => line.slice(pick.column, pick.column + size));
    let partial = 0;
    window.forEach((line, i) => line.forEach((value, j) => (partial += value * kernel[i][j])));
    total += partial;
    const term = element("figure", "", "c3-term");
    const mapCanvas = document.createElement("canvas");
    mapCanvas.width = mapCanvas.height = 112;
    const unit = mapCanvas.width / map.length;
    const context = paintBlocks(mapCanvas, map, s2Scale.colour, unit);
    context.strokeStyle = "#f59e0b";
    context.lineWidth = 2;
    context.strokeRect(pick.column * unit, pick.row * unit, size * unit, size * unit);
    const kernelCanvas = document.createElement("canvas");
    paintArray(kernelCanvas, kernel, (v) => divergingColour(v / weightTop));
    kernelCanvas.className = "kernel";
    const caption = document.createElement("figcaption");
    fill(caption, "page.c3.term", { number: number(source + 1), sum: bold(partial) });
    term.append(mapCanvas, element("span", "×", "operator"), kernelCanvas, caption);
    return term;
  });
  $("c3-terms").replaceChildren(...terms);

  const activation = ACTIVATIONS[c3.activation] || ACTIVATIONS.identity;
  const mine = activation.apply(total);
  const servers = reply.feature_maps.c3.data[pick.map][pick.row][pick.column];
  const parts = [document.createElement("span"), document.createElement("span")];
  fill(parts[0], "page.c3.sum", { count: number(sources.length), bias: number(c3.bias[pick.map], 3), sum: bold(total) });
  fill(parts[1], "page.c3.server", { number: number(pick.map + 1), row: number(pick.row), column: number(pick.column), value: bold(servers) });
  if (activation.name) {
    parts.splice(1, 0, document.createElement("span"));
    fill(parts[1], "page.sharing.activation", { activation: activation.name, value: bold(mine) });
  }
  const equation = $("c3-equation");
  equation.replaceChildren(...parts.flatMap((part, i) => (i ? [document.createElement("br"), part] : [part])), " ", mark(agrees(mine, servers)));
  equation.dataset.sources = sources.join(",");
  const connected = c3.sources.reduce((sum, inputs) => sum + inputs.length, 0);
  $("c3-counts").textContent = t("page.c3.counts", {
    count: number(sources.length), maps: number(s2.length), size,
    parameters: number(sources.length * size * size + 1),
    connections: number(connected), all: number(c3.sources.length * s2.length),
  });
}

// ---- F6 and the output ---------------------------------------------------------------

const F6_SHAPE = [7, 12]; // as the paper drew F6's targets: 7×12 bitmaps

export function showHead(reply) {
  const { f6, output } = reply.head;
  const figure = $("f6-map").closest("figure");
  figure.hidden = !f6;
  if (f6) {
    const rows = [];
    for (let i = 0; i < f6.length; i += F6_SHAPE[1]) rows.push(f6.slice(i, i + F6_SHAPE[1]));
    const scale = layerColour(f6);
    paintArray($("f6-map"), rows, scale.colour);
    $("f6-caption").textContent = t("page.head.f6", {
      count: number(f6.length), active: number(f6.filter((v) => v > 0).length),
      scale: t(scale.signed ? "page.layer.scale_signed" : "page.layer.scale", { top: number(scale.top, 2) }),
    });
  }
  // F6 and the scores are the fp32 model's (anatomy_precision): so are the probabilities beside
  // them, even where the answers come from int8 (serve --precision int8), whose own are in step 3.
  const [cnn, ordinary] = ["cnn", "ordinary"].map((role) => {
    const prediction = reply.predictions.find((p) => p.role === role);
    return prediction.fp32 || prediction;
  });
  $("head-precision").hidden = reply.precision === reply.anatomy_precision;
  const best = cnn.top[0].index;
  const bar = (probability, role) => {
    const holder = element("span", "", `bar ${role}`);
    const level = document.createElement("span");
    level.style.width = `${(100 * probability).toFixed(1)}%`;
    holder.append(level);
    return holder;
  };
  $("output-table").querySelector("tbody").replaceChildren(
    ...(output || cnn.probabilities).map((score, digit) => {
      const tr = document.createElement("tr");
      if (digit === best) tr.className = "best";
      const cells = [
        element("td", digit),
        element("td", output ? number(score, 2) : "—"),
        element("td", ""),
        element("td", ""),
      ];
      cells[2].append(bar(cnn.probabilities[digit], "cnn"), element("span", percent(cnn.probabilities[digit], 1)));
      cells[3].append(bar(ordinary.probabilities[digit], "ordinary"), element("span", percent(ordinary.probabilities[digit], 1)));
      tr.append(...cells);
      return tr;
    }),
  );
  const total = cnn.probabilities.reduce((a, b) => a + b, 0);
  const rbf = reply.anatomy.output === "rbf";
  const softmax = $("softmax");
  softmax.textContent = t(rbf ? "page.head.softmax_rbf" : "page.head.softmax", {
    digit: best, score: output ? number(output[best], 2) : "—", probability: percent(cnn.probabilities[best], 1),
    total: number(total, 3),
  });
  if (output) {
    // the top probability recomputed here from the ten scores, against the server's fp32 one
    const top = Math.max(...output);
    const exponentials = output.map((score) => Math.exp(score - top));
    const mine = exponentials[best] / exponentials.reduce((a, b) => a + b, 0);
    softmax.append(" ", t("page.head.recomputed", { probability: percent(mine, 2) }), " ", mark(agrees(mine, cnn.probabilities[best])));
  }
}
