// The Studio tab: record or upload the source (A), upload the target (B), give consent, train on the server
// (/api/studio/jobs), follow its progress (Server-Sent Events), then use the new model in the live session.
import { getJSON, request, ServerError } from "./api.js";

const RECORD_SECONDS = 20;
const COUNTDOWN_SECONDS = 3;
const PROMPTS = [
  [0, "Look straight at the camera"],
  [3, "Turn your head slowly to the left"],
  [6, "... and slowly to the right"],
  [9, "Look up, then down"],
  [12, "Talk: count to ten, smile, blink"],
  [16, "Turn a little and keep talking"],
];
const FINAL_STATES = ["done", "failed", "cancelled"];
const STATE_TEXT = {
  queued: "Waiting for the job before it",
  extracting: "Finding faces",
  training: "Training",
  exporting: "Exporting the model",
  done: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};

const MARKUP = `
<p>Train a swap model on faces you bring: <strong>A</strong> is the person on camera, <strong>B</strong> the face
  put on them. The server trains it in the background (minutes from its base model on a fast machine, longer on
  a small one) and the live session can switch to it when it is done.</p>
<p id="studio-off" class="message" hidden></p>
<div class="studio-sides">
  <fieldset>
    <legend>Source (A): the person on camera</legend>
    <div class="studio-camera">
      <video id="studio-camera" autoplay muted playsinline></video>
      <div id="studio-overlay" class="studio-overlay" hidden></div>
    </div>
    <p id="studio-prompt" class="studio-prompt" aria-live="polite"></p>
    <button id="studio-record" type="button">Record ${RECORD_SECONDS} s from the camera</button>
    <button id="studio-record-stop" type="button" hidden>Stop recording</button>
    <span id="studio-timer" class="studio-timer"></span>
    <label>or upload videos / photos of A
      <input id="studio-files-a" type="file" multiple accept="video/*,image/*"></label>
    <ul id="studio-list-a" class="studio-files"></ul>
  </fieldset>
  <fieldset>
    <legend>Target (B): the face to put on A</legend>
    <label>Videos and/or photos of B <input id="studio-files-b" type="file" multiple accept="video/*,image/*"></label>
    <ul id="studio-list-b" class="studio-files"></ul>
    <p id="studio-photos-note" class="muted" hidden>B has photos only: the server warps each photo into other head
      poses and expressions, but what a photo never showed cannot be made up, so the swap will be rougher than
      with a video of B (quality is limited).</p>
  </fieldset>
</div>
<fieldset class="studio-consent">
  <legend>Consent (before anything is uploaded)</legend>
  <p class="muted">What is stored, on the server in its studio folder (<code>serve --studio DIR</code>) until you
    delete the job: the files you upload, the faces cut from them, the trained model, and a consent record
    (your statement, the names you type, the time, and a SHA-256 fingerprint of every file). The consent record is
    written into the model's manifest and shown with the model.</p>
  <label class="check"><input id="studio-agree" type="checkbox"> Every person shown in these files agreed to have
    their face used to make this face-swap model, and knows its output is AI-generated.</label>
  <label>Who they are <input id="studio-people" type="text" placeholder="e.g. Ann Example, Bo Example"></label>
</fieldset>
<div class="toolbar">
  <label>Model name <input id="studio-name" type="text" placeholder="my-pair" maxlength="40"></label>
  <label>Steps <input id="studio-steps" type="number" min="1" step="1" placeholder="server default"></label>
  <button id="studio-start" type="button" disabled>Upload and train</button>
  <button id="studio-cancel" type="button" hidden>Cancel job</button>
</div>
<section id="studio-job" class="studio-job" hidden>
  <h3><span id="studio-job-name"></span>: <span id="studio-state"></span></h3>
  <p><span id="studio-stage"></span> <span id="studio-eta" class="muted"></span></p>
  <progress id="studio-bar" max="1" value="0"></progress>
  <p id="studio-faces" class="muted"></p>
  <p id="studio-error" class="message" hidden></p>
  <pre id="studio-log" class="studio-log" hidden></pre>
  <ul id="studio-notes" class="muted"></ul>
  <div class="studio-results">
    <figure>
      <canvas id="studio-loss" width="420" height="200" aria-label="training loss"></canvas>
      <figcaption>loss: <span class="loss-a">A</span> and <span class="loss-b">B</span> by step</figcaption>
    </figure>
    <figure>
      <img id="studio-preview" alt="preview of the latest checkpoint" hidden>
      <figcaption>rows: A, A&rarr;B, B, B&rarr;A (latest checkpoint) <span class="badge">AI-generated</span></figcaption>
    </figure>
  </div>
  <button id="studio-use" type="button" hidden>Use this model</button>
</section>
<h3>Jobs on this server</h3>
<ul id="studio-jobs" class="studio-jobs"></ul>
`;

function formatSeconds(seconds) {
  if (seconds == null) return "";
  if (seconds < 90) return `about ${Math.round(seconds)} s left`;
  return `about ${Math.round(seconds / 60)} min left`;
}

function formatBytes(bytes) {
  return bytes > 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.ceil(bytes / 1e3)} kB`;
}

/** Parse a Server-Sent Events stream from fetch(); calls onData with each `data:` JSON. */
async function readEvents(response, onData, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) onData(JSON.parse(data));
      }
    }
  } finally {
    if (signal.aborted) reader.cancel().catch(() => {});
  }
}

/** Draw the two loss curves ([step, loss_a, loss_b] rows) on a canvas. */
function drawLosses(canvas, rows) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "#888";
  ctx.strokeRect(0.5, 0.5, width - 1, height - 1);
  if (rows.length < 2) return;
  const maxStep = rows[rows.length - 1][0];
  const values = rows.flatMap((r) => [r[1], r[2]]).filter(Number.isFinite);
  const top = Math.max(...values);
  const bottom = Math.min(...values);
  const x = (step) => 30 + (step / maxStep) * (width - 40);
  const y = (v) => height - 20 - ((v - bottom) / (top - bottom || 1)) * (height - 30);
  ctx.fillStyle = "#888";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(top.toFixed(3), 2, 12);
  ctx.fillText(bottom.toFixed(3), 2, height - 22);
  ctx.fillText(`step ${maxStep}`, width - 70, height - 5);
  for (const [column, colour] of [[1, "#2f6fde"], [2, "#d9822b"]]) {
    ctx.beginPath();
    ctx.strokeStyle = colour;
    rows.forEach((row, i) => (i ? ctx.lineTo(x(row[0]), y(row[column])) : ctx.moveTo(x(row[0]), y(row[column]))));
    ctx.stroke();
  }
}

export class Studio {
  /**
   * @param {HTMLElement} panel the Studio tab's section
   * @param {{onUseModel: function(string): Promise<void>, onModelsChanged: function(), onError: function(string)}} handlers
   */
  constructor(panel, handlers) {
    panel.innerHTML = MARKUP;
    this.panel = panel;
    this.handlers = handlers;
    this.files = { a: [], b: [] };
    this.camera = null;
    this.recorder = null;
    this.follow = null; // AbortController of the event stream being followed
    this.job = null;
    this.previewStep = null;
    this.ui = Object.fromEntries([...panel.querySelectorAll("[id^=studio-]")].map(
      (el) => [el.id.replace("studio-", "").replace(/-(\w)/g, (_, c) => c.toUpperCase()), el]));
    this.ui.record.addEventListener("click", () => this.record());
    this.ui.recordStop.addEventListener("click", () => this.stopRecording());
    for (const side of ["a", "b"]) {
      const input = this.ui[`files${side.toUpperCase()}`];
      input.addEventListener("change", () => { this.addFiles(side, [...input.files]); input.value = ""; });
    }
    for (const el of [this.ui.agree, this.ui.people, this.ui.name]) el.addEventListener("input", () => this.refresh());
    this.ui.start.addEventListener("click", () => this.start());
    this.ui.cancel.addEventListener("click", () => this.cancel());
    this.ui.use.addEventListener("click", () => this.useModel());
    this.refresh();
  }

  /** Called when the tab is shown: list the server's jobs (and say so if the Studio is off). */
  async shown() {
    try {
      const { jobs } = await getJSON("api/studio/jobs");
      this.ui.off.hidden = true;
      this.renderJobs(jobs);
      const running = jobs.find((j) => !FINAL_STATES.includes(j.state));
      if (running && !this.job) this.followJob(running.id);
    } catch (err) {
      this.ui.off.hidden = false;
      this.ui.off.textContent = /answered 404/.test(err.message)
        ? "The Studio is off on this server: start it with swapstream serve --studio DIR (needs the train extra)."
        : err.message;
    }
  }

  addFiles(side, files) {
    this.files[side].push(...files);
    this.renderFiles(side);
    this.refresh();
  }

  renderFiles(side) {
    const items = this.files[side].map((file, index) => {
      const item = document.createElement("li");
      item.textContent = `${file.name} (${formatBytes(file.size)}) `;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "remove";
      remove.addEventListener("click", () => { this.files[side].splice(index, 1); this.renderFiles(side); this.refresh(); });
      item.append(remove);
      return item;
    });
    this.ui[`list${side.toUpperCase()}`].replaceChildren(...items);
  }

  /** Enable Start only with files on both sides and consent given. */
  refresh() {
    const photosOnlyB = this.files.b.length > 0 && this.files.b.every((f) => f.type.startsWith("image/"));
    this.ui.photosNote.hidden = !photosOnlyB;
    const ready = this.files.a.length && this.files.b.length && this.ui.agree.checked
      && this.ui.people.value.trim() && this.ui.name.value.trim() && !this.recorder;
    this.ui.start.disabled = !ready;
  }

  async record() {
    try {
      this.camera = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    } catch (err) {
      this.handlers.onError(`The camera could not start for recording: ${err.name}: ${err.message}`);
      return;
    }
    this.ui.camera.srcObject = this.camera;
    this.ui.record.disabled = true;
    this.ui.overlay.hidden = false;
    for (let n = COUNTDOWN_SECONDS; n > 0; n -= 1) {
      this.ui.overlay.textContent = String(n);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    this.ui.overlay.hidden = true;
    const chunks = [];
    const type = ["video/webm;codecs=vp8", "video/webm", "video/mp4"].find((t) => MediaRecorder.isTypeSupported(t));
    this.recorder = new MediaRecorder(this.camera, type ? { mimeType: type } : {});
    this.recorder.ondataavailable = (event) => { if (event.data.size) chunks.push(event.data); };
    const stopped = new Promise((resolve) => { this.recorder.onstop = resolve; });
    this.recorder.start(1000);
    this.panel.dataset.recording = "on";
    this.ui.recordStop.hidden = false;
    const started = performance.now();
    const tick = setInterval(() => {
      const seconds = (performance.now() - started) / 1000;
      this.ui.timer.textContent = `${seconds.toFixed(0)} / ${RECORD_SECONDS} s`;
      this.ui.prompt.textContent = PROMPTS.filter(([at]) => at <= seconds).pop()[1];
      if (seconds >= RECORD_SECONDS) this.stopRecording();
    }, 200);
    await stopped;
    clearInterval(tick);
    const mime = this.recorder.mimeType || "video/webm";
    const blob = new Blob(chunks, { type: mime });
    const name = `camera-${new Date().toISOString().replace(/[:.]/g, "-")}.${mime.includes("mp4") ? "mp4" : "webm"}`;
    this.recorder = null;
    this.camera.getTracks().forEach((t) => t.stop());
    this.camera = null;
    this.ui.camera.srcObject = null;
    this.ui.prompt.textContent = "";
    this.ui.timer.textContent = "recorded";
    this.ui.record.disabled = false;
    this.ui.recordStop.hidden = true;
    this.panel.dataset.recording = "done";
    this.addFiles("a", [new File([blob], name, { type: mime })]);
  }

  stopRecording() {
    if (this.recorder && this.recorder.state === "recording") this.recorder.stop();
  }

  async start() {
    const options = {
      name: this.ui.name.value.trim(),
      consent: {
        statement: "Every person shown in these files agreed to have their face used to make this face-swap "
          + "model, and knows its output is AI-generated.",
        people: this.ui.people.value.split(",").map((p) => p.trim()).filter(Boolean),
      },
    };
    if (this.ui.steps.value) options.steps = Number(this.ui.steps.value);
    const form = new FormData();
    // options first: the server stores nothing before it has the consent record
    form.append("options", new Blob([JSON.stringify(options)], { type: "application/json" }));
    for (const side of ["a", "b"]) for (const file of this.files[side]) form.append(side, file, file.name);
    this.ui.start.disabled = true;
    this.ui.start.textContent = "Uploading...";
    try {
      const response = await request("api/studio/jobs", { method: "POST", body: form });
      const job = await response.json();
      this.files = { a: [], b: [] };
      this.renderFiles("a");
      this.renderFiles("b");
      this.followJob(job.id, job);
    } catch (err) {
      this.handlers.onError(err instanceof ServerError ? err.message : `Upload failed: ${err.message}`);
    } finally {
      this.ui.start.textContent = "Upload and train";
      this.refresh();
    }
  }

  /** Show one job and follow its events until it ends. */
  async followJob(id, first = null) {
    if (this.follow) this.follow.abort();
    const controller = new AbortController();
    this.follow = controller;
    this.previewStep = null;
    this.ui.job.hidden = false;
    if (first) this.render(first);
    try {
      const response = await request(`api/studio/jobs/${id}/events`, { signal: controller.signal });
      await readEvents(response, (status) => this.render(status), controller.signal);
    } catch (err) {
      if (!controller.signal.aborted) this.handlers.onError(err.message);
    }
    if (this.follow === controller) this.follow = null;
    this.shown();
  }

  render(job) {
    const finishedNow = job.state === "done" && this.job && this.job.id === job.id && this.job.state !== "done";
    this.job = job;
    if (finishedNow && this.handlers.onModelsChanged) this.handlers.onModelsChanged();
    this.panel.dataset.jobState = job.state;
    this.ui.jobName.textContent = job.title || job.name;
    this.ui.state.textContent = STATE_TEXT[job.state] || job.state;
    const p = job.progress || {};
    const step = p.step != null ? `step ${p.step} of ${p.steps}` : "";
    this.ui.stage.textContent = [p.stage, step].filter(Boolean).join(": ");
    this.ui.eta.textContent = formatSeconds(p.seconds_left);
    this.ui.bar.value = job.state === "done" ? 1 : (p.fraction ?? 0);
    const faces = job.faces || {};
    this.ui.faces.textContent = faces.a != null
      ? `faces found: ${faces.a} of A, ${faces.b} of B (each side needs ${faces.needed})` : "";
    this.ui.error.hidden = !job.error;
    this.ui.error.textContent = job.error || "";
    this.ui.log.hidden = !job.log_tail;
    this.ui.log.textContent = job.log_tail || "";
    this.ui.notes.replaceChildren(...(job.notes || []).map((note) => {
      const item = document.createElement("li");
      item.textContent = note;
      return item;
    }));
    if (job.losses) drawLosses(this.ui.loss, job.losses);
    if (job.preview && p.checkpoint_step !== this.previewStep) {
      this.previewStep = p.checkpoint_step;
      this.loadPreview(job.id);
    }
    this.ui.cancel.hidden = FINAL_STATES.includes(job.state);
    this.ui.use.hidden = !(job.state === "done" && job.models && job.models.length);
  }

  async loadPreview(id) {
    try {
      const response = await request(`api/studio/jobs/${id}/preview.png`);
      const url = URL.createObjectURL(await response.blob());
      this.ui.preview.onload = () => {
        URL.revokeObjectURL(url);
        this.panel.dataset.preview = "loaded";
      };
      this.ui.preview.src = url;
      this.ui.preview.hidden = false;
    } catch (err) {
      this.handlers.onError(err.message);
    }
  }

  async cancel() {
    if (!this.job) return;
    try {
      await request(`api/studio/jobs/${this.job.id}`, { method: "DELETE" });
    } catch (err) {
      this.handlers.onError(err.message);
    }
  }

  async useModel() {
    const model = this.job.models.find((name) => name.endsWith(".swap_a2b")) || this.job.models[0];
    await this.handlers.onUseModel(model);
    this.panel.dataset.used = model;
  }

  renderJobs(jobs) {
    this.ui.jobs.replaceChildren(...jobs.map((job) => {
      const item = document.createElement("li");
      item.textContent = `${job.title || job.name}: ${STATE_TEXT[job.state] || job.state} `;
      const show = document.createElement("button");
      show.type = "button";
      show.textContent = "show";
      show.addEventListener("click", () => this.followJob(job.id));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = FINAL_STATES.includes(job.state) ? "delete" : "cancel";
      remove.addEventListener("click", async () => {
        try {
          await request(`api/studio/jobs/${job.id}`, { method: "DELETE" });
        } catch (err) {
          this.handlers.onError(err.message);
        }
        this.shown();
        if (job.state === "done" && this.handlers.onModelsChanged) this.handlers.onModelsChanged();
      });
      item.append(show, remove);
      return item;
    }));
  }
}
