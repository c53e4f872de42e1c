// Watch mode (?watch=SESSION): plays a session's swapped stream through WHEP, full window, for OBS browser sources.
import { authHeaders, ServerError } from "./api.js";
import { gatheringComplete } from "./stream.js";

/** Receive session `sessionId` through POST whep/<id> into `video`; returns the peer connection. */
export async function watchSession(sessionId, video) {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" }); // the session's sound, when its publisher sends any
  pc.ontrack = (event) => { video.srcObject = event.streams[0] || new MediaStream([event.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc);
  let response;
  try {
    response = await fetch(`whep/${encodeURIComponent(sessionId)}`, {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/sdp" }),
      body: pc.localDescription.sdp,
    });
  } catch (err) {
    pc.close();
    throw new ServerError(`The server is unreachable: ${err.message}`);
  }
  if (response.status !== 201) {
    pc.close();
    throw new ServerError(`WHEP watch of session ${sessionId} failed (${response.status}): ${await response.text()}`);
  }
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  return pc;
}
