// Padding and stride: how an input of n×n, a window of k×k, padding p and stride s set the
// size of the map, ⌊(n + 2p − k) / s⌋ + 1 a side (Dumoulin & Visin, "A guide to
// convolution arithmetic for deep learning", 2016, relationship 6). Runs in the page alone;
// the presets are LeNet-5's own layers.
import { element, number, t } from "/i18n.js";
import { $ } from "/views.js";

const FIELDS = ["size", "kernel", "padding", "stride", "position"];
const DISPLAYED = 200; // CSS pixels a side of the padded input's picture
const PRESETS = [
  { key: "page.explorer.preset.c1", values: { size: 32, kernel: 5, padding: 0, stride: 1 } },
  { key: "page.explorer.preset.s2", values: { size: 28, kernel: 2, padding: 0, stride: 2 } },
  { key: "page.explorer.preset.same", values: { size: 28, kernel: 5, padding: 2, stride: 1 } },
  { key: "page.explorer.preset.uneven", values: { size: 7, kernel: 3, padding: 0, stride: 3 } },
];

export function outputSide(size, kernel, padding, stride) {
  const room = size + 2 * padding - kernel;
  return room < 0 ? 0 : Math.floor(room / stride) + 1;
}

const read = () => Object.fromEntries(FIELDS.map((name) => [name, Number($(`explorer-${name}`).value)]));

function drawGrid(canvas, side, cell, paint) {
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  for (let row = 0; row < side; row += 1) {
    for (let column = 0; column < side; column += 1) {
      context.fillStyle = paint(row, column);
      context.fillRect(column * cell + 1, row * cell + 1, cell - 2, cell - 2);
    }
  }
  return context;
}

export function showExplorer() {
  const { size, kernel, padding, stride } = read();
  const side = outputSide(size, kernel, padding, stride);
  const position = $("explorer-position");
  position.max = String(Math.max(side * side - 1, 0));
  position.disabled = side === 0;
  const at = Math.min(Number(position.value), Math.max(side * side - 1, 0));
  position.value = String(at);
  const [row, column] = side ? [Math.floor(at / side), at % side] : [0, 0];
  for (const name of FIELDS) $(`explorer-${name}-value`).textContent = number(Number($(`explorer-${name}`).value));
  $("explorer-position-value").textContent = side ? t("page.sharing.cell", { row: number(row), column: number(column) }) : "—";

  // the padded input: padding in light grey, the window at the picked output cell in orange
  const padded = size + 2 * padding;
  const inputCanvas = $("explorer-input");
  inputCanvas.style.width = `${DISPLAYED}px`;
  const cell = inputCanvas.width / Math.max(padded, 1);
  const [top, left] = [row * stride, column * stride];
  const inside = (r, c) => side && r >= top && r < top + kernel && c >= left && c < left + kernel;
  const isPadding = (r, c) => r < padding || c < padding || r >= padding + size || c >= padding + size;
  const context = drawGrid(inputCanvas, padded, cell, (r, c) => {
    if (inside(r, c)) return isPadding(r, c) ? "#fcd34d" : "#f59e0b";
    return isPadding(r, c) ? "#e2e8f0" : "#94a3b8";
  });
  if (side) {
    context.strokeStyle = "#b45309";
    context.lineWidth = 2;
    context.strokeRect(left * cell, top * cell, kernel * cell, kernel * cell);
  }

  // the output at the input's scale, so that the picture shows how much it shrinks
  const outputCanvas = $("explorer-output");
  outputCanvas.width = outputCanvas.height = Math.max(Math.round(side * cell), 1);
  outputCanvas.style.width = `${(DISPLAYED * outputCanvas.width) / inputCanvas.width}px`;
  drawGrid(outputCanvas, side, cell, (r, c) => (r === row && c === column ? "#22d3ee" : "#475569"));

  $("explorer-formula").textContent = t("page.explorer.formula", {
    size: number(size), padding: number(padding), kernel: number(kernel), stride: number(stride), side: number(side),
  });
  $("explorer-formula").dataset.side = String(side);
  const leftOver = side ? (size + 2 * padding - kernel) % stride : 0;
  const notes = [];
  if (!side) notes.push(t("page.explorer.too_large", { kernel: number(kernel), padded: number(padded) }));
  if (leftOver) notes.push(t("page.explorer.left_over", { count: number(leftOver) }));
  if (side && side === size) notes.push(t("page.explorer.same"));
  $("explorer-note").textContent = notes.join(" ");
}

export function showPresets() {
  $("explorer-presets").replaceChildren(
    ...PRESETS.map((preset) => {
      const button = element("button", t(preset.key));
      button.type = "button";
      button.addEventListener("click", () => {
        for (const [name, value] of Object.entries(preset.values)) $(`explorer-${name}`).value = String(value);
        $("explorer-position").value = "0";
        showExplorer();
      });
      return button;
    }),
  );
}

export function startExplorer() {
  for (const name of FIELDS) $(`explorer-${name}`).addEventListener("input", showExplorer);
  showPresets();
  showExplorer();
}
