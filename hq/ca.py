"""HQ's certificate authority for the fleet: keys, certificates, CSR checks and revocation lists.

Pure functions over keys and certificates (the time is passed in), and `CaFiles`, the CA's files on disk
(key files 0600). It knows nothing of gateways, tokens or the database: that is `hq.enrolment`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.atomic_file import write_atomically
from gateway.tls_identity import (
    PrivateKey,
    build_csr,
    certificate_pem,
    common_name,
    generate_key,
    issued_by,
    key_matches,
    key_pem,
    load_private_key,
)
from gateway.wire import valid_gateway_id

__all__ = ["build_csr", "certificate_pem", "common_name", "generate_key", "issued_by", "key_pem"]

# Certificates of HQ's own MQTT clients (one per worker) have CNs with this prefix; the broker's ACL gives
# them the whole fleet's topics, so no gateway id may start with it.
HQ_IDENTITY_PREFIX = "hq-"
# Certificates start this long before they are issued: a mini-PC whose clock is behind (no battery-backed
# clock, NTP not synced yet after a power cut) must not find the broker's certificate "not valid yet" and stay
# offline. A day costs nothing: the certificate did not exist before it was issued.
BACKDATE = dt.timedelta(days=1)
# A CRL's thisUpdate starts this long before it is made (the broker's clock may be a little behind HQ's); kept
# short, since each list must be newer than the last one (`crl_last_update`).
CLOCK_SKEW = dt.timedelta(minutes=5)
ACCEPTED_CURVES = ("secp256r1", "secp384r1")
RSA_MIN_BITS, RSA_MAX_BITS = 2048, 8192
MAX_CSR_BYTES = 16 * 1024


class CaError(Exception):
    """The CA cannot do what was asked; the message is for the operator."""


class CsrError(CaError):
    """A certificate request is not acceptable. `reason` is "bad_csr" or "cn_mismatch" (for API clients)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Authority:
    key: PrivateKey
    certificate: x509.Certificate

    @property
    def name(self) -> str:
        return common_name(self.certificate.subject) or self.certificate.subject.rfc4514_string()


# ---- keys and names ------------------------------------------------------------------------
def check_gateway_id(gateway_id: str) -> None:
    """Raise ValueError unless `gateway_id` can be a gateway's certificate CN (and so its broker username)."""
    if not valid_gateway_id(gateway_id):
        raise ValueError(f"gateway id {gateway_id!r} must be 1-64 letters, digits, '-', '_' or '.'")
    if gateway_id.startswith(HQ_IDENTITY_PREFIX):
        raise ValueError(f"gateway id {gateway_id!r} must not start with {HQ_IDENTITY_PREFIX!r}: that prefix is "
                         "reserved for HQ's own broker identities, which may read every clinic's topics")


def _check_key(key: object, what: str) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if key.curve.name not in ACCEPTED_CURVES:
            raise CsrError("bad_csr", f"{what} is an EC key on curve {key.curve.name}; expected one of "
                                      f"{', '.join(ACCEPTED_CURVES)}")
        return
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if not RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS:
            raise CsrError("bad_csr", f"{what} is a {key.key_size}-bit RSA key; expected "
                                      f"{RSA_MIN_BITS}-{RSA_MAX_BITS} bits")
        return
    raise CsrError("bad_csr", f"{what} is a {type(key).__name__}; expected an EC (P-256, P-384) or RSA key")


# ---- certificate requests ------------------------------------------------------------------
def check_csr(pem: str | bytes, expected_cn: str) -> x509.CertificateSigningRequest:
    """The parsed request if it is one HQ signs for `expected_cn`; else CsrError saying what is wrong.

    Only the subject's CN and the public key are taken from a request: HQ sets every extension itself.
    """
    data = pem.encode() if isinstance(pem, str) else pem
    if len(data) > MAX_CSR_BYTES:
        raise CsrError("bad_csr", f"the certificate request is {len(data)} bytes; at most {MAX_CSR_BYTES} expected")
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError:
        raise CsrError("bad_csr", "not a PEM-encoded PKCS#10 certificate request "
                                  "('-----BEGIN CERTIFICATE REQUEST-----' ...)") from None
    try:
        signed = csr.is_signature_valid
    except Exception:  # an unsupported signature algorithm raises here, not at load
        signed = False
    if not signed:
        raise CsrError("bad_csr", "the certificate request's signature does not verify with its own key")
    attributes = list(csr.subject)
    cn = common_name(csr.subject)
    if cn is None or len(attributes) != 1:
        raise CsrError("bad_csr", f"the request's subject is {csr.subject.rfc4514_string()!r}; expected exactly "
                                  f"one common name, CN={expected_cn}")
    if cn != expected_cn:
        raise CsrError("cn_mismatch", f"the request is for CN {cn!r}, but the enrolment token was issued for "
                                      f"gateway {expected_cn!r}")
    _check_key(csr.public_key(), "the request's public key")
    return csr


# ---- certificates ----------------------------------------------------------------------------
def new_authority(name: str, *, now: dt.datetime, validity_days: int) -> Authority:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    key = generate_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, cert)


def _key_usage(*, cert_sign: bool = False, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False,
                         key_encipherment=key_encipherment, data_encipherment=False, key_agreement=False,
                         key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def sign(ca: Authority, subject_cn: str, public_key: object, *, now: dt.datetime, validity_days: int,
         server_names: Sequence[str] = ()) -> x509.Certificate:
    """An end-entity certificate for `subject_cn`: a TLS client certificate, or with `server_names` (DNS names
    or IP addresses) a TLS server certificate. It never outlives the CA."""
    _check_key(public_key, "the public key")
    assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    not_after = min(now + dt.timedelta(days=validity_days), ca.certificate.not_valid_after_utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(ca.certificate.subject).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key_encipherment=isinstance(public_key, rsa.RSAPublicKey)), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if server_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in server_names]),
                                        critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue_identity(ca: Authority, cn: str, *, now: dt.datetime, validity_days: int,
                   server_names: Sequence[str] = ()) -> tuple[PrivateKey, x509.Certificate]:
    """A new key and its certificate, for identities HQ makes itself (the broker's, HQ's own MQTT clients)."""
    key = generate_key()
    return key, sign(ca, cn, key.public_key(), now=now, validity_days=validity_days, server_names=server_names)


# ---- revocation ------------------------------------------------------------------------------
def build_crl(ca: Authority, revoked: Iterable[tuple[int, dt.datetime]], *, last_update: dt.datetime,
              next_update: dt.datetime) -> x509.CertificateRevocationList:
    """The revocation list of (serial, revocation time) pairs, signed by the CA."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject)
               .last_update(last_update).next_update(next_update)
               # thisUpdate grows by at least a second from list to list (`crl_last_update`): a CRL number too
               .add_extension(x509.CRLNumber(int(last_update.timestamp())), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    for serial, when in sorted(revoked):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    return builder.sign(ca.key, hashes.SHA256())


def crl_last_update(previous: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """The thisUpdate time of the next CRL: backdated like certificates (clock skew), and always at least a
    second after the previous CRL's. Mosquitto adds each reloaded CRL to those it holds and OpenSSL uses the
    one with the newest thisUpdate, so a new list with an equal time would be ignored; one with a time in
    the future would make OpenSSL refuse every client. The caller must not publish a time after `now`."""
    candidate = (now - CLOCK_SKEW).replace(microsecond=0)
    if previous is not None and candidate <= previous:
        candidate = previous + dt.timedelta(seconds=1)
    return candidate


def serial_hex(serial: int) -> str:
    return format(serial, "x")


# ---- encodings -------------------------------------------------------------------------------
def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


# ---- the CA's files ----------------------------------------------------------------------------
class CaFiles:
    """The CA on disk: `ca.key` (0600), `ca.pem`, and the CRL the broker reads (`crl.pem` unless placed
    elsewhere). The directory is 0700: only HQ's user may even list it."""

    def __init__(self, directory: Path, crl_path: Path | None = None) -> None:
        self.directory = directory
        self.key_path = directory / "ca.key"
        self.cert_path = directory / "ca.pem"
        self.crl_path = crl_path or directory / "crl.pem"

    def exists(self) -> bool:
        try:
            return self.key_path.exists() or self.cert_path.exists()
        except OSError as exc:
            raise CaError(f"cannot look into the CA directory {self.directory}: {exc.strerror or exc}") from exc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the CA directory (not re-entrant)."""
        # Several HQ workers on one host may start at once: one creates, the others load what it wrote.
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise CaError(f"cannot use the CA directory {self.directory}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def create(self, name: str, *, now: dt.datetime, validity_days: int) -> Authority:
        with self.locked():
            if self.exists():
                raise CaError(f"{self.directory} already holds a CA ({self.cert_path.name}); "
                              "remove it first to start a new one (every issued certificate stops working)")
            return self._create(name, now=now, validity_days=validity_days)

    def load_or_create(self, name: str, *, now: dt.datetime, validity_days: int) -> Authority:
        with self.locked():
            if self.exists():
                return self.load()
            return self._create(name, now=now, validity_days=validity_days)

    def _create(self, name: str, *, now: dt.datetime, validity_days: int) -> Authority:
        ca = new_authority(name, now=now, validity_days=validity_days)
        try:
            os.chmod(self.directory, 0o700)
            write_atomically(self.key_path, key_pem(ca.key), mode=0o600)
            write_atomically(self.cert_path, certificate_pem(ca.certificate))
        except OSError as exc:
            raise CaError(f"cannot write the CA to {self.directory}: {exc}") from exc
        return ca

    def load(self) -> Authority:
        for path in (self.key_path, self.cert_path):
            if not path.is_file():
                raise CaError(f"{path} does not exist: initialise the CA with `python -m hq ca init --config ...`")
        try:
            key = load_private_key(self.key_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise CaError(f"{self.key_path}: not a readable unencrypted PEM private key: {exc}") from exc
        try:
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise CaError(f"{self.cert_path}: not a readable PEM certificate: {exc}") from exc
        if not key_matches(key, cert):
            raise CaError(f"{self.key_path} is not the key of {self.cert_path}")
        if self.key_path.stat().st_mode & 0o077:
            raise CaError(f"{self.key_path} is readable by other users (mode "
                          f"{self.key_path.stat().st_mode & 0o777:o}); expected 0600")
        return Authority(key, cert)

    def read_crl(self) -> x509.CertificateRevocationList | None:
        try:
            return x509.load_pem_x509_crl(self.crl_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CaError(f"{self.crl_path}: not a readable PEM revocation list: {exc}") from exc

    def write_crl(self, crl: x509.CertificateRevocationList) -> None:
        try:
            write_atomically(self.crl_path, crl_pem(crl))  # public: the broker's user reads it
        except OSError as exc:
            raise CaError(f"cannot write the revocation list {self.crl_path}: {exc}") from exc


def write_identity(directory: Path, name: str, key: PrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
    """`<name>.key` (0600) and `<name>.pem` in `directory`; returns their paths."""
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
    write_atomically(key_path, key_pem(key), mode=0o600)
    write_atomically(cert_path, certificate_pem(cert))
    return key_path, cert_path
