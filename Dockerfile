# One image for the web server, the worker and the migrate step (they differ by command).
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY ai ./ai
COPY backend ./backend
# EXTRAS=backend builds a small image without torch for the web process only.
# requirements.lock pins every version (the set CI tests), whichever extras are installed.
ARG EXTRAS=backend,ai
RUN pip install --no-cache-dir -c requirements.lock ".[${EXTRAS}]"

ENV DATA_DIR=/data MEDIA_ROOT=/data/media MODEL_CACHE_DIR=/models START_LOCAL_SERVICES=false \
    HOST=0.0.0.0 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 1000 parallax && mkdir -p /data /models && chown parallax /data /models
USER parallax
EXPOSE 8000
# Migrations are not applied here: run `python -m backend migrate` once (compose's migrate service does).
CMD ["gunicorn", "-c", "python:backend.gunicorn_conf", "backend.wsgi:app"]
