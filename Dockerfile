# The image for training and prediction (README, "Docker"). On the host:
#   make build && make run DATA=/path/to/data        CUDA
#   make build-cpu && make run-cpu DATA=...          CPU only (--build-arg TORCH=cpu)
# CUDA: PyPI's torch 2.13.0 wheel for Linux x86-64 brings the CUDA 13.0 runtime, cuDNN and NCCL as
# pip packages; the host needs only the NVIDIA driver (580 or newer, CUDA 13's minimum) and the NVIDIA
# Container Toolkit, through which `docker run --gpus all` passes the driver in.
ARG BASE=python:3.11-slim
FROM ${BASE}

# A PyTorch wheel index for torch (cpu, cu126, ...); empty: torch as requirements.txt pins it (PyPI).
ARG TORCH=

# gcc, g++ and the C headers: torch.compile (compile=True) builds Triton's launchers and Inductor's
# CPU kernels with them. make: the Makefile's targets work inside the container too.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 make gcc g++ libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# The Python environment is the image's own, /opt/venv, made by the Makefile's venv target (its stamp
# records this interpreter). FSAT_VENV makes `make test` / `make demo` in the container use it, never
# the host's .venv/ that the mounted repo shows at /workdir/.venv.
ENV FSAT_VENV=/opt/venv
COPY Makefile requirements.txt /tmp/fsat/
RUN PIP_NO_CACHE_DIR=1 make -C /tmp/fsat venv PYTHON=python3 TORCH="$TORCH" && rm -rf /tmp/fsat
ENV PATH=/opt/venv/bin:$PATH

# The container runs as the calling user (make run: --user UID:GID), who has no home in the image:
# caches (Triton, matplotlib, numba) go under HOME=/tmp.
ENV HOME=/tmp PYTHONUNBUFFERED=1
# The repo itself is mounted here at run time (see the Makefile's `run` target).
WORKDIR /workdir
