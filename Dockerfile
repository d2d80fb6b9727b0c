# syntax=docker/dockerfile:1
#
# The smokewatch API service. One file, two images, chosen by a build argument:
#
#   docker build -t smokewatch:cpu .                            # CPU: torch's CPU-only wheels
#   docker build -t smokewatch:cuda --build-arg VARIANT=cuda .  # NVIDIA GPU: torch's CUDA 13.0 wheels
#
# The CUDA wheels carry their own CUDA and cuDNN libraries, so both images start from the same
# Python base; the GPU image only needs the host's NVIDIA driver and the NVIDIA Container Toolkit
# (docker-compose.yml's `gpu` profile reserves the device). Usually built through compose:
# `docker compose up -d` (CPU) or `docker compose --profile gpu up -d smokewatch-gpu`.
#
# Nothing is downloaded at run time: models come from the image (the shipped default bundle) or
# from a mounted bundle folder (SMOKEWATCH_MODEL).

ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

# cpu or cuda
ARG VARIANT=cpu
ARG TORCH_INDEX_CPU=https://download.pytorch.org/whl/cpu
ARG TORCH_INDEX_CUDA=https://download.pytorch.org/whl/cu130

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    SMOKEWATCH_HOME=/var/lib/smokewatch/home \
    SMOKEWATCH_UPLOAD_DIR=/var/lib/smokewatch/uploads \
    SMOKEWATCH_DATA_DIR=/var/lib/smokewatch/data \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# 1. torch and torchvision first, from the index of the chosen variant (the versions pyproject.toml
#    pins; `==2.14.1` accepts 2.14.1+cpu and 2.14.1+cu130 alike, so step 2 keeps them).
RUN set -eux; \
    case "$VARIANT" in \
      cpu) index="$TORCH_INDEX_CPU" ;; \
      cuda) index="$TORCH_INDEX_CUDA" ;; \
      *) echo "VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 1 ;; \
    esac; \
    pip install --index-url "$index" torch==2.14.1 torchvision==0.29.1

WORKDIR /opt/smokewatch
COPY pyproject.toml README.md LICENSE ./
COPY pipeline ./pipeline
COPY service ./service
COPY training ./training

# 2. smokewatch with its pinned dependencies and ONNX Runtime, then 3. headless OpenCV last, as in
#    the README's install: ultralytics pulls the desktop OpenCV build, which writes the same cv2/
#    folder (and needs libGL, which this image lacks), so the headless build is put back over it.
RUN set -eux; \
    pip install '.[onnx]'; \
    pip uninstall -y opencv-python; \
    pip install --no-deps --force-reinstall opencv-python-headless; \
    python -c "import cv2, torch, torchvision, ultralytics, onnxruntime, av; print('cv2', cv2.__version__, 'torch', torch.__version__)"

# Writable state lives in volumes (docker-compose.yml): the event database in data/, snapshots and
# clips in data/media/, uploads in progress in uploads/; models are mounted read-only at /models.
RUN set -eux; \
    useradd --system --uid 10001 --user-group --home-dir /var/lib/smokewatch --no-create-home smokewatch; \
    mkdir -p /var/lib/smokewatch/home /var/lib/smokewatch/uploads /var/lib/smokewatch/data/media \
             /models /etc/smokewatch; \
    chown -R smokewatch:smokewatch /var/lib/smokewatch
USER smokewatch
# Run from the state folder: the installed package is what runs, and no stray .env is read.
WORKDIR /var/lib/smokewatch
# ultralytics' settings and the fonts it looks for, made now so the first start does no setup.
RUN python -c "from pipeline.yolo_env import prepare_ultralytics; prepare_ultralytics()"

EXPOSE 8000
# Ready = the model bundle is loaded and workers exist (GET /readyz); GET /healthz only says the
# process answers. start-period covers loading a large bundle.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["smokewatch", "serve", "--host", "0.0.0.0", "--port", "8000"]
