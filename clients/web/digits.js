// The digits pad: strokes on a canvas, reduced to the digit model's 16x16 input (ink bright on dark, in [0,1],
// row-major), sent to /api/digits; "was this right?" corrections go to /api/digits/corrections.
// training/digit_pad.py is the trainer's copy of the pad (size, line width) and of canvasToDigitInput; the
// browser test checks that the two give the same 16x16 for the same strokes.
import { postJSON } from "./api.js";

export const SIDE = 16;
// The digit fills this many of the 16 pixels along its longer side, centred, as in the training images.
const DIGIT_EXTENT = 14;

/** The 16x16 model input (rows of numbers in [0,1]) for the ink on a canvas, or null when it is blank. */
export function canvasToDigitInput(canvas) {
  const { width, height } = canvas;
  const pixels = canvas.getContext("2d").getImageData(0, 0, width, height).data;
  const ink = new Float32Array(width * height);
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      const value = (pixels[i] + pixels[i + 1] + pixels[i + 2]) / (3 * 255);
      ink[y * width + x] = value;
      if (value > 0.1) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
    }
  }
  if (x1 < 0) return null;
  // A square around the ink's bounding box, scaled so its longer side spans DIGIT_EXTENT of SIDE pixels.
  const box = Math.max(x1 - x0 + 1, y1 - y0 + 1);
  const span = (box * SIDE) / DIGIT_EXTENT;
  const cx = (x0 + x1 + 1) / 2, cy = (y0 + y1 + 1) / 2;
  const left = cx - span / 2, top = cy - span / 2, cell = span / SIDE;
  const rows = [];
  for (let r = 0; r < SIDE; r++) {
    const row = [];
    for (let c = 0; c < SIDE; c++) {
      // Area average over the source pixels that fall in this cell (sampled on a fine grid).
      let sum = 0, n = 0;
      const steps = Math.max(2, Math.ceil(cell));
      for (let sy = 0; sy < steps; sy++) {
        for (let sx = 0; sx < steps; sx++) {
          const x = Math.floor(left + (c + (sx + 0.5) / steps) * cell);
          const y = Math.floor(top + (r + (sy + 0.5) / steps) * cell);
          if (x >= 0 && y >= 0 && x < width && y < height) sum += ink[y * width + x];
          n++;
        }
      }
      row.push(Math.min(1, Math.max(0, sum / n)));
    }
    rows.push(row);
  }
  return rows;
}

/** Paint the 16x16 input on the preview canvas. */
export function drawPreview(canvas, rows) {
  const context = canvas.getContext("2d");
  const image = context.createImageData(SIDE, SIDE);
  for (let r = 0; r < SIDE; r++) {
    for (let c = 0; c < SIDE; c++) {
      const v = Math.round(255 * (rows ? rows[r][c] : 0));
      const i = (r * SIDE + c) * 4;
      image.data[i] = image.data[i + 1] = image.data[i + 2] = v;
      image.data[i + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
}

/** The three most likely digits from the server's probabilities. */
export function topThree(probabilities) {
  return probabilities.map((p, digit) => ({ digit, p })).sort((a, b) => b.p - a.p).slice(0, 3);
}

/** Wire the pad: pointer strokes, clear, classify on stroke end, corrections. `onError` shows a message.
 *
 * `list.dataset.state` is "pending" while a classification is under way and "done" when the newest one is
 * shown (answers to older strokes that arrive late are dropped). */
export function setupDigitsPad({ pad, preview, clearButton, classifyButton, list, correction, onError }) {
  const context = pad.getContext("2d");
  let drawing = false;
  let last = null;
  let asked = 0; // classifications started; only the newest one's answer is shown
  let shown = null; // { rows, digit } of the answer on screen, for a correction

  const keys = Array.from({ length: 10 }, (_, digit) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = String(digit);
    button.dataset.digit = String(digit);
    button.addEventListener("click", () => correct(digit));
    return button;
  });
  correction.keys.replaceChildren(...keys);

  const showCorrection = (offered) => {
    correction.panel.hidden = !offered;
    correction.status.textContent = "";
    for (const key of keys) key.disabled = false;
  };

  const correct = async (digit) => {
    if (!shown || correction.panel.hidden) return;
    const { rows, digit: predicted } = shown;
    shown = null;
    for (const key of keys) key.disabled = true;
    correction.status.textContent = "saving...";
    try {
      const stored = await postJSON("api/digits/corrections", { image: rows, label: digit, predicted });
      correction.status.textContent = digit === predicted
        ? `Thanks: kept as a ${digit} (${stored.count} samples stored).`
        : `Thanks: stored as a ${digit}, not a ${predicted} (${stored.count} samples stored).`;
      correction.panel.dataset.stored = String(digit);
    } catch (err) {
      correction.status.textContent = "";
      for (const key of keys) key.disabled = false;
      shown = { rows, digit: predicted };
      onError(err.message);
    }
  };

  const clear = () => {
    context.fillStyle = "#000";
    context.fillRect(0, 0, pad.width, pad.height);
    drawPreview(preview, null);
    list.replaceChildren();
    list.removeAttribute("data-digit");
    list.removeAttribute("data-state");
    asked++;
    shown = null;
    correction.panel.hidden = true;
    correction.panel.removeAttribute("data-stored");
  };
  const point = (event) => {
    const rect = pad.getBoundingClientRect();
    return { x: (event.clientX - rect.left) * (pad.width / rect.width), y: (event.clientY - rect.top) * (pad.height / rect.height) };
  };
  const stroke = (from, to) => {
    const width = pad.width / 11;
    context.beginPath();
    if (from.x === to.x && from.y === to.y) {
      // A tap: canvases draw nothing for a zero-length line, so make the round cap's dot by hand.
      context.fillStyle = "#fff";
      context.arc(from.x, from.y, width / 2, 0, 2 * Math.PI);
      context.fill();
      return;
    }
    context.strokeStyle = "#fff";
    context.lineWidth = width;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.moveTo(from.x, from.y);
    context.lineTo(to.x, to.y);
    context.stroke();
  };

  const classify = async () => {
    const rows = canvasToDigitInput(pad);
    drawPreview(preview, rows);
    const ticket = ++asked;
    if (!rows) {
      list.dataset.state = "empty";
      return;
    }
    list.dataset.state = "pending";
    try {
      const answer = await postJSON("api/digits", { image: rows });
      if (ticket !== asked) return; // the drawing changed while this answer was on its way
      const items = topThree(answer.probabilities).map(({ digit, p }) => {
        const li = document.createElement("li");
        li.dataset.digit = String(digit);
        li.textContent = `${digit}: ${(100 * p).toFixed(1)}%`;
        const bar = document.createElement("span");
        bar.className = "bar";
        bar.style.width = `${Math.round(150 * p)}px`;
        li.append(bar);
        return li;
      });
      list.replaceChildren(...items);
      list.dataset.digit = String(answer.digit);
      shown = { rows, digit: answer.digit };
      showCorrection(Boolean(answer.corrections));
      list.dataset.state = "done";
    } catch (err) {
      if (ticket !== asked) return;
      list.dataset.state = "failed";
      onError(err.message);
    }
  };

  pad.addEventListener("pointerdown", (event) => {
    drawing = true;
    last = point(event);
    stroke(last, last);
    pad.setPointerCapture?.(event.pointerId);
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const next = point(event);
    stroke(last, next);
    last = next;
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    classify();
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointerleave", end);
  clearButton.addEventListener("click", clear);
  classifyButton.addEventListener("click", classify);
  // "Press the right digit": the number keys work too while the question is shown.
  document.addEventListener("keydown", (event) => {
    if (correction.panel.hidden || pad.offsetParent === null || event.ctrlKey || event.metaKey || event.altKey) return;
    if (/^[0-9]$/.test(event.key) && !(event.target instanceof HTMLInputElement)) correct(Number(event.key));
  });
  clear();
}
