# syntax=docker/dockerfile:1
# Keyguard's image: docker build -t keyguard .   (see docs/operations.md, "Deploy on Kubernetes")
#
# Two stages. The build stage installs exactly the hash-locked dependencies of requirements.lock
# (pip --require-hashes: a changed or unpinned package fails the build) and Keyguard itself into
# a virtualenv; the final stage copies that virtualenv alone onto a clean base: no compiler, no
# pip cache, no sources, no build tools. It runs as an unprivileged user (10001) and writes
# nothing outside /tmp, so it runs with a read-only root filesystem:
#   docker run --read-only --tmpfs /tmp -v ./keyguard.yaml:/etc/keyguard/keyguard.yaml:ro ...
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.lock ./
RUN python -m venv /opt/keyguard \
    && /opt/keyguard/bin/pip install --no-deps --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/keyguard/bin/pip install --no-deps --no-build-isolation . \
    && /opt/keyguard/bin/python -m compileall -q /opt/keyguard/lib

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/keyguard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    KEYGUARD_HEALTH_URL=http://127.0.0.1:8081/livez
RUN groupadd --system --gid 10001 keyguard \
    && useradd --system --uid 10001 --gid keyguard --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin keyguard
COPY --from=build /opt/keyguard /opt/keyguard
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['KEYGUARD_HEALTH_URL'], timeout=2)"]
ENTRYPOINT ["keyguard"]
CMD ["serve", "--config", "/etc/keyguard/keyguard.yaml"]
