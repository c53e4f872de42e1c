// The digits pad: strokes on a canvas, reduced to the digit model's 16x16 input (ink bright on dark, in [0,1],
// row-major), sent to /api/digits.
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

/** Wire the pad: pointer strokes, clear, classify on stroke end. `onError` shows a message. */
export function setupDigitsPad({ pad, preview, clearButton, classifyButton, list, onError }) {
  const context = pad.getContext("2d");
  let drawing = false;
  let last = null;

  const clear = () => {
    context.fillStyle = "#000";
    context.fillRect(0, 0, pad.width, pad.height);
    drawPreview(preview, null);
    list.replaceChildren();
    list.removeAttribute("data-digit");
  };
  const point = (event) => {
    const rect = pad.getBoundingClientRect();
    return { x: (event.clientX - rect.left) * (pad.width / rect.width), y: (event.clientY - rect.top) * (pad.height / rect.height) };
  };
  const stroke = (from, to) => {
    context.strokeStyle = "#fff";
    context.lineWidth = pad.width / 11;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x, to.y);
    context.stroke();
  };

  const classify = async () => {
    const rows = canvasToDigitInput(pad);
    drawPreview(preview, rows);
    if (!rows) return;
    try {
      const answer = await postJSON("api/digits", { image: rows });
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
    } catch (err) {
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
  clear();
}
