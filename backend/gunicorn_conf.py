"""gunicorn settings of the web server, the one copy used by ``python -m backend run``, the Dockerfile
and docker-compose: ``gunicorn -c python:backend.gunicorn_conf backend.wsgi:app``.

Threaded workers (gthread): a long upload or download runs in a request thread while the worker's main
loop keeps answering gunicorn's arbiter, so ``timeout`` only restarts a worker that is truly stuck.
Request threads mostly wait on sockets (uploads, downloads, the database), so there are plenty of them:
a few dozen slow uploads leave room for everything else, and backend/request_limits.py drops uploads
that fall behind (BODY_IDLE_TIMEOUT_SECONDS, BODY_MIN_RATE_KB).
"""

from backend.settings import get_settings

_settings = get_settings()

bind = f"{_settings.host}:{_settings.port}"
worker_class = "gthread"
workers = 2
threads = 32
timeout = 60  # seconds a worker may stay silent before gunicorn restarts it
graceful_timeout = 30  # requests in flight get this long to finish on a restart or stop
keepalive = 5
accesslog = "-"
errorlog = "-"
# HTTPS with a configured certificate; `python -m backend run` passes a generated one on the command
# line when serving beyond loopback without one (backend/tls.py).
if _settings.tls_cert and _settings.tls_key:
    certfile = str(_settings.tls_cert)
    keyfile = str(_settings.tls_key)
