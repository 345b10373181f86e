// convnet serve: draw a digit, send it to /api/predict, show what both networks make of it.
// Plain JavaScript, no build step. All pictures are drawn on <canvas> from the JSON reply.
// Every text comes from the message catalogs (/api/messages); the switch changes the language
// in place, and render() rewrites each text from the state, so the drawing stays.
import { currentLanguage, element, fill, number, percent, pickLanguage, t, translate, useCatalog } from "/i18n.js";
import {
  $, ROLES, drawSweep, forgetMaps, greyColour, markCell, paintArray, showExplanations, showFilters, showMaps,
  showPredictions, showSharing,
} from "/views.js";
import { drawLegend, showC3, showField, showHead, showPooling } from "/insides.js";
import { showExplorer, showPresets, startExplorer } from "/explorer.js";

const STROKE_WIDTH = 20;
const STORED_LANGUAGE = "convnet.language";

const state = {
  source: null, // {kind: "png"} (the drawing pad) or {kind: "pixels", pixels} (an MNIST sample)
  view: { shift_x: 0, shift_y: 0, rotate: 0, scale: 1, noise: 0 },
  result: null,
  busy: false,
  again: false,
  filter: 0,
  position: 13 * 28 + 11, // a cell near the middle, where a digit has ink
  timer: null,
  sample: null, // the MNIST sample shown, for its label
  sweep: null, // the last shift sweep, redrawn when the language changes
  catalogs: null, // /api/messages
  models: null, // /api/models in the current language
  // Which networks answer: per role, trained with (true) or without (false) augmentation;
  // null keeps the server's default pair.
  choice: { cnn: null, ordinary: null },
  // The cells looked into: the one under the pointer (its receptive field), a pooling
  // cell and a C3 cell; maps counted from 0 here, from 1 on the page.
  field: { layer: "c3", map: 0, row: 4, column: 4 },
  pooling: { layer: "s2", map: 0, row: 6, column: 6 },
  c3: { map: 0, row: 4, column: 4 },
  picked: { pooling: false, c3: false }, // until the visitor picks, each reply picks for them
};

// ---- looking into cells --------------------------------------------------------------

const PICKERS = {
  pooling: { fields: ["layer", "map", "row", "column"], show: () => showPooling(state.result, state.pooling) },
  c3: { fields: ["map", "row", "column"], show: () => showC3(state.result, state.c3) },
};

// The picker's inputs from the state (map numbers from 1), their limits from the reply.
function showPicker(name) {
  const pick = state[name];
  const maps = state.result.feature_maps[name === "c3" ? "c3" : pick.layer];
  const [count, side] = [maps.shape[0], maps.shape[1]];
  pick.map = Math.min(pick.map, count - 1);
  pick.row = Math.min(pick.row, side - 1);
  pick.column = Math.min(pick.column, side - 1);
  for (const field of PICKERS[name].fields) {
    const input = $(`${name}-${field}`);
    if (field === "map") input.max = String(count);
    if (field === "row" || field === "column") input.max = String(side - 1);
    input.value = String(field === "map" ? pick.map + 1 : pick[field]);
  }
  PICKERS[name].show();
}

for (const [name, picker] of Object.entries(PICKERS)) {
  for (const field of picker.fields) {
    $(`${name}-${field}`).addEventListener("change", (event) => {
      const input = event.target;
      if (field === "layer") {
        state[name].layer = input.value;
      } else {
        const value = Math.round(Number(input.value));
        const clamped = Math.min(Math.max(Number.isFinite(value) ? value : 0, Number(input.min)), Number(input.max));
        state[name][field] = field === "map" ? clamped - 1 : clamped;
      }
      state.picked[name] = true;
      if (state.result) showPicker(name);
    });
  }
}

// Until the visitor picks a cell, a telling one: the pooling window whose four cells differ
// most (a clear winner), the C3 cell of largest value (a sum that is not all zero).
function autoPick(reply) {
  const best = (rows, score) => {
    let found = { row: 0, column: 0, score: -Infinity };
    rows.forEach((line, row) => line.forEach((_, column) => {
      const value = score(row, column);
      if (value > found.score) found = { row, column, score: value };
    }));
    return found;
  };
  if (!state.picked.pooling) {
    const { layer, map } = state.pooling;
    const source = reply.feature_maps[layer === "s2" ? "c1" : "c3"].data[map];
    const window = (row, column) => [0, 1].flatMap((i) => [0, 1].map((j) => source[2 * row + i][2 * column + j]));
    const found = best(reply.feature_maps[layer].data[map], (row, column) => {
      const values = window(row, column);
      return Math.max(...values) - Math.min(...values);
    });
    Object.assign(state.pooling, { row: found.row, column: found.column });
  }
  if (!state.picked.c3) {
    const maps = reply.feature_maps.c3.data[state.c3.map];
    const found = best(maps, (row, column) => maps[row][column]);
    Object.assign(state.c3, { row: found.row, column: found.column });
  }
}

// A cell under the pointer: its receptive field, and a pooling or C3 cell followed there.
function lookAt(cell, canvas) {
  if (!state.result) return;
  state.field = cell;
  markCell(cell, canvas);
  showField(state.result, cell);
  if (cell.layer === "s2" || cell.layer === "s4") {
    state.pooling = { ...cell };
    state.picked.pooling = true;
    showPicker("pooling");
  } else if (cell.layer === "c3") {
    state.c3 = { map: cell.map, row: cell.row, column: cell.column };
    state.picked.c3 = true;
    showPicker("c3");
  }
}

// The query that picks the pair the switches chose (empty for the default pair).
function choiceQuery() {
  return Object.entries(state.choice)
    .filter(([, augment]) => augment !== null)
    .map(([role, augment]) => [`${role}_augment`, String(augment)]);
}

const undertrained = () => Boolean(state.models && state.models.models.some((m) => m.undertrained));

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
  state.sample = null;
  showSampleLabel();
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
  state.sample = null;
  state.sweep = null;
  showSampleLabel();
  $("verdict").textContent = t("page.verdict.start");
  for (const id of Object.values(ROLES)) $(id).querySelector(".top").replaceChildren();
  $("seen").getContext("2d").clearRect(0, 0, 28, 28);
  $("sweep-figure").hidden = true;
});

function showSampleLabel() {
  const sample = state.sample;
  $("sample-label").textContent = sample
    ? t("page.draw.sample_label", { index: number(sample.index), label: sample.name })
    : t(state.source ? "page.draw.yours" : "page.draw.hint");
}

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
  state.sample = sample;
  showSampleLabel();
  requestPrediction();
});

// ---- talking to the server -----------------------------------------------------------

// The server works on a few predictions at once and answers one more with 503 and
// Retry-After (seconds): wait that long, a little more at random so that waiting pages do
// not all come back together, and ask again, a few times before showing the error.
const BUSY_RETRIES = 5;

// Every call names the page's language, so that the server words its refusals in it; but
// /api/messages, which without ?lang= sends every catalog and the browser's language.
function withLanguage(url) {
  const address = new URL(url, window.location.href);
  const own = address.pathname === "/api/messages" || address.searchParams.has("lang");
  if (!own) address.searchParams.set("lang", currentLanguage());
  return address.pathname + address.search;
}

async function fetchJson(url, options) {
  try {
    url = withLanguage(url);
    let response = await fetch(url, options);
    for (let retry = 0; retry < BUSY_RETRIES && response.status === 503; retry += 1) {
      const seconds = Number(response.headers.get("Retry-After"));
      if (!(seconds > 0)) break;
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000 * (1 + Math.random() / 2)));
      response = await fetch(url, options);
    }
    const reply = await response.json();
    if (!response.ok) throw new Error(reply.error || `HTTP ${response.status}`);
    $("error").hidden = true;
    return reply;
  } catch (error) {
    $("error").textContent = t("page.error.server", { message: error.message });
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
  const query = new URLSearchParams([...Object.entries(view).map(([k, v]) => [k, String(v)]), ...choiceQuery()]);
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
  autoPick(reply);
  showResult();
  document.body.dataset.predictions = String(Number(document.body.dataset.predictions || 0) + 1);
}

function showResult() {
  const reply = state.result;
  paintArray($("seen"), reply.pixels, (v) => greyColour(v / 255));
  showPredictions(reply.predictions, reply.view, undertrained());
  showExplanations(reply);
  showMaps(reply, lookAt);
  showField(reply, state.field);
  showFilters(reply.c1_filters, state.filter, pickFilter);
  showSharing(reply, state.filter, state.position);
  showPicker("pooling");
  showPicker("c3");
  showHead(reply);
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
    $("play").textContent = t("page.sharing.play");
    return;
  }
  $("play").textContent = t("page.sharing.pause");
  state.timer = setInterval(() => stepTo(state.position + 1), 80);
});

// ---- moving the digit ----------------------------------------------------------------

const signed = (v) => `${v > 0 ? "+" : ""}${number(v)}`;
const SLIDERS = {
  shift_x: { id: "shift-x", text: (v) => t("page.unit.px", { value: signed(v) }) },
  shift_y: { id: "shift-y", text: (v) => t("page.unit.px", { value: signed(v) }) },
  rotate: { id: "rotate", text: (v) => t("page.unit.degrees", { value: signed(v) }) },
  scale: { id: "scale", text: (v) => t("page.unit.times", { value: number(v, 2) }) },
  noise: { id: "noise", text: (v) => t("page.unit.sigma", { value: number(v, 2) }) },
};

function showSliders() {
  for (const [key, slider] of Object.entries(SLIDERS)) $(`${slider.id}-value`).textContent = slider.text(state.view[key]);
}

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
  state.sweep = { shifts, series, answers, kept };
  showSweep();
  $("sweep-figure").hidden = false;
});

function showSweep() {
  if (!state.sweep) return;
  const { shifts, series, answers, kept } = state.sweep;
  drawSweep(shifts, series);
  const caption = t("page.sweep.caption", {
    cnn: answers.cnn, ordinary: answers.ordinary, shifts: number(shifts.length),
    cnn_kept: number(kept.cnn), ordinary_kept: number(kept.ordinary),
  });
  $("sweep-caption").textContent = undertrained() ? `${caption} ${t("page.sweep.undertrained")}` : caption;
}


// ---- language and models ------------------------------------------------------------

// The notes at the top: each network's name, size, test error and origin, and a warning
// for an undertrained one (the server words the origin and the warning in this language).
function showModels() {
  const notes = [];
  for (const model of state.models.models) {
    const item = document.createElement("li");
    const error = model.test_error === null
      ? t("page.note.error_unknown")
      : t("page.note.error", { error: percent(model.test_error, 2), images: number(model.test_images ?? 0) });
    item.append(
      element("b", `${t(`page.role.${model.role}`)}: ${model.name}`, `${model.role}-colour`),
      ` · ${t("page.note.params", { count: number(model.params) })} · ${error} · ${model.recipe_text} · ${model.origin}`,
    );
    item.dataset.role = model.role;
    notes.push(item);
    if (model.undertrained) notes.push(element("li", `⚠ ${model.warning}`, "warning"));
    if (model.int8) {
      notes.push(element("li", t("page.precision.note", {
        role: t(`page.role.${model.role}`), count: number(model.int8.calibration_images),
        agreement: percent(model.int8.top1_agreement, 1), checked: number(model.int8.checked_images),
      }), "precision"));
    }
    const block = $(ROLES[model.role]);
    block.querySelector(".model-name").textContent = model.name;
    block.querySelector(".badge.undertrained").hidden = !model.undertrained;
    const precision = block.querySelector(".badge.precision");
    precision.hidden = model.precision === "fp32";
    precision.textContent = model.precision;
    precision.title = t("page.precision.badge_title");
  }
  $("model-notes").replaceChildren(...notes);
  showPair();
}

// Whether the pair differs in architecture only (the server's sentence), and the switches
// that pick each network trained with or without augmentation, where the server has both.
function showPair() {
  const { pair, choices, models } = state.models;
  const holder = $("pair");
  holder.classList.toggle("matched", pair.matched);
  holder.classList.toggle("unmatched", !pair.matched);
  holder.dataset.matched = String(pair.matched);
  $("pair-sentence").textContent = `${pair.matched ? "✓" : "⚠"} ${pair.sentence}`;
  const groups = Object.entries(choices).map(([role, settings]) => {
    const current = models.find((m) => m.role === role).augment;
    const group = element("div", "", "switch");
    group.setAttribute("role", "group");
    group.dataset.role = role;
    group.append(element("span", t(`page.switch.${role}`), `${role}-colour`));
    for (const augment of [true, false]) {
      const button = element("button", t(augment ? "page.switch.with" : "page.switch.without"));
      button.type = "button";
      button.dataset.augment = String(augment);
      button.setAttribute("aria-pressed", String(current === augment));
      button.disabled = !settings.includes(augment);
      if (button.disabled) button.title = t("page.switch.missing");
      button.addEventListener("click", () => choose(role, augment));
      group.append(button);
    }
    return group;
  });
  $("switches").replaceChildren(...groups);
  const missing = Object.values(choices).some((settings) => settings.length < 2);
  if (missing) $("switches").append(element("p", t("page.switch.how"), "hint"));
  $("unfinished").replaceChildren(...pair.unfinished.map((item) => element("li", `⏸ ${item.sentence}`)));
}

async function choose(role, augment) {
  state.choice[role] = augment;
  await loadModels(currentLanguage());
  state.sweep = null;
  $("sweep-figure").hidden = true;
  requestPrediction();
}

async function loadModels(lang) {
  const query = new URLSearchParams([["lang", lang], ...choiceQuery()]);
  const models = await fetchJson(`/api/models?${query}`);
  if (models && currentLanguage() === lang) {
    state.models = models;
    render();
  }
  return models;
}

function showLanguages() {
  const holder = $("languages");
  holder.replaceChildren(
    ...Object.entries(state.catalogs.languages).map(([code, name]) => {
      const button = element("button", name);
      button.type = "button";
      button.lang = code;
      button.dataset.lang = code;
      button.setAttribute("aria-pressed", String(code === currentLanguage()));
      button.addEventListener("click", () => switchLanguage(code));
      return button;
    }),
  );
}

// Every text on the page, rewritten from the state in the current language.
function render() {
  translate();
  document.title = t("page.title");
  fill($("lead"), "page.lead", {
    lenet: element("strong", "LeNet-5", "cnn-colour"),
    ordinary: element("strong", t("page.lead.ordinary"), "ordinary-colour"),
  });
  fill($("footer"), "page.footer", { command: element("code", "convnet serve") });
  showLanguages();
  showSampleLabel();
  showSliders();
  $("play").textContent = t(state.timer ? "page.sharing.pause" : "page.sharing.play");
  showPresets();
  showExplorer();
  if (state.models) showModels();
  if (state.result) {
    forgetMaps();
    showResult();
  } else {
    $("verdict").textContent = t("page.verdict.start");
  }
  showSweep();
}

async function switchLanguage(lang) {
  useCatalog(lang, state.catalogs.messages[lang]);
  try {
    localStorage.setItem(STORED_LANGUAGE, lang);
  } catch {
    // storage refused (private mode): the choice lasts until the page is reloaded
  }
  render();
  await loadModels(lang);
}

// ---- start ---------------------------------------------------------------------------

function storedLanguage() {
  try {
    return localStorage.getItem(STORED_LANGUAGE);
  } catch {
    return null;
  }
}

async function start() {
  clearPad();
  drawLegend();
  state.catalogs = await fetchJson("/api/messages");
  if (!state.catalogs) return;
  const lang = pickLanguage({
    available: Object.keys(state.catalogs.messages), stored: storedLanguage(),
    fixed: state.catalogs.fixed, fallback: state.catalogs.default, browser: navigator.languages,
  });
  useCatalog(lang, state.catalogs.messages[lang]);
  startExplorer();
  render();
  // The reply, not state.models: a language chosen while it loaded keeps the latter unset
  // until its own reply, and whether samples exist does not depend on the language.
  const models = await loadModels(lang);
  if (!models) return;
  $("sample").disabled = !models.samples;
  document.body.dataset.ready = "1"; // laid out in its language, with the networks' notes
}

start();
