"""WSGI entry point for the AI service: ``gunicorn --workers 1 --threads 4 ai.wsgi:app``.
One process, so each model is loaded once and shared by the threads."""

from ai.server import create_app

app = create_app()  # defaults only: the service is being replaced (see ai/server.py)
