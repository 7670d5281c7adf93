# CUDA image for training and prediction: `make build`, then `make run`.
# pip's torch wheel for Linux bundles the CUDA runtime; the host driver comes
# in through `docker run --gpus all` (NVIDIA Container Toolkit).
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 make \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

# The repo itself is mounted here at run time (see the Makefile's `run` target).
WORKDIR /workdir
ENV PYTHONUNBUFFERED=1
