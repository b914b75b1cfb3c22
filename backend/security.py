"""Browser-facing protections, for a server reachable from the LAN:

- **Allowed hosts** (DNS rebinding): a request whose Host is not an IP address, ``localhost`` or a name in
  ALLOWED_HOSTS is refused, so a page on an attacker's domain that resolves to this server cannot read it.
- **Origin check** (CSRF): a state-changing request (POST, PUT, PATCH, DELETE) that a browser sends from
  another site (its ``Origin`` differs from the Host, or ``Sec-Fetch-Site: cross-site``) is refused, API key
  or not. Clients that are not browsers send neither header and are not affected.
- **Headers on every response**: ``nosniff``, a Referrer-Policy, no framing by other sites, and a CSP:
  for our HTML pages scripts come only from this server (inline ones by hash); everything else (JSON,
  originals, results) gets ``default-src 'none'; sandbox``, so a stored file that is also valid HTML
  or a polyglot can never run as a page of this origin.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import socket
from urllib.parse import urlsplit

from flask import Flask, Response, request

from backend.api.common import api_error
from backend.settings import Settings

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S | re.I)
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:;"
    " media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self';"
    " form-action 'self'; frame-ancestors 'none'"
)
FILE_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"


def _hostname(host: str) -> str:
    return (urlsplit(f"//{host}").hostname or "").rstrip(".").lower()


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """IP addresses and localhost always; names when listed (``.example.com`` also allows subdomains,
    ``*`` allows any name)."""
    name = _hostname(host)
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True  # DNS rebinding needs a name; an address is what the user typed
    except ValueError:
        pass
    if name == "localhost" or name.endswith(".localhost"):
        return True
    for entry in allowed:
        entry = entry.lower()
        if entry == "*" or name == entry.rstrip(".") or (entry.startswith(".") and name.endswith(entry)):
            return True
    return False


def cross_site(origin: str | None, fetch_site: str | None, host: str) -> bool:
    if origin is not None:
        if origin == "null":  # sandboxed frames, file:// pages, some redirects
            return True
        parts = urlsplit(origin)
        return parts.netloc.lower() != host.lower()
    return fetch_site == "cross-site"


def page_policy(body: bytes) -> str:
    """The CSP of an HTML page: its inline scripts (an import map) are allowed by their hash."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in INLINE_SCRIPT.findall(body)
    )
    return PAGE_POLICY.format(hashes=hashes)


def own_names(settings: Settings) -> tuple[str, ...]:
    """Names that are this server's own: HOST when it is a name, and the machine's host name (also as
    ``name.local`` for mDNS). A rebinding attack needs a name the attacker controls, never these."""
    machine = socket.gethostname().lower()
    return (settings.host, machine, f"{machine}.local")


def register(app: Flask, settings: Settings) -> None:
    allowed = (*settings.allowed_hosts, *own_names(settings))

    @app.before_request
    def check_host_and_origin():
        if not host_allowed(request.host, allowed):
            return api_error(
                400,
                "host_not_allowed",
                f"this server does not answer to the name {_hostname(request.host)!r}; add it to ALLOWED_HOSTS",
            )
        if request.method in STATE_CHANGING and cross_site(
            request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"), request.host
        ):
            return api_error(403, "cross_site_request", "requests from other sites may not change anything here")
        return None

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        if response.status_code == 304:
            return response  # the browser keeps the policy it stored with the page or file
        if response.mimetype == "text/html" and response.status_code == 200:
            response.direct_passthrough = False  # pages are small: read to hash their inline scripts
            headers["Content-Security-Policy"] = page_policy(response.get_data())
        else:
            headers.setdefault("Content-Security-Policy", FILE_POLICY)
        return response
