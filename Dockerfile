# swapstream server image: CUDA runtime + cuDNN, the `gpu` extra (onnxruntime-gpu, TensorRT), the `triton-client`
# extra (tritonclient[grpc], for --inference triton://), non-root, models as a volume.
#
#   docker build -t swapstream .
#   docker run --gpus all -p 8080:8080 -v "$PWD/models:/models" -e SWAPSTREAM_TOKEN="$(openssl rand -hex 16)" swapstream
#
# The server binds 0.0.0.0 in the container, so it refuses to start without a bearer token (SWAPSTREAM_TOKEN or
# --token; clients send it as `Authorization: Bearer`, the page takes ?token=). Only where something in front
# already authenticates every request, opt out explicitly with -e SWAPSTREAM_ALLOW_NO_TOKEN=1 (--allow-no-token).
#   docker run -p 8080:8080 -v "$PWD/models:/models" -e SWAPSTREAM_TOKEN=... swapstream \
#       --inference triton://triton:8001   # a media server of a fleet (docs/scale.md): no GPU needed
#
# WebRTC media travels over UDP ports that aiortc picks at run time: a browser on the same host reaches the
# container's bridge address directly; for clients on other machines run with --network host (docs/clients.md).
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Python 3.12 from Ubuntu; libGL and GLib for OpenCV and mediapipe. Versions float with the CUDA base image's
# Ubuntu release, which is pinned above.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV"

WORKDIR /opt/swapstream
COPY pyproject.toml README.md ./
COPY swapstream ./swapstream
COPY faces ./faces
COPY rtc ./rtc
COPY stream_server ./stream_server
COPY provenance ./provenance
COPY clients ./clients
COPY training ./training
COPY export ./export

# The server without PyTorch, plus the gpu and triton-client extras. onnxruntime (CPU) and onnxruntime-gpu install
# the same `onnxruntime` module, so the CPU wheel that the base dependencies pull in is removed and the GPU one
# restored. Versions are the ranges pinned in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".[gpu,triton-client]" \
    && pip uninstall -y onnxruntime \
    && pip install --force-reinstall --no-deps "onnxruntime-gpu>=1.18"

# The bundled demo models seed the volume; mount your own exported models folder over /models.
COPY models/demo /models
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin swapstream \
    && chown -R swapstream:swapstream /models
VOLUME ["/models"]

USER 10001:10001
ENV SWAPSTREAM_MODELS=/models \
    SWAPSTREAM_HOST=0.0.0.0 \
    SWAPSTREAM_PORT=8080
EXPOSE 8080

# /healthz answers 503 while the server is full (for load balancers): full is healthy, no answer is not.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.error, urllib.request\ntry:\n    urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)\nexcept urllib.error.HTTPError as exc:\n    sys.exit(exc.code != 503)"]

ENTRYPOINT ["swapstream", "serve"]
