# Image for the Vigil worker and simulator (see docker-compose.yml).
#   docker build -t vigil:dev .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (better layer caching), then the code.
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY detectors ./detectors
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin vigil

USER vigil

# Worker web/metrics port (Prometheus scrapes /metrics here).
ENV VIGIL_WEB_HOST=0.0.0.0 \
    VIGIL_WEB_PORT=6066
EXPOSE 6066

ENTRYPOINT []
CMD ["vigil", "worker"]
