// Turning RTCStatsReport snapshots into the figures the page shows: fps, round-trip time, jitter-buffer delay.

/** Figures from one getStats() report, using the previous snapshot for per-interval averages. */
export function summarizeStats(report, previous) {
  const result = { fpsIn: null, fpsOut: null, rttMs: null, jitterBufferMs: null, snapshot: {} };
  report.forEach((entry) => {
    if (entry.type === "inbound-rtp" && entry.kind === "video") {
      result.fpsIn = entry.framesPerSecond ?? result.fpsIn;
      result.snapshot.jitterDelay = entry.jitterBufferDelay;
      result.snapshot.jitterCount = entry.jitterBufferEmittedCount;
      result.snapshot.framesDecoded = entry.framesDecoded;
      result.snapshot.timestamp = entry.timestamp;
    } else if (entry.type === "outbound-rtp" && entry.kind === "video") {
      result.fpsOut = entry.framesPerSecond ?? result.fpsOut;
    } else if (entry.type === "candidate-pair" && (entry.nominated || entry.selected) && entry.state === "succeeded") {
      if (typeof entry.currentRoundTripTime === "number") result.rttMs = entry.currentRoundTripTime * 1000;
    }
  });
  const now = result.snapshot;
  if (previous && now.jitterCount > (previous.jitterCount ?? 0)) {
    // jitterBufferDelay is cumulative seconds over all emitted frames: average it over this interval.
    result.jitterBufferMs = 1000 * (now.jitterDelay - previous.jitterDelay) / (now.jitterCount - previous.jitterCount);
  } else if (now.jitterCount) {
    result.jitterBufferMs = 1000 * now.jitterDelay / now.jitterCount;
  }
  if (result.fpsIn == null && previous && now.framesDecoded != null && now.timestamp > previous.timestamp) {
    result.fpsIn = (1000 * (now.framesDecoded - previous.framesDecoded)) / (now.timestamp - previous.timestamp);
  }
  return result;
}

/** A number with a unit, or a dash. */
export function show(value, unit = "", digits = 1) {
  return typeof value === "number" && Number.isFinite(value) ? `${value.toFixed(digits)}${unit}` : "\u2013";
}
