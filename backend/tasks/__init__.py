"""Job logic run by the worker. Handlers import ``ai`` lazily so the web process never loads torch."""
