# syntax=docker/dockerfile:1
# Multi-stage: build a wheel with its dependencies, install it into a slim runtime image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip==24.3.1 \
 && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPENCLAW_DATA_DIR=/var/lib/open-clanker
RUN groupadd --gid 1000 clanker \
 && useradd --uid 1000 --gid clanker --home-dir /var/lib/open-clanker --shell /usr/sbin/nologin clanker \
 && mkdir -p /var/lib/open-clanker /etc/open-clanker \
 && chown clanker:clanker /var/lib/open-clanker
COPY --from=build /opt/venv /opt/venv
# Config: mount one at /etc/open-clanker/config.toml (found on the search path); none is valid.
USER 1000:1000
WORKDIR /var/lib/open-clanker
VOLUME ["/var/lib/open-clanker"]
EXPOSE 18789
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:18789/health', timeout=2).status == 200 else 1)"]
CMD ["open-clanker", "gateway", "--host", "0.0.0.0"]
