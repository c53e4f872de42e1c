import asyncio, sys, logging
import stream_server.audio as sa
if sys.argv[1] == "nodelay":
    original = sa.AudioRelay.push
    def push(self, audio):
        real = self._delay
        class Zero:
            seconds = 0.0 if real.seconds is not None else None
        self._delay = Zero()
        try:
            original(self, audio)
        finally:
            self._delay = real
    sa.AudioRelay.push = push
from stream_server.config import ServerConfig
from tests.fixtures.server import RunningServer
from clients.avsync import measure_av, format_av_summary
from clients.webrtc import ServerEndpoint
from faces.synthetic import IDENTITY_A, render_sequence
from pathlib import Path
logging.basicConfig(level=logging.ERROR)
srv = RunningServer(ServerConfig(pipeline="swap", models_dir=Path("models/demo")))
try:
    frames = [r.frame for r in render_sequence(IDENTITY_A, 12, size=(640, 480), seed=5, fps=15)]
    r = asyncio.run(measure_av(ServerEndpoint(srv.url), frames, 15.0, 12.0))
    print(format_av_summary(r.summary()))
    v, a, o = r.video_round_trip_ms, r.audio_round_trip_ms, r.offset_ms
    d = r.server_audio_delay_ms; print("delay", d, "criterion", a["p50"] >= 0.6 * d, "bound", abs(o["p50"]) <= 40)
finally:
    srv.stop()
