# syntax=docker/dockerfile:1
# The starskope_dask image: `starskope` (the runner of k8s/daskjob.yaml), `dask scheduler` and
# `dask worker`, nothing else. No ENTRYPOINT: the manifests give each container its command.
#
#   podman build -t ghcr.io/starskope/starskope-dask:0.1.0 .
#   podman build --build-arg EXTRAS= -t starskope-dask:slim .    # without TensorFlow (no CNNs)
#
# Runs as the unprivileged user 10001 (k8s/*.yaml: runAsUser 10001, a read-only root file
# system, HOME and spill in /tmp). No credential is built in or passed as an argument: pods
# get the store's from their service account (IRSA); the archive is read anonymously.

# ---------------------------------------------------------------- builder: a venv of the package
FROM python:3.11.11-slim-bookworm AS builder

# Extras of starskope-dask to install: "train" (TensorFlow CPU, Keras, dask-ml) by default,
# because the DaskJob runs the whole pipeline, training included; "" for a slimmer image.
ARG EXTRAS="train"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/starskope
WORKDIR /src
COPY pyproject.toml README.md ./
COPY starskope_dask ./starskope_dask
# Every dependency ships manylinux wheels (fitsio, batman and TensorFlow bundle their
# libraries), so no compiler is needed here and no system library at run time.
RUN /opt/starskope/bin/pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
 && /opt/starskope/bin/starskope --version

# ---------------------------------------------------------------- runtime
FROM python:3.11.11-slim-bookworm AS runtime

ARG VERSION="0.1.0"
LABEL org.opencontainers.image.title="starskope-dask" \
      org.opencontainers.image.description="Kepler, K2 and TESS light curves from the public cloud archive into Zarr cubes, features and models, with Dask" \
      org.opencontainers.image.source="https://github.com/starskope/starskope_dask" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"

RUN groupadd --system --gid 10001 starskope \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/starskope --create-home \
            --shell /usr/sbin/nologin starskope

COPY --from=builder /opt/starskope /opt/starskope

# glibc malloc settings are not set here: each worker's nanny sets them before it spawns the
# worker (DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON in the manifests).
ENV PATH="/opt/starskope/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg

USER 10001:10001
WORKDIR /home/starskope
CMD ["starskope", "--help"]
