// The swapstream page: camera in, swapped video out, live controls and stats; a digits tab.
import { getJSON, ServerError } from "./api.js";
import { setupDigitsPad } from "./digits.js";
import { show, summarizeStats } from "./stats.js";
import { StreamSession } from "./stream.js";
import { Studio } from "./studio.js";
import { watchSession } from "./viewer.js";

const $ = (id) => document.getElementById(id);

const ui = {
  message: $("message"),
  camera: $("camera"),
  resolution: $("resolution"),
  start: $("start"),
  stop: $("stop"),
  state: $("state"),
  local: $("local"),
  remote: $("remote"),
  model: $("model"),
  direction: $("direction"),
  feather: $("feather"),
  featherValue: $("feather-value"),
  color: $("color"),
  swap: $("swap"),
  boxes: $("boxes"),
  keepMouth: $("keep-mouth"),
  serverInfo: $("server-info"),
  sendAudio: $("send-audio"),
  hearReturned: $("hear-returned"),
  stages: document.querySelector("#stages tbody"),
};

let session = null;
let localStream = null;
let statsTimer = null;
let previousSnapshot = null;
let swapModels = [];
let modelsLoaded = false;

function showMessage(text) {
  ui.message.textContent = text;
  ui.message.hidden = !text;
}

function setState(text) {
  ui.state.textContent = text;
  document.body.dataset.state = text;
}

/** The options the controls describe, in the server's vocabulary (docs/CONTRACTS.md). */
function currentOptions() {
  return {
    model: ui.model.value || ui.direction.value,
    swap: ui.swap.checked,
    feather: Number(ui.feather.value),
    color: ui.color.value,
    boxes: ui.boxes.checked,
    keep_mouth: ui.keepMouth.checked,
  };
}

function cameraErrorMessage(err) {
  switch (err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera permission was refused. Allow the camera for this page (the icon in the address bar) and press Start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera matches the choice. Pick another camera or a lower resolution.";
    case "NotReadableError":
      return "The camera is busy in another application. Close it there and press Start again.";
    default:
      return `The camera could not start: ${err.name}: ${err.message}`;
  }
}

async function listCameras() {
  if (!navigator.mediaDevices?.enumerateDevices) return;
  const chosen = ui.camera.value;
  const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
  const options = [new Option("default camera", "")];
  devices.forEach((device, index) => options.push(new Option(device.label || `camera ${index + 1}`, device.deviceId)));
  ui.camera.replaceChildren(...options);
  ui.camera.value = chosen;
}

/** A model as the list shows it: a Studio model also names the people of its consent record. */
function modelLabel(model) {
  let label = `${model.name} (${model.direction})`;
  if (model.consent && model.consent.people.length) label += `: ${model.consent.people.join(", ")}`;
  if (model.quality_limited) label += " (quality limited: photos only)";
  return label;
}

/** Fill the model list from /api/models: the server's defaults the first time, the user's choice after that. */
async function loadModels() {
  try {
    const info = await getJSON("api/models");
    const chosen = ui.model.value;
    swapModels = info.models.filter((m) => m.kind === "swap");
    const options = [new Option("by direction", "")];
    swapModels.forEach((m) => options.push(new Option(modelLabel(m), m.name)));
    ui.model.replaceChildren(...options);
    if (modelsLoaded) {
      ui.model.value = swapModels.some((m) => m.name === chosen) ? chosen : "";
    } else {
      applyDefaults(info.defaults || {});
    }
    modelsLoaded = true;
    syncDirection();
    ui.serverInfo.textContent = `pipeline ${info.pipeline}, inference on ${info.provider || "n/a"}, ${swapModels.length} swap model(s)`;
    document.body.dataset.models = "loaded";
  } catch (err) {
    showMessage(err instanceof ServerError ? err.message : `The server is unreachable: ${err.message}`);
    document.body.dataset.models = "failed";
  }
}

function applyDefaults(defaults) {
  if (defaults.model === "a2b" || defaults.model === "b2a") ui.direction.value = defaults.model;
  else if (swapModels.some((m) => m.name === defaults.model)) ui.model.value = defaults.model;
  if (typeof defaults.feather === "number") ui.feather.value = defaults.feather;
  if (defaults.color) ui.color.value = defaults.color;
  if (typeof defaults.swap === "boolean") ui.swap.checked = defaults.swap;
  if (typeof defaults.boxes === "boolean") ui.boxes.checked = defaults.boxes;
  if (typeof defaults.keep_mouth === "boolean") ui.keepMouth.checked = defaults.keep_mouth;
  ui.featherValue.textContent = ui.feather.value;
}

/** The server answered with the options in force; with a reason it changed them itself (a model was removed). */
function optionsInForce(message) {
  const model = message.options.model;
  document.body.dataset.model = model;
  if (!message.reason) return;
  showMessage(message.reason);
  if (model === "a2b" || model === "b2a") {
    ui.model.value = "";
    ui.direction.value = model;
  } else {
    ui.model.value = model;
  }
  loadModels();
}

function syncDirection() {
  const model = swapModels.find((m) => m.name === ui.model.value);
  ui.direction.disabled = Boolean(model);
  if (model && model.direction) ui.direction.value = model.direction;
}

function renderServerStats(stats) {
  $("stat-server-fps").textContent = show(stats.fps);
  $("stat-server-added").textContent = show(stats.added_ms, " ms");
  $("stat-server-dropped").textContent = `${stats.frames_dropped ?? 0} of ${stats.frames_in ?? 0}`;
  const rows = Object.entries(stats.stage_ms || {}).map(([stage, ms]) => {
    const row = document.createElement("tr");
    const name = document.createElement("th");
    name.textContent = stage;
    const value = document.createElement("td");
    value.textContent = show(ms);
    row.append(name, value);
    return row;
  });
  ui.stages.replaceChildren(...rows);
}

async function pollStats() {
  if (!session) return;
  const report = await session.stats();
  if (!report) return;
  const figures = summarizeStats(report, previousSnapshot);
  previousSnapshot = figures.snapshot;
  $("stat-fps-out").textContent = show(figures.fpsOut);
  $("stat-fps-in").textContent = show(figures.fpsIn);
  $("stat-rtt").textContent = show(figures.rttMs, " ms");
  $("stat-jitter").textContent = show(figures.jitterBufferMs, " ms");
}

async function start() {
  showMessage("");
  ui.start.disabled = true;
  const [width, height] = ui.resolution.value.split("x").map(Number);
  const video = { width: { ideal: width }, height: { ideal: height } };
  if (ui.camera.value) video.deviceId = { exact: ui.camera.value };
  try {
    setState("starting camera");
    // The microphone only when asked; the server sends it back in step with the swapped video.
    localStream = await navigator.mediaDevices.getUserMedia({ video, audio: ui.sendAudio.checked });
  } catch (err) {
    showMessage(cameraErrorMessage(err));
    setState("idle");
    ui.start.disabled = false;
    return;
  }
  ui.local.srcObject = localStream;
  ui.sendAudio.disabled = true;
  await listCameras();
  session = new StreamSession(localStream, currentOptions(), {
    onTrack: (stream) => { ui.remote.srcObject = stream; },
    onServerStats: renderServerStats,
    onOptions: optionsInForce,
    onState: (state) => {
      setState(state);
      if (state === "failed") showMessage("The connection to the server failed (ICE). Check that the server is reachable and try again.");
    },
  });
  try {
    setState("connecting");
    await session.start();
  } catch (err) {
    showMessage(err instanceof ServerError ? err.message : `Could not connect: ${err.message}`);
    stop();
    return;
  }
  ui.stop.disabled = false;
  document.body.dataset.session = session.sessionId;
  statsTimer = setInterval(pollStats, 1000);
}

function stop() {
  clearInterval(statsTimer);
  statsTimer = null;
  previousSnapshot = null;
  if (session) session.stop();
  session = null;
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  localStream = null;
  ui.local.srcObject = null;
  ui.remote.srcObject = null;
  ui.start.disabled = false;
  ui.stop.disabled = true;
  ui.sendAudio.disabled = false;
  setState("idle");
}

/** The returned sound plays only when asked: by default it would echo the user's own voice back. */
function syncReturnedAudio() {
  ui.remote.muted = !ui.hearReturned.checked;
}

function optionsChanged() {
  ui.featherValue.textContent = ui.feather.value;
  syncDirection();
  if (session) session.sendOptions(currentOptions());
}

let studio = null;

function selectTab(name) {
  for (const tab of ["stream", "digits", "studio"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`panel-${tab}`).hidden = tab !== name;
  }
  if (name === "studio" && studio) studio.shown();
}

/** "Use this model" in the Studio: pick the new model in the controls and send it over the control channel. */
async function useStudioModel(name) {
  await loadModels();
  if (!swapModels.some((m) => m.name === name)) {
    showMessage(`The server does not list the model ${name} yet; reload the page once it does.`);
    return;
  }
  ui.model.value = name;
  optionsChanged();
  selectTab("stream");
}

ui.start.addEventListener("click", start);
ui.stop.addEventListener("click", stop);
for (const control of [ui.model, ui.direction, ui.color, ui.swap, ui.boxes, ui.keepMouth]) control.addEventListener("change", optionsChanged);
ui.feather.addEventListener("input", optionsChanged);
ui.hearReturned.addEventListener("change", syncReturnedAudio);
$("tab-stream").addEventListener("click", () => selectTab("stream"));
$("tab-digits").addEventListener("click", () => selectTab("digits"));
$("tab-studio").addEventListener("click", () => selectTab("studio"));
window.addEventListener("beforeunload", stop);

const watchId = new URLSearchParams(window.location.search).get("watch");
if (watchId) {
  // Watch mode: only the swapped stream, filling the window (an OBS browser source shows exactly this).
  document.body.classList.add("watch");
  ui.remote.controls = false;
  // &audio=1 plays the session's sound (an OBS browser source then captures it).
  ui.remote.muted = new URLSearchParams(window.location.search).get("audio") !== "1";
  watchSession(watchId, ui.remote)
    .then(() => setState("watching"))
    .catch((err) => showMessage(err.message));
} else {
  setupDigitsPad({
    pad: $("pad"),
    preview: $("preview"),
    clearButton: $("clear"),
    classifyButton: $("classify"),
    list: $("top3"),
    correction: { panel: $("correct"), keys: $("digit-keys"), status: $("correct-status") },
    onError: showMessage,
  });
  studio = new Studio($("panel-studio"), { onUseModel: useStudioModel, onModelsChanged: loadModels, onError: showMessage });
  if (!navigator.mediaDevices?.getUserMedia) {
    showMessage("This browser gives the page no camera access: open it over https:// or from localhost.");
    ui.start.disabled = true;
  }
  listCameras().catch(() => {});
  loadModels();
}
