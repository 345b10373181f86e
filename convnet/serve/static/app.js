// convnet serve: draw a digit, send it to /api/predict, show what both networks make of it.
// Plain JavaScript, no build step. All pictures are drawn on <canvas> from the JSON reply.
import {
  $, ROLES, drawSweep, greyColour, paintArray, showFilters, showMaps, showPredictions, showSharing,
} from "/views.js";

const STROKE_WIDTH = 20;

const state = {
  source: null, // {kind: "png"} (the drawing pad) or {kind: "pixels", pixels} (an MNIST sample)
  view: { shift_x: 0, shift_y: 0, rotate: 0, scale: 1, noise: 0 },
  result: null,
  busy: false,
  again: false,
  filter: 0,
  position: 13 * 28 + 11, // a cell near the middle, where a digit has ink
  timer: null,
};

// ---- drawing pad ---------------------------------------------------------------------

const pad = $("pad");
const padContext = pad.getContext("2d");
let drawing = null;

function clearPad() {
  padContext.fillStyle = "#000";
  padContext.fillRect(0, 0, pad.width, pad.height);
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [((event.clientX - box.left) * pad.width) / box.width, ((event.clientY - box.top) * pad.height) / box.height];
}

function strokeTo(point) {
  padContext.strokeStyle = "#fff";
  padContext.lineWidth = STROKE_WIDTH;
  padContext.lineCap = "round";
  padContext.lineJoin = "round";
  padContext.beginPath();
  padContext.moveTo(...drawing);
  padContext.lineTo(...point);
  padContext.stroke();
  drawing = point;
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = padPoint(event);
  padContext.fillStyle = "#fff";
  padContext.beginPath();
  padContext.arc(...drawing, STROKE_WIDTH / 2, 0, 2 * Math.PI);
  padContext.fill();
  state.source = { kind: "png" };
  $("sample-label").textContent = "Your drawing.";
  requestPrediction();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  event.preventDefault();
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) strokeTo(padPoint(each));
  requestPrediction();
});
for (const name of ["pointerup", "pointercancel"]) {
  pad.addEventListener(name, () => {
    if (drawing) requestPrediction();
    drawing = null;
  });
}

$("clear").addEventListener("click", () => {
  clearPad();
  state.source = null;
  state.result = null;
  $("sample-label").textContent = "Draw with a mouse, a finger or a pen.";
  $("verdict").textContent = "Draw a digit to start.";
  for (const id of Object.values(ROLES)) $(id).querySelector(".top").replaceChildren();
  $("seen").getContext("2d").clearRect(0, 0, 28, 28);
  $("sweep-figure").hidden = true;
});

$("sample").addEventListener("click", async () => {
  const reply = await fetchJson("/api/samples");
  if (!reply) return;
  const sample = reply.samples[0];
  state.source = { kind: "pixels", pixels: sample.pixels };
  const small = document.createElement("canvas");
  paintArray(small, sample.pixels, (v) => greyColour(v / 255));
  clearPad();
  padContext.imageSmoothingEnabled = true;
  padContext.drawImage(small, 0, 0, pad.width, pad.height);
  $("sample-label").textContent = `MNIST test image ${sample.index}, labelled ${sample.name}.`;
  requestPrediction();
});

// ---- talking to the server -----------------------------------------------------------

async function fetchJson(url, options) {
  try {
    const response = await fetch(url, options);
    const reply = await response.json();
    if (!response.ok) throw new Error(reply.error || `HTTP ${response.status}`);
    $("error").hidden = true;
    return reply;
  } catch (error) {
    $("error").textContent = `The server said: ${error.message}`;
    $("error").hidden = false;
    return null;
  }
}

async function sourceBody() {
  if (state.source.kind === "pixels") {
    return { type: "application/json", body: JSON.stringify({ pixels: state.source.pixels }) };
  }
  const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
  return { type: "image/png", body: blob };
}

async function predict(body, view) {
  const query = new URLSearchParams(Object.entries(view).map(([k, v]) => [k, String(v)]));
  return fetchJson(`/api/predict?${query}`, {
    method: "POST",
    headers: { "Content-Type": body.type },
    body: body.body,
  });
}

// At most one request in flight; changes made meanwhile send one more when it returns.
async function requestPrediction() {
  if (!state.source) return;
  if (state.busy) {
    state.again = true;
    return;
  }
  state.busy = true;
  document.body.dataset.busy = "1";
  try {
    const reply = await predict(await sourceBody(), state.view);
    if (reply) show(reply);
  } finally {
    state.busy = false;
    if (state.again) {
      state.again = false;
      requestPrediction();
    } else {
      document.body.dataset.busy = "0";
    }
  }
}

// ---- showing a reply -----------------------------------------------------------------

function show(reply) {
  state.result = reply;
  paintArray($("seen"), reply.pixels, (v) => greyColour(v / 255));
  showPredictions(reply.predictions, reply.view);
  showMaps(reply);
  showFilters(reply.c1_filters, state.filter, pickFilter);
  showSharing(reply, state.filter, state.position);
  document.body.dataset.predictions = String(Number(document.body.dataset.predictions || 0) + 1);
}

function redrawSharing() {
  if (state.result) showSharing(state.result, state.filter, state.position);
}

function pickFilter(index) {
  state.filter = index;
  showFilters(state.result.c1_filters, state.filter, pickFilter);
  redrawSharing();
}

function stepTo(position) {
  const last = Number($("position").max);
  state.position = ((position % (last + 1)) + last + 1) % (last + 1);
  redrawSharing();
}

$("position").addEventListener("input", (event) => stepTo(Number(event.target.value)));
$("step-back").addEventListener("click", () => stepTo(state.position - 1));
$("step-forward").addEventListener("click", () => stepTo(state.position + 1));
$("play").addEventListener("click", () => {
  if (state.timer) {
    clearInterval(state.timer);
    state.timer = null;
    $("play").textContent = "Play";
    return;
  }
  $("play").textContent = "Pause";
  state.timer = setInterval(() => stepTo(state.position + 1), 80);
});

// ---- moving the digit ----------------------------------------------------------------

const SLIDERS = {
  shift_x: { id: "shift-x", text: (v) => `${v > 0 ? "+" : ""}${v} px` },
  shift_y: { id: "shift-y", text: (v) => `${v > 0 ? "+" : ""}${v} px` },
  rotate: { id: "rotate", text: (v) => `${v > 0 ? "+" : ""}${v}°` },
  scale: { id: "scale", text: (v) => `×${v.toFixed(2)}` },
  noise: { id: "noise", text: (v) => `σ ${v.toFixed(2)}` },
};

function setView(key, value) {
  const slider = $(SLIDERS[key].id);
  const clamped = Math.min(Math.max(value, Number(slider.min)), Number(slider.max));
  slider.value = String(clamped);
  state.view[key] = Number(slider.value);
  $(`${SLIDERS[key].id}-value`).textContent = SLIDERS[key].text(state.view[key]);
  requestPrediction();
}

for (const [key, slider] of Object.entries(SLIDERS)) {
  $(slider.id).addEventListener("input", (event) => setView(key, Number(event.target.value)));
}
$("shift-left").addEventListener("click", () => setView("shift_x", state.view.shift_x - 1));
$("shift-right").addEventListener("click", () => setView("shift_x", state.view.shift_x + 1));
$("shift-up").addEventListener("click", () => setView("shift_y", state.view.shift_y - 1));
$("shift-down").addEventListener("click", () => setView("shift_y", state.view.shift_y + 1));
$("reset").addEventListener("click", () => {
  for (const key of Object.keys(SLIDERS)) setView(key, key === "scale" ? 1 : 0);
});

// Shift the digit across −6…+6 px and plot how sure each network stays of its unmoved answer.
$("sweep").addEventListener("click", async () => {
  if (!state.source) return;
  const body = await sourceBody();
  const shifts = Array.from({ length: 13 }, (_, i) => i - 6);
  const unmoved = await predict(body, { ...state.view, shift_x: 0 });
  if (!unmoved) return;
  const answers = Object.fromEntries(unmoved.predictions.map((p) => [p.role, p.top[0].index]));
  const series = { cnn: [], ordinary: [] };
  const kept = { cnn: 0, ordinary: 0 };
  for (const shift of shifts) {
    const reply = await predict(body, { ...state.view, shift_x: shift });
    if (!reply) return;
    for (const p of reply.predictions) {
      series[p.role].push(p.probabilities[answers[p.role]]);
      if (p.top[0].index === answers[p.role]) kept[p.role] += 1;
    }
  }
  drawSweep(shifts, series);
  $("sweep-caption").textContent =
    `Probability of the unmoved answer (CNN: ${answers.cnn}, ordinary: ${answers.ordinary}) ` +
    `as the digit moves left and right. The CNN keeps it at ${kept.cnn} of ${shifts.length} shifts, ` +
    `the ordinary network at ${kept.ordinary} of ${shifts.length}.`;
  $("sweep-figure").hidden = false;
});


// ---- start ---------------------------------------------------------------------------

async function start() {
  clearPad();
  const reply = await fetchJson("/api/models");
  if (!reply) return;
  const notes = reply.models.map((model) => {
    const item = document.createElement("li");
    const role = model.role === "cnn" ? "CNN" : "Ordinary network";
    const error = model.test_error === null ? "" : `, test error ${(100 * model.test_error).toFixed(2)}%`;
    item.innerHTML = `<b class="${model.role}-colour">${role}: ${model.name}</b> · ${model.params.toLocaleString("en")} parameters${error} · `;
    item.append(document.createTextNode(model.origin));
    $(ROLES[model.role]).querySelector(".model-name").textContent = model.name;
    return item;
  });
  $("model-notes").replaceChildren(...notes);
  $("sample").disabled = !reply.samples;
}

start();
