# syntax=docker/dockerfile:1
#
# The controller's image: a venv with the package and its locked dependencies (uv.lock) on a
# distroless Debian 12 Python runtime. It runs as uid/gid 65532, needs no writable path (the
# code is byte-compiled) and has no shell.
#
#   docker build -t ghcr.io/pull-secret-updater/pull-secret-updater:0.1.0 .
#
# With the defaults, the bases are pulled as usual: docker.io/library/debian:12-slim from
# Docker Hub for the build stage, gcr.io/distroless/python3-debian12:nonroot for the runtime.
# Both are Debian 12 with Python 3.11 at /usr/bin/python3.11, which the venv links to, so any
# pair of bases must agree on that. hack/build-image.sh builds this same file without a Docker
# engine or registry access: it makes both bases from Debian packages (mmdebstrap) and passes
# them as BUILDER_BASE and RUNTIME_BASE to buildah.
ARG BUILDER_BASE=docker.io/library/debian:12-slim
ARG RUNTIME_BASE=gcr.io/distroless/python3-debian12:nonroot

FROM ${BUILDER_BASE} AS builder
ARG UV_VERSION=0.13.9
# The build stage trusts the system's CA bundle (pip and uv alike), so a proxy's CA added to
# the base works. uv installs exactly uv.lock (the build fails if it is stale) into /venv with
# the base's Python, byte-compiled.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_SYSTEM_CERTS=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON=/usr/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
RUN set -eu; \
    if ! dpkg-query -W python3.11-venv ca-certificates >/dev/null 2>&1; then \
      apt-get update; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3.11-venv ca-certificates; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    /usr/bin/python3.11 -m venv /opt/uv; \
    /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"
WORKDIR /src
# Dependencies first: this layer stays cached while only the code changes.
COPY pyproject.toml uv.lock ./
RUN /opt/uv/bin/uv sync --locked --no-dev --no-install-project --no-editable
COPY README.md ./
COPY src ./src
RUN /opt/uv/bin/uv sync --locked --no-dev --no-editable \
 && /venv/bin/python -c "import pull_secret_updater.cli"

FROM ${RUNTIME_BASE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="pull-secret-updater" \
      org.opencontainers.image.description="Keeps Kubernetes image pull Secrets filled with short-lived registry tokens." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /venv /venv
ENV PATH=/venv/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /home/nonroot
USER 65532:65532
ENTRYPOINT ["pull-secret-updater"]
CMD ["run"]
