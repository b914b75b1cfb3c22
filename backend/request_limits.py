"""Slow clients must not hold the web server's request threads: a request body has to keep arriving.

It may never be silent for BODY_IDLE_TIMEOUT_SECONDS, and once that long has passed it must have
averaged at least BODY_MIN_RATE_KB kilobytes a second. A client that falls behind gets 408 and its
partial upload is removed (the app's usual clean-up), so a few dozen uploads dripping at 1 KB/s free
their threads within seconds instead of blocking every other request for hours.

A server's body reader blocks until it holds the bytes asked for, however slowly they trickle in, so
checks between reads are not enough: a watchdog thread shuts the reading side of an overdue client's
socket, which ends the blocked read at once (the 408 answer can still be written).
"""

from __future__ import annotations

import socket
import threading
import time
import weakref

from werkzeug.exceptions import RequestTimeout

from backend.settings import Settings

READ_PIECE = 64 * 1024  # at most this much per read
WATCH_INTERVAL_S = 0.25


class DeadlineBody:
    """A ``wsgi.input`` that raises RequestTimeout when the client falls behind."""

    def __init__(self, stream, sock: socket.socket | None, idle_s: float, min_rate: float) -> None:
        self.stream = stream
        self.sock = sock
        self.idle_s = idle_s
        self.min_rate = min_rate  # bytes per second, owed once idle_s has passed
        self.started = time.monotonic()
        self.received = 0
        self.deadline = float("inf")  # of the read in progress
        self.expired = False
        # About a second's worth of the minimum rate per read: a client that falls behind is found
        # within about a second; a fast one still reads in large pieces.
        self.piece = max(4096, min(READ_PIECE, int(min_rate))) if min_rate else READ_PIECE

    def expire_if_overdue(self, now: float) -> None:
        if now > self.deadline and not self.expired:
            self.expired = True
            if self.sock is not None:
                try:
                    # The plain socket's method, also for TLS: SSLSocket.shutdown would drop the TLS
                    # state, and the 408 answer could not be written.
                    socket.socket.shutdown(self.sock, socket.SHUT_RD)
                except OSError:
                    pass

    def _read(self, method, size: int | None) -> bytes:
        want = self.piece if size is None or size < 0 else min(size, self.piece)
        now = time.monotonic()
        owed = self.started + self.idle_s + (self.received + want) / self.min_rate if self.min_rate else float("inf")
        self.deadline = min(now + self.idle_s, owed)
        try:
            data = method(want)
        except Exception as exc:
            if self.expired or isinstance(exc, TimeoutError):
                raise self._too_slow() from exc
            raise
        finally:
            self.deadline = float("inf")
        if self.expired or time.monotonic() > owed:
            raise self._too_slow()
        self.received += len(data)
        return data

    def _too_slow(self) -> RequestTimeout:
        self.expired = True
        return RequestTimeout(
            f"the request body arrived too slowly (it may not pause for {self.idle_s:g} s and must average"
            f" {self.min_rate / 1024:g} KB/s after that); it was dropped"
        )

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            pieces = []
            while piece := self._read(self.stream.read, self.piece):
                pieces.append(piece)
            return b"".join(pieces)
        return self._read(self.stream.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._read(self.stream.readline, size)

    def __iter__(self):
        while line := self.readline():
            yield line


class _Watchdog(threading.Thread):
    """One per process: ends the blocked reads of overdue bodies."""

    def __init__(self) -> None:
        super().__init__(name="parallax-body-watchdog", daemon=True)
        self.bodies: weakref.WeakSet[DeadlineBody] = weakref.WeakSet()
        self.lock = threading.Lock()

    def watch(self, body: DeadlineBody) -> None:
        with self.lock:
            self.bodies.add(body)

    def run(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL_S)  # a supervision tick, not a wait for an event
            now = time.monotonic()
            with self.lock:
                bodies = list(self.bodies)
            for body in bodies:
                body.expire_if_overdue(now)


_watchdog: _Watchdog | None = None
_watchdog_lock = threading.Lock()


def _watch(body: DeadlineBody) -> None:
    global _watchdog
    with _watchdog_lock:
        if _watchdog is None or not _watchdog.is_alive():  # also after a fork (gunicorn's workers)
            _watchdog = _Watchdog()
            _watchdog.start()
    _watchdog.watch(body)


class BodyDeadline:
    """WSGI middleware that gives every request with a body a :class:`DeadlineBody`."""

    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.idle_s = settings.body_idle_timeout_s
        self.min_rate = settings.body_min_rate_kb * 1024

    def __call__(self, environ, start_response):
        if environ.get("CONTENT_LENGTH") in (None, "", "0") and not environ.get("HTTP_TRANSFER_ENCODING"):
            return self.app(environ, start_response)
        sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
        body = DeadlineBody(environ["wsgi.input"], sock, self.idle_s, self.min_rate)
        environ["wsgi.input"] = body
        _watch(body)
        return self.app(environ, start_response)


def register(app, settings: Settings) -> None:
    app.wsgi_app = BodyDeadline(app.wsgi_app, settings)
