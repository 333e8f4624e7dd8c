# syntax=docker/dockerfile:1
# metrics-poller container image.
#
#   docker build -t metrics-poller .
#   docker run --rm --read-only --tmpfs /tmp -p 9108:9108 \
#     -v metrics-poller-state:/var/lib/metrics-poller \
#     -v "$PWD/config/poller.yaml:/etc/metrics-poller/poller.yaml:ro" \
#     -e METRICS_POLLER__ELASTICSEARCH__API_KEY_FILE=/run/secrets/es-api-key \
#     metrics-poller            # "run" by default; "once", "validate", "setup", ... also work
#
# No secret is baked into the image: pass them at run time as environment variables
# (METRICS_POLLER__SECTION__KEY) or, better, as files named by the *_FILE keys.

# ---------------------------------------------------------------------------- build stage
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/metrics-poller \
 && /opt/metrics-poller/bin/pip install --upgrade 'pip>=24,<27'

# Dependencies first, at the versions of the runtime lock (`make lock`): this layer is rebuilt only when
# the lock changes, not on every code change. The test-only lock and extra stay out of the image.
COPY requirements/runtime.txt ./requirements/
RUN /opt/metrics-poller/bin/pip install -r requirements/runtime.txt

# Then the project itself (pyproject names README.md as its readme), without resolving anything again;
# `pip check` proves the lock satisfies every dependency pyproject.toml declares.
COPY pyproject.toml README.md ./
COPY metrics_poller/ ./metrics_poller/
RUN /opt/metrics-poller/bin/pip install --no-deps . \
 && /opt/metrics-poller/bin/pip check \
 && /opt/metrics-poller/bin/metrics-poller --version

# ---------------------------------------------------------------------------- runtime stage
FROM python:3.11-slim-bookworm

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="metrics-poller" \
      org.opencontainers.image.description="Azure Monitor metrics poller for Azure OpenAI, writing Elastic-compatible documents to Elasticsearch" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# A fixed, numeric, unprivileged identity, so Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 metrics-poller \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/metrics-poller --shell /usr/sbin/nologin metrics-poller \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/metrics-poller \
 && install -d -o root -g root -m 0755 /etc/metrics-poller

COPY --from=build /opt/metrics-poller /opt/metrics-poller

# Read-only root file system: nothing is written except under /var/lib/metrics-poller (state)
# and /tmp (mount a tmpfs there). Python writes no bytecode caches.
ENV PATH=/opt/metrics-poller/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/metrics-poller \
    METRICS_POLLER__HTTP__LISTEN=0.0.0.0:9108 \
    METRICS_POLLER__STATE__PATH=/var/lib/metrics-poller/cursors.json \
    METRICS_POLLER__LOGGING__FORMAT=json

WORKDIR /var/lib/metrics-poller
VOLUME ["/var/lib/metrics-poller"]
USER 10001:10001
EXPOSE 9108

# /healthz answers 200 while the scheduler keeps firing (an outage elsewhere does not make the
# process unhealthy: README, Self-monitoring); no curl in slim images,
# so the check uses Python's standard library (urlopen raises on any non-2xx answer).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["metrics-poller"]
CMD ["run"]
