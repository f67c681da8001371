# syntax=docker/dockerfile:1
# Two stages: the first builds wheels (ours and every dependency's), the second installs them
# offline (--no-index) into a venv of a slim image with no compiler, no pip cache and no source.
# EXTRAS: pip extras baked in. The default adds PostgreSQL (storage.url = "postgresql://…") and
# Redis (bus.url = "redis://…"), ~20 MB; `--build-arg EXTRAS=` builds a SQLite-only image.
ARG EXTRAS=postgres,redis

FROM python:3.11-slim AS build
ARG EXTRAS
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM python:3.11-slim
ARG EXTRAS
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPENCLAW_DATA_DIR=/var/lib/open-clanker
RUN groupadd --gid 1000 clanker \
 && useradd --uid 1000 --gid clanker --home-dir /var/lib/open-clanker --shell /usr/sbin/nologin clanker \
 && mkdir -p /var/lib/open-clanker /etc/open-clanker \
 && chown clanker:clanker /var/lib/open-clanker
# The venv gets no pip of its own: the image's pip installs into it (--python). The wheels are
# bind-mounted from the first stage, so they never become a layer of this image.
# DL3013 (pin versions) is ignored on purpose: with --no-index the only open-clanker and the
# only dependencies pip can pick are the wheels the first stage just built from this source.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --no-cache-dir --no-index --find-links /wheels \
        "open-clanker${EXTRAS:+[$EXTRAS]}"
# Config: mount one at /etc/open-clanker/config.toml (found on the search path); none is valid.
USER 1000:1000
WORKDIR /var/lib/open-clanker
VOLUME ["/var/lib/open-clanker"]
EXPOSE 18789
# The slim image has no curl or wget: Python itself asks /health.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:18789/health', timeout=2).status == 200 else 1)"]
CMD ["open-clanker", "gateway", "--host", "0.0.0.0"]
