// One WebRTC session with the server: camera (and microphone) out, swapped video (and the sound, in step) back,
// "control" DataChannel both ways.
import { postJSON } from "./api.js";

/** Wait until ICE gathering is complete: the server (aiortc) does not take trickled candidates. */
export function gatheringComplete(pc, timeoutMs = 5000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

export class StreamSession {
  /**
   * @param {MediaStream} localStream camera stream to send, with a microphone track when sound is sent
   * @param {object} options session options (model, swap, feather, color, boxes, keep_mouth)
   * @param {{onTrack: function(MediaStream), onServerStats: function(object), onOptions: function(object),
   *   onState: function(string)}} handlers (onOptions: the server's {"type": "options", "options", "reason"?})
   */
  constructor(localStream, options, handlers) {
    this.localStream = localStream;
    this.options = options;
    this.handlers = handlers;
    this.pc = null;
    this.channel = null;
    this.sessionId = null;
  }

  async start() {
    const pc = new RTCPeerConnection();
    this.pc = pc;
    this.channel = pc.createDataChannel("control");
    this.channel.onmessage = (event) => this._onMessage(event.data);
    // Video first, then at most one audio track: the server takes one of each.
    for (const track of this.localStream.getVideoTracks()) pc.addTrack(track, this.localStream);
    for (const track of this.localStream.getAudioTracks().slice(0, 1)) pc.addTrack(track, this.localStream);
    pc.ontrack = (event) => this.handlers.onTrack(event.streams[0] || new MediaStream([event.track]));
    pc.onconnectionstatechange = () => this.handlers.onState(pc.connectionState);
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    const answer = await postJSON("offer", {
      sdp: pc.localDescription.sdp, type: pc.localDescription.type, options: this.options,
    });
    this.sessionId = answer.session_id;
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
  }

  _onMessage(data) {
    let message;
    try { message = JSON.parse(data); } catch (_) { return; }
    if (message.type === "stats") this.handlers.onServerStats(message);
    else if (message.type === "options" && this.handlers.onOptions) this.handlers.onOptions(message);
    else if (message.type === "error") this.handlers.onState(`server: ${message.message}`);
  }

  /** Change options live; the server applies them from the next frame. */
  sendOptions(options) {
    this.options = options;
    if (this.channel && this.channel.readyState === "open") {
      this.channel.send(JSON.stringify({ type: "options", ...options }));
    }
  }

  /** getStats() report of the peer connection, or null when stopped. */
  async stats() {
    return this.pc ? this.pc.getStats() : null;
  }

  stop() {
    if (this.channel) this.channel.close();
    if (this.pc) this.pc.close();
    this.pc = null;
    this.channel = null;
  }
}
