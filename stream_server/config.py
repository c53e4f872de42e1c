"""The server's configuration: one frozen dataclass built once from flags and SWAPSTREAM_* variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from faces.color import COLOR_MODES, ColorMode
from provenance.signer import SigningConfig, add_signing_flags, signing_config_from_flags
from rtc.jitterbuffer import JITTER_BUFFER_MODES, JitterBufferMode
from stream_server.addresses import is_loopback, normalized_origin
from stream_server.backends.triton import parse_triton_url
from stream_server.errors import ConfigError

PipelineMode = Literal["swap", "echo"]
PIPELINE_MODES: tuple[PipelineMode, ...] = get_args(PipelineMode)
LOCAL_INFERENCE = "local"
InferenceFallback = Literal["none", "local"]
INFERENCE_FALLBACKS: tuple[InferenceFallback, ...] = get_args(InferenceFallback)
MAX_BATCH_WAIT_MS = 2.0
UHD_PIXELS = 3840 * 2160


@dataclass(frozen=True)
class SessionOptions:
    """Per-session processing options, set by /offer "options" and the "control" DataChannel."""

    model: str = "a2b"
    swap: bool = True
    feather: int = 4
    color: ColorMode = "rct"
    boxes: bool = False
    keep_mouth: bool = False
    """Leave the speaker's own lips and teeth in the frame (the rest of the face swapped): every movement of the
    mouth kept, at the price of the mouth being the speaker's."""

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"option 'model' must be a non-empty string, got {self.model!r}")
        if not isinstance(self.swap, bool):
            raise ConfigError(f"option 'swap' must be true or false, got {self.swap!r}")
        if isinstance(self.feather, bool) or not isinstance(self.feather, int) or not 0 <= self.feather <= 64:
            raise ConfigError(f"option 'feather' must be an integer number of pixels in 0..64, got {self.feather!r}")
        if self.color not in COLOR_MODES:
            raise ConfigError(f"option 'color' must be one of {', '.join(COLOR_MODES)}, got {self.color!r}")
        if not isinstance(self.boxes, bool):
            raise ConfigError(f"option 'boxes' must be true or false, got {self.boxes!r}")
        if not isinstance(self.keep_mouth, bool):
            raise ConfigError(f"option 'keep_mouth' must be true or false, got {self.keep_mouth!r}")

    def updated(self, changes: Mapping[str, Any]) -> SessionOptions:
        """A copy with `changes` applied; unknown keys and bad values raise ConfigError naming the key."""
        known = {option.name for option in fields(self)}
        unknown = sorted(set(changes) - known - {"type"})
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}; known options: {', '.join(sorted(known))}")
        values = {key: changes[key] for key in known if key in changes}
        if "feather" in values and isinstance(values["feather"], float) and values["feather"].is_integer():
            values["feather"] = int(values["feather"])
        return replace(self, **values)

    def as_dict(self) -> dict[str, Any]:
        """The options as the API and the control channel show them."""
        return asdict(self)


@dataclass(frozen=True)
class ServerConfig:
    """Everything `swapstream serve` needs, validated once; handlers read it from app[CONFIG_KEY]."""

    models_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_sessions: int = 4
    pipeline: PipelineMode = "swap"
    disclosure_mark: bool = True
    jitter_buffer: JitterBufferMode = "marker"
    # Measured (docs/server.md): every 3rd frame halves the added latency on 2 CPU cores vs every frame.
    detect_every: int = 3
    max_faces: int = 4
    max_body_bytes: int = 256 * 1024
    workers: int = 2
    batch_wait_ms: float = MAX_BATCH_WAIT_MS
    max_batch: int = 16
    stats_interval_s: float = 1.0
    connect_timeout_s: float = 20.0
    idle_timeout_s: float = 30.0
    """A connected session that delivers no decoded frame for this long is closed (--idle-timeout)."""
    max_pixels: int = UHD_PIXELS
    """Incoming frames with more pixels are not processed; the peer is told on the control channel."""
    allow_no_token: bool = False
    """Serve a non-loopback address without --token (refused otherwise)."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins besides the server's own that may POST /offer (--allowed-origin, repeatable)."""
    public_metrics: bool = False
    """GET /metrics without the token, for a scraper (--public-metrics)."""
    body_timeout_s: float = 10.0
    """Longest time to receive a request body; slower ones get 408 (--body-timeout)."""
    digits_corrections_dir: Path | None = None
    """Where POST /api/digits/corrections stores corrected digits (None: not stored)."""
    digits_corrections_limit: int = 10_000
    default_options: SessionOptions = field(default_factory=SessionOptions)
    studio_dir: Path | None = None
    """--studio DIR: train models on uploaded faces in DIR (off when None; needs the train extra)."""
    studio_max_mb: int = 500
    """--studio-max-mb: the largest Studio upload, all files of a job together."""
    inference: str = LOCAL_INFERENCE
    """Where the swap models run: "local" (in this process, micro-batched) or "triton://HOST:PORT"."""
    inference_fallback: InferenceFallback = "none"
    """With Triton: what a frame gets while Triton fails ("none": its faces unswapped; "local": in-process)."""
    record_dir: Path | None = None
    """--record DIR: sessions may be recorded there (on request, or all with record_all)."""
    record_all: bool = False
    record_unsigned: bool = False
    """Allow --record without signing credentials (the recordings then carry no C2PA manifest)."""
    signing: SigningConfig | None = None
    """The C2PA certificate and key recordings are signed with (checked when the app is built)."""

    def __post_init__(self) -> None:
        if self.pipeline not in PIPELINE_MODES:
            raise ConfigError(f"--pipeline must be swap or echo, got {self.pipeline!r}")
        if self.pipeline == "swap" and self.models_dir is None:
            raise ConfigError("--models is required with --pipeline swap (a folder holding manifest.json)")
        if self.models_dir is not None and not (Path(self.models_dir) / "manifest.json").is_file():
            raise ConfigError(f"--models {self.models_dir}: no manifest.json there (make one with `swapstream export`)")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {self.port}")
        if self.token is not None and not self.token.strip():
            raise ConfigError("--token must not be empty")
        if self.max_sessions < 1:
            raise ConfigError(f"--max-sessions must be >= 1, got {self.max_sessions}")
        if self.jitter_buffer not in JITTER_BUFFER_MODES:
            raise ConfigError(f"--jitter-buffer must be marker or stock, got {self.jitter_buffer!r}")
        if self.detect_every < 1:
            raise ConfigError(f"--detect-every must be >= 1, got {self.detect_every}")
        if not 1 <= self.max_faces <= 16:
            raise ConfigError(f"--max-faces must be in 1..16, got {self.max_faces}")
        if self.max_body_bytes < 4096:
            raise ConfigError(f"--max-body-kb must be >= 4, got {self.max_body_bytes // 1024}")
        if not 1 <= self.workers <= 64:
            raise ConfigError(f"--workers must be in 1..64, got {self.workers}")
        if not 0 <= self.batch_wait_ms <= MAX_BATCH_WAIT_MS:
            raise ConfigError(f"--batch-wait-ms must be in 0..{MAX_BATCH_WAIT_MS}, got {self.batch_wait_ms}")
        if not 1 <= self.max_batch <= 256:
            raise ConfigError(f"--max-batch must be in 1..256, got {self.max_batch}")
        if not 1 <= self.connect_timeout_s <= 300:
            raise ConfigError(f"--connect-timeout must be in 1..300 s, got {self.connect_timeout_s}")
        if self.stats_interval_s <= 0:
            raise ConfigError(f"stats interval must be > 0, got {self.stats_interval_s}")
        if self.digits_corrections_dir is not None and Path(self.digits_corrections_dir).exists() \
                and not Path(self.digits_corrections_dir).is_dir():
            raise ConfigError(f"--digits-corrections {self.digits_corrections_dir} is not a folder")
        if self.digits_corrections_limit < 1:
            raise ConfigError(f"digits corrections limit must be >= 1, got {self.digits_corrections_limit}")
        if self.studio_dir is not None and Path(self.studio_dir).exists() and not Path(self.studio_dir).is_dir():
            raise ConfigError(f"--studio {self.studio_dir}: exists and is not a folder")
        if not 1 <= self.studio_max_mb <= 100_000:
            raise ConfigError(f"--studio-max-mb must be in 1..100000, got {self.studio_max_mb}")
        if self.inference != LOCAL_INFERENCE:
            parse_triton_url(self.inference)  # ConfigError naming --inference
        if self.inference_fallback not in INFERENCE_FALLBACKS:
            raise ConfigError(f"--inference-fallback must be none or local, got {self.inference_fallback!r}")
        if self.studio_dir is not None and self.remote_inference:
            raise ConfigError(f"--studio trains models for this server's own inference: it cannot be used with "
                              f"--inference {self.inference} (Triton serves only the models exported to it)")
        if self.inference_fallback == "local" and not self.remote_inference:
            raise ConfigError("--inference-fallback local needs --inference triton://HOST:PORT (the models already "
                              "run in-process)")

        self._check_recording()
        self._check_exposure_limits()

    def _check_exposure_limits(self) -> None:
        """The issue-13 limits: timeouts, frame size, origins, and no open server on a public address."""
        if not 1 <= self.idle_timeout_s <= 3600:
            raise ConfigError(f"--idle-timeout must be in 1..3600 s, got {self.idle_timeout_s}")
        if not 0.5 <= self.body_timeout_s <= 300:
            raise ConfigError(f"--body-timeout must be in 0.5..300 s, got {self.body_timeout_s}")
        if not 64 * 64 <= self.max_pixels <= 16384 * 16384:
            raise ConfigError(f"--max-pixels must be in {64 * 64}..{16384 * 16384}, got {self.max_pixels}")
        for origin in self.allowed_origins:
            if normalized_origin(origin) is None:
                raise ConfigError(f"--allowed-origin must be scheme://host[:port] (as a browser sends it in "
                                  f"Origin), got {origin!r}")
        if self.token is None and not self.allow_no_token and not is_loopback(self.host):
            raise ConfigError(f"--host {self.host} is reachable from other machines and no --token is set: anyone "
                              "who can reach it could stream and read the server. Pass --token (or "
                              "SWAPSTREAM_TOKEN), or --allow-no-token (SWAPSTREAM_ALLOW_NO_TOKEN=1) if something "
                              "in front of the server already authenticates")

    @property
    def remote_inference(self) -> bool:
        """Whether the swap models run on Triton (--inference triton://...) rather than in this process."""
        return self.inference != LOCAL_INFERENCE

    def _check_recording(self) -> None:
        if self.record_dir is None:
            for flag, given in (("--record-all", self.record_all), ("--record-unsigned", self.record_unsigned)):
                if given:
                    raise ConfigError(f"{flag} needs --record DIR")
            return
        if not Path(self.record_dir).parent.is_dir():
            raise ConfigError(f"--record {self.record_dir}: its folder {Path(self.record_dir).parent} does not exist")
        if self.signing is None and not self.record_unsigned:
            raise ConfigError(f"--record {self.record_dir}: recordings are signed (C2PA, docs/provenance.md) and no "
                              "signing certificate was given: pass --sign-cert and --sign-key (or set "
                              "SWAPSTREAM_SIGN_CERT and SWAPSTREAM_SIGN_KEY; `swapstream keys init DIR` makes local "
                              "test ones), or --record-unsigned to record without signing")

    @property
    def url(self) -> str:
        """The address to open in a browser."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"


def _env(environ: Mapping[str, str], name: str, default: Any, parse: Any = str) -> Any:
    """The SWAPSTREAM_<name> variable parsed with `parse`, or `default`; bad values name the variable."""
    key = f"SWAPSTREAM_{name}"
    raw = environ.get(key)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"environment variable {key}={raw!r}: {exc}") from exc


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The `swapstream serve` flags; each default comes from its SWAPSTREAM_* variable when set."""
    parser = argparse.ArgumentParser(
        prog="swapstream serve",
        description="Serve live face swapping over WebRTC (/offer, WHIP, WHEP). Every flag also reads SWAPSTREAM_<FLAG>.",
    )
    parser.add_argument("--models", default=_env(environ, "MODELS", "models/demo"),
                        help="folder holding manifest.json (SWAPSTREAM_MODELS; default models/demo)")
    parser.add_argument("--host", default=_env(environ, "HOST", "127.0.0.1"),
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=_env(environ, "PORT", 8080, int), help="TCP port (default 8080)")
    parser.add_argument("--token", default=_env(environ, "TOKEN", None),
                        help="require 'Authorization: Bearer TOKEN' on /offer, /whip, /whep, /api/* and /metrics "
                             "(SWAPSTREAM_TOKEN); needed on a non-loopback --host")
    parser.add_argument("--max-sessions", type=int, default=_env(environ, "MAX_SESSIONS", 4, int),
                        help="most live sessions; more get HTTP 503 (default 4)")
    parser.add_argument("--pipeline", choices=PIPELINE_MODES, default=_env(environ, "PIPELINE", "swap"),
                        help="swap faces, or echo frames unchanged (baseline for latency)")
    parser.add_argument("--no-disclosure-mark", action="store_true",
                        default=not _env(environ, "DISCLOSURE_MARK", True, _parse_bool),
                        help="do not draw the visible 'AI-generated' mark (on by default; SWAPSTREAM_DISCLOSURE_MARK=0)")
    parser.add_argument("--jitter-buffer", choices=JITTER_BUFFER_MODES, default=_env(environ, "JITTER_BUFFER", "marker"),
                        help="release video frames on the RTP marker bit (marker) or aiortc's stock rule")
    parser.add_argument("--detect-every", type=int, default=_env(environ, "DETECT_EVERY", 3, int),
                        help="start a face re-detection every N frames, optical-flow tracking on every frame "
                             "(default 3)")
    parser.add_argument("--max-faces", type=int, default=_env(environ, "MAX_FACES", 4, int),
                        help="most faces swapped per frame (default 4)")
    parser.add_argument("--max-body-kb", type=int, default=_env(environ, "MAX_BODY_KB", 256, int),
                        help="largest accepted request body in KiB (default 256)")
    parser.add_argument("--workers", type=int, default=_env(environ, "WORKERS", 2, int),
                        help="frame-processing threads (default 2)")
    parser.add_argument("--batch-wait-ms", type=float, default=_env(environ, "BATCH_WAIT_MS", MAX_BATCH_WAIT_MS, float),
                        help="longest wait for other sessions' faces to batch together, <= 2 ms (default 2)")
    parser.add_argument("--connect-timeout", type=float, default=_env(environ, "CONNECT_TIMEOUT", 20.0, float),
                        help="seconds a new peer has to connect before its session is freed (default 20)")
    _add_exposure_flags(parser, environ)
    parser.add_argument("--digits-corrections", metavar="DIR", default=_env(environ, "DIGITS_CORRECTIONS", None),
                        help="store the digits the Digits tab's users correct in DIR, for `swapstream train digits "
                             "--data DIR` (off by default; SWAPSTREAM_DIGITS_CORRECTIONS)")
    parser.add_argument("--inference", default=_env(environ, "INFERENCE", LOCAL_INFERENCE),
                        help="where the swap models run: local (in this process, default) or triton://HOST:PORT "
                             "(a Triton Inference Server's gRPC endpoint, shared by many servers)")
    parser.add_argument("--inference-fallback", choices=INFERENCE_FALLBACKS,
                        default=_env(environ, "INFERENCE_FALLBACK", "none"),
                        help="with --inference triton://: while Triton fails, send faces out unswapped (none, "
                             "default) or run the models in this process (local: loaded at start)")
    parser.add_argument("--model", default=_env(environ, "MODEL", "a2b"),
                        help="default swap model for new sessions: a manifest name, a2b or b2a (default a2b)")
    parser.add_argument("--feather", type=int, default=_env(environ, "FEATHER", 4, int),
                        help="default mask feather in face-crop pixels (default 4)")
    parser.add_argument("--color", choices=COLOR_MODES, default=_env(environ, "COLOR", "rct"),
                        help="default colour-transfer mode (default rct)")
    parser.add_argument("--keep-mouth", action="store_true",
                        default=_env(environ, "KEEP_MOUTH", False, _parse_bool),
                        help="new sessions keep the speaker's own mouth inside the swapped face (default off)")
    parser.add_argument("--studio", metavar="DIR", default=_env(environ, "STUDIO", None),
                        help="train models on faces uploaded in the page's Studio tab, jobs in DIR (off by default; "
                             "needs the train extra)")
    parser.add_argument("--studio-max-mb", type=int, default=_env(environ, "STUDIO_MAX_MB", 500, int),
                        help="largest Studio upload, all files of a job together, in MB (default 500)")
    parser.add_argument("--record", type=Path, metavar="DIR", default=_env(environ, "RECORD", None, Path),
                        help="record sessions to DIR/<session>.mp4 when their control channel asks (signed: needs "
                             "--sign-cert/--sign-key, or --record-unsigned)")
    parser.add_argument("--record-all", action="store_true", default=_env(environ, "RECORD_ALL", False, _parse_bool),
                        help="record every session from its first frame (with --record)")
    parser.add_argument("--record-unsigned", action="store_true",
                        default=_env(environ, "RECORD_UNSIGNED", False, _parse_bool),
                        help="allow --record without signing credentials: recordings without C2PA credentials")
    add_signing_flags(parser)
    return parser


def _add_exposure_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """The flags that limit what peers and pages can do (issue 13), each with its SWAPSTREAM_* variable."""
    parser.add_argument("--idle-timeout", type=float, default=_env(environ, "IDLE_TIMEOUT", 30.0, float),
                        help="close a connected session that delivers no frame for this many seconds (default 30)")
    parser.add_argument("--max-pixels", type=int, default=_env(environ, "MAX_PIXELS", UHD_PIXELS, int),
                        help=f"largest incoming frame in pixels; bigger frames are not processed and the peer is "
                             f"told (default {UHD_PIXELS}, 3840x2160)")
    parser.add_argument("--allow-no-token", action="store_true",
                        default=_env(environ, "ALLOW_NO_TOKEN", False, _parse_bool),
                        help="serve a non-loopback --host without --token (refused otherwise)")
    parser.add_argument("--allowed-origin", action="append", dest="allowed_origins", metavar="ORIGIN",
                        default=None,
                        help="a browser origin (scheme://host[:port]) besides the server's own that may POST "
                             "/offer; repeatable (SWAPSTREAM_ALLOWED_ORIGIN: comma-separated)")
    parser.add_argument("--public-metrics", action="store_true",
                        default=_env(environ, "PUBLIC_METRICS", False, _parse_bool),
                        help="answer GET /metrics without the token (for a scraper); /api/* still needs it")
    parser.add_argument("--body-timeout", type=float, default=_env(environ, "BODY_TIMEOUT", 10.0, float),
                        help="seconds a client has to send a request body; slower ones get 408 (default 10)")


def _allowed_origins(flags: list[str] | None, environ: Mapping[str, str]) -> tuple[str, ...]:
    """--allowed-origin values (repeated flags win over SWAPSTREAM_ALLOWED_ORIGIN's comma-separated list)."""
    if flags is not None:
        return tuple(flags)
    listed = _env(environ, "ALLOWED_ORIGIN", "")
    return tuple(origin.strip() for origin in listed.split(",") if origin.strip())


def config_from_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Parse `swapstream serve` flags (falling back to SWAPSTREAM_* variables) into a ServerConfig."""
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(list(argv))
    pipeline = args.pipeline
    models_dir: Path | None = Path(args.models) if args.models else None
    if pipeline == "echo" and models_dir is not None and not (models_dir / "manifest.json").is_file():
        models_dir = None  # echo needs no models; /api/models then lists none
    try:
        defaults = SessionOptions(model=args.model, feather=args.feather, color=args.color,
                                  keep_mouth=args.keep_mouth)
    except ConfigError as exc:
        raise ConfigError(f"--model/--feather/--color/--keep-mouth: {exc}") from exc
    return ServerConfig(
        models_dir=models_dir,
        host=args.host,
        port=args.port,
        token=args.token,
        max_sessions=args.max_sessions,
        pipeline=pipeline,
        disclosure_mark=not args.no_disclosure_mark,
        jitter_buffer=args.jitter_buffer,
        detect_every=args.detect_every,
        max_faces=args.max_faces,
        max_body_bytes=args.max_body_kb * 1024,
        workers=args.workers,
        batch_wait_ms=args.batch_wait_ms,
        connect_timeout_s=args.connect_timeout,
        idle_timeout_s=args.idle_timeout,
        max_pixels=args.max_pixels,
        allow_no_token=args.allow_no_token,
        allowed_origins=_allowed_origins(args.allowed_origins, env),
        public_metrics=args.public_metrics,
        body_timeout_s=args.body_timeout,
        digits_corrections_dir=Path(args.digits_corrections) if args.digits_corrections else None,
        default_options=defaults,
        studio_dir=Path(args.studio) if args.studio else None,
        studio_max_mb=args.studio_max_mb,
        inference=args.inference,
        inference_fallback=args.inference_fallback,
        record_dir=args.record,
        record_all=args.record_all,
        record_unsigned=args.record_unsigned,
        signing=signing_config_from_flags(args.sign_cert, args.sign_key, args.sign_tsa_url, env),
    )
