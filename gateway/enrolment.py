"""`clinic-gateway enrol`: the gateway makes its key, sends HQ a certificate request with its one-time token, and
stores the certificate and CA HQ returns at the paths of [mqtt] key_file, cert_file and ca_file.

The key never leaves the gateway. A valid certificate for this gateway already in place means there is nothing
to do (the Ansible role relies on it). Every failure is an `EnrolmentFailed` whose message says what to do; the
token is sent only once the files are known to be writable, so a mistake here does not waste it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.atomic_file import write_atomically
from gateway.config import GatewayConfig
from gateway.tls_identity import (
    build_csr,
    certificate_pem,
    common_name,
    generate_key,
    issued_by,
    key_matches,
    key_pem,
    load_private_key,
)

ENROLMENT_PATH = "/api/v1/enrolment"


class EnrolmentFailed(Exception):
    """The gateway is not enrolled; the message says why and what to do."""


@dataclass(frozen=True)
class IdentityPaths:
    key_file: Path
    cert_file: Path
    ca_file: Path


@dataclass(frozen=True)
class Enrolled:
    gateway_id: str
    not_after: dt.datetime
    serial: str
    already: bool  # a valid certificate was there: nothing was done


def identity_paths(config: GatewayConfig) -> IdentityPaths:
    m = config.mqtt
    missing = [name for name, value in (("key_file", m.key_file), ("cert_file", m.cert_file),
                                        ("ca_file", m.ca_file)) if value is None]
    if missing:
        raise EnrolmentFailed(f"[mqtt] {', '.join(missing)} not set: enrolment writes the gateway's key, "
                              "certificate and CA to the files [mqtt] key_file, cert_file and ca_file name")
    assert m.key_file is not None and m.cert_file is not None and m.ca_file is not None
    return IdentityPaths(m.key_file, m.cert_file, m.ca_file)


def identity_problem(paths: IdentityPaths, gateway_id: str, now: dt.datetime) -> str | None:
    """None if the files hold a usable identity for `gateway_id`, else what is wrong with them."""
    try:
        cert = x509.load_pem_x509_certificate(paths.cert_file.read_bytes())
    except FileNotFoundError:
        return f"no certificate at {paths.cert_file}"
    except (OSError, ValueError) as exc:
        return f"{paths.cert_file} is not a readable PEM certificate ({exc})"
    if common_name(cert.subject) != gateway_id:
        return f"{paths.cert_file} is for {common_name(cert.subject)!r}, not this gateway ({gateway_id!r})"
    if cert.not_valid_after_utc <= now:
        return f"{paths.cert_file} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    try:
        key = load_private_key(paths.key_file.read_bytes())
    except (OSError, ValueError) as exc:
        return f"no usable key at {paths.key_file} ({exc})"
    if not key_matches(key, cert):
        return f"{paths.key_file} is not the key of {paths.cert_file}"
    try:
        authority = x509.load_pem_x509_certificate(paths.ca_file.read_bytes())
    except (OSError, ValueError) as exc:
        return f"no usable CA certificate at {paths.ca_file} ({exc})"
    if not issued_by(cert, authority):
        return f"{paths.cert_file} was not issued by the CA in {paths.ca_file}"
    return None


def _check_writable(paths: IdentityPaths) -> None:
    """Create (and remove) a file beside each target: learn of a read-only disk before spending the token."""
    for path in (paths.key_file, paths.cert_file, paths.ca_file):
        probe = path.with_name(f".{path.name}.probe-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
            if path.exists() and not os.access(path, os.W_OK):
                raise PermissionError(f"{path} is not writable")
        except OSError as exc:
            raise EnrolmentFailed(f"cannot write {path}: {exc.strerror or exc}; fix the directory or the path in "
                                  "[mqtt] before enrolling (the token was not used)") from None


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _post(url: str, body: dict[str, str], *, ca_file: Path | None, timeout_s: float) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    context = _ssl_context(ca_file) if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise EnrolmentFailed(_refusal(exc)) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise EnrolmentFailed(f"cannot verify HQ's HTTPS certificate at {url}: {reason.verify_message}; set "
                                  "[enrolment] ca_file to the CA that signed it") from None
        raise EnrolmentFailed(f"HQ is unreachable at {url}: {reason}; check [enrolment] hq_url and the "
                              "network, then run this command again (the token was not used)") from None
    except TimeoutError:
        raise EnrolmentFailed(f"HQ at {url} did not answer within {timeout_s:g} s; run this command again "
                              "(if HQ did enrol the gateway meanwhile, ask for a new token)") from None
    except OSError as exc:
        raise EnrolmentFailed(f"HQ is unreachable at {url}: {exc}") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise EnrolmentFailed(f"HQ's answer from {url} is not an enrolment response: {raw[:200]!r}")
    return doc


def _refusal(exc: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(exc.read())
    except (ValueError, OSError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        field, reason = doc.get("field"), doc.get("reason")
        what = f" ({reason}{f', field {field}' if field else ''})" if reason else ""
        return f"HQ refused the enrolment{what}: {doc['error']}"
    return f"HQ answered {exc.code} {exc.reason} instead of a certificate"


def _certificates(doc: dict[str, Any], gateway_id: str, key: Any) -> tuple[list[x509.Certificate], x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(str(doc["certificate_chain"]).encode())
        authority = x509.load_pem_x509_certificate(str(doc["ca_bundle"]).encode())
    except (KeyError, ValueError) as exc:
        raise EnrolmentFailed(f"HQ's answer holds no usable certificate and CA: {exc}") from None
    cert = chain[0]
    if common_name(cert.subject) != gateway_id or not key_matches(key, cert):
        raise EnrolmentFailed(f"HQ returned a certificate for {common_name(cert.subject)!r} that does not match "
                              f"this gateway ({gateway_id!r}) and its new key")
    if not issued_by(chain[-1], authority):
        raise EnrolmentFailed("HQ returned a certificate its own CA bundle does not verify")
    return chain, authority


def enrol(config: GatewayConfig, token: str, *, renew: bool = False, now: dt.datetime | None = None) -> Enrolled:
    """Enrol unless a valid identity is already in place (`renew`: enrol anyway, e.g. before expiry)."""
    now = now or dt.datetime.now(dt.UTC)
    gateway_id = config.gateway.id
    paths = identity_paths(config)
    if not renew and identity_problem(paths, gateway_id, now) is None:
        cert = x509.load_pem_x509_certificate(paths.cert_file.read_bytes())
        return Enrolled(gateway_id, cert.not_valid_after_utc, format(cert.serial_number, "x"), already=True)
    if config.enrolment.hq_url is None:
        raise EnrolmentFailed("[enrolment] hq_url is not set: where should the certificate request go?")
    if not token:
        raise EnrolmentFailed("the token file is empty")
    _check_writable(paths)
    key = generate_key()
    csr = build_csr(key, gateway_id).public_bytes(serialization.Encoding.PEM).decode()
    url = config.enrolment.hq_url.rstrip("/") + ENROLMENT_PATH
    doc = _post(url, {"token": token, "csr": csr}, ca_file=config.enrolment.ca_file,
                timeout_s=config.enrolment.timeout_s)
    chain, authority = _certificates(doc, gateway_id, key)
    try:
        # The key first: a certificate on disk without its key would look enrolled and not work.
        # A renewal keeps the files' owner and group (the Ansible role lets the gateway's group read them).
        write_atomically(paths.key_file, key_pem(key), mode=0o600, like_existing=True)
        write_atomically(paths.cert_file, b"".join(certificate_pem(c) for c in chain), like_existing=True)
        write_atomically(paths.ca_file, certificate_pem(authority), like_existing=True)
    except OSError as exc:
        raise EnrolmentFailed(f"HQ issued the certificate but it could not be stored: {exc}; ask for a new token "
                              "and enrol again") from None
    return Enrolled(gateway_id, chain[0].not_valid_after_utc, format(chain[0].serial_number, "x"), already=False)


def read_token(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise EnrolmentFailed(f"cannot read the token file {path}: {exc.strerror or exc}") from None
