"""HTTPS for the LAN: browsers expose WebXR only to secure pages, so a headset needs https://.

Uses the certificate given in TLS_CERT/TLS_KEY, else a self-signed one made once (with the
``cryptography`` library) under DATA_DIR/tls/ and kept until it nears expiry, so the headset's
"proceed anyway" choice keeps working across restarts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from backend.auth import is_loopback
from backend.settings import Settings

CERT_DAYS = 825  # the longest validity Apple platforms accept for a TLS certificate
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    self_signed: bool


def wants_tls(settings: Settings) -> bool:
    """HTTPS whenever a certificate is configured or the server listens beyond loopback."""
    return settings.tls_cert is not None or not is_loopback(settings.host)


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (the ones a headset on the LAN would use)."""
    found: list[str] = []
    try:
        # No packet is sent: connecting a UDP socket only picks the interface of the default route.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            found.append(probe.getsockname()[0])
    except OSError:
        pass
    try:
        found += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    unique = []
    for address in found:
        if address not in unique and not ipaddress.ip_address(address).is_loopback:
            unique.append(address)
    return unique


def ensure_certificate(settings: Settings) -> TlsFiles:
    """The certificate to serve: the configured one, else the self-signed one (made when missing)."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        for path, name in ((settings.tls_cert, "TLS_CERT"), (settings.tls_key, "TLS_KEY")):
            if not path.is_file():
                raise FileNotFoundError(f"{name}={path} does not exist")
        return TlsFiles(settings.tls_cert, settings.tls_key, self_signed=False)
    folder = Path(settings.data_dir) / "tls"
    files = TlsFiles(folder / "cert.pem", folder / "key.pem", self_signed=True)
    if not _usable(files.cert) or not files.key.is_file():
        generate_self_signed(files, [socket.gethostname(), "localhost"], [*lan_addresses(), "127.0.0.1", "::1"])
    return files


def _usable(cert_path: Path) -> bool:
    from cryptography import x509

    if not cert_path.is_file():
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return False
    return cert.not_valid_after_utc - RENEW_BEFORE > dt.datetime.now(dt.UTC)


def generate_self_signed(files: TlsFiles, names: list[str], addresses: list[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Parallax on {names[0]}")])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names)]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(addresses)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        # Its own issuer, like `openssl req -x509`: CA:TRUE lets clients that are given this file
        # (curl --cacert, requests verify=) trust it; browsers ask the user once either way.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # Key identifiers: strict verifiers (Python 3.13, urllib3 2) insist on them.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    files.cert.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    os.chmod(files.key, 0o600)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def certificate_names(cert_path: Path) -> list[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [*alt.get_values_for_type(x509.DNSName), *(str(a) for a in alt.get_values_for_type(x509.IPAddress))]


def gunicorn_tls_args(files: TlsFiles) -> list[str]:
    return ["--certfile", str(files.cert), "--keyfile", str(files.key)]


def headset_urls(settings: Settings) -> list[str]:
    """Where to point a headset's browser (and this machine's)."""
    scheme = "https" if wants_tls(settings) else "http"
    if is_loopback(settings.host):
        return [f"{scheme}://localhost:{settings.port}/"]
    hosts = lan_addresses() if settings.host in ("0.0.0.0", "::") else [settings.host]
    return [f"{scheme}://{host}:{settings.port}/" for host in hosts] + [f"{scheme}://localhost:{settings.port}/"]


@dataclass(frozen=True)
class Serving:
    """How the web server is started: settings completed with the API key, and TLS files when used."""

    settings: Settings
    tls: TlsFiles | None
    api_key_created: bool

    @property
    def gunicorn_args(self) -> list[str]:
        return gunicorn_tls_args(self.tls) if self.tls else []

    def banner(self) -> str:
        urls = headset_urls(self.settings)
        lines = [f"Parallax is running: {urls[0]}  (API docs at /docs). Press Ctrl-C to stop."]
        if not is_loopback(self.settings.host):
            lines.append("Open in the headset's browser: " + "  ".join(urls[:-1] or urls))
            if self.tls and self.tls.self_signed:
                lines.append(
                    f"The certificate is self-signed ({self.tls.cert}): the browser warns once;"
                    " choose Advanced > Proceed."
                )
            key_file = Path(self.settings.data_dir) / "api_key"
            lines.append(
                f"API key (new, saved in {key_file}): {self.settings.secret('api_key')}"
                if self.api_key_created
                else "API key: as configured (API_KEY or " + str(key_file) + ")"
            )
            lines.append("Pair the headset without typing the key: `parallax pair` or 'Pair a headset' in the web UI.")
        return "\n".join(lines)


def prepare_serving(settings: Settings) -> Serving:
    """Beyond loopback: HTTPS and an API key (generated into DATA_DIR/api_key when none is set)."""
    from backend.auth import load_or_create_api_key

    created = False
    if not is_loopback(settings.host) and not settings.api_key:
        key, created = load_or_create_api_key(Path(settings.data_dir))
        settings = settings.replace(api_key=key)
    tls = ensure_certificate(settings) if wants_tls(settings) else None
    return Serving(settings=settings, tls=tls, api_key_created=created)
