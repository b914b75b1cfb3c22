# One image for the backend, the worker and the AI service (they differ by command).
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY ai ./ai
COPY backend ./backend
# EXTRAS=backend builds a small image without torch for the web process only.
ARG EXTRAS=backend,ai
RUN pip install --no-cache-dir ".[${EXTRAS}]"

ENV DATA_DIR=/data MEDIA_ROOT=/data/media MODEL_CACHE_DIR=/models START_LOCAL_SERVICES=false \
    HOST=0.0.0.0 AI_HOST=0.0.0.0 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 1000 parallax && mkdir -p /data /models && chown parallax /data /models
USER parallax
EXPOSE 8000 8001
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "8", "--timeout", "0", "backend.wsgi:app"]
