"""HQ's CA: what it signs, what it refuses, its revocation lists, and its files on disk."""

from __future__ import annotations

import datetime as dt
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hq import ca

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def authority() -> ca.Authority:
    return ca.new_authority("Test fleet CA", now=NOW, validity_days=3650)


def csr_pem(key: ca.PrivateKey, cn: str) -> bytes:
    return ca.build_csr(key, cn).public_bytes(serialization.Encoding.PEM)


def test_the_ca_signs_only_end_entity_certificates(authority: ca.Authority) -> None:
    cert = authority.certificate
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert ca.issued_by(cert, cert) and authority.name == "Test fleet CA"


def test_a_gateway_request_is_signed_as_a_client_certificate(authority: ca.Authority) -> None:
    key = ca.generate_key()
    csr = ca.check_csr(csr_pem(key, "gw-north-1"), "gw-north-1")
    cert = ca.sign(authority, "gw-north-1", csr.public_key(), now=NOW, validity_days=365)
    assert ca.common_name(cert.subject) == "gw-north-1"
    assert ca.issued_by(cert, authority.certificate)
    assert ca.key_matches(key, cert)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_before_utc < NOW  # a gateway clock a little behind HQ's accepts it
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=365)


def test_a_certificate_never_outlives_the_ca() -> None:
    short = ca.new_authority("Short CA", now=NOW, validity_days=30)
    cert = ca.sign(short, "gw-1", ca.generate_key().public_key(), now=NOW, validity_days=365)
    assert cert.not_valid_after_utc == short.certificate.not_valid_after_utc


def test_a_server_certificate_names_its_hosts(authority: ca.Authority) -> None:
    _key, cert = ca.issue_identity(authority, "broker", now=NOW, validity_days=365,
                                   server_names=["broker.example.org", "127.0.0.1"])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["broker.example.org"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]


@pytest.mark.parametrize(("make", "reason", "needle"), [
    (lambda: b"hello", "bad_csr", "not a PEM-encoded PKCS#10"),
    (lambda: csr_pem(ca.generate_key(), "gw-2"), "cn_mismatch", "issued for gateway 'gw-1'"),
    (lambda: csr_pem(rsa.generate_private_key(65537, 1024), "gw-1"), "bad_csr", "1024-bit RSA key"),
    (lambda: csr_pem(ec.generate_private_key(ec.SECP521R1()), "gw-1"), "bad_csr", "curve secp521r1"),
    (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\n" + b"A" * 20000 + b"\n", "bad_csr", "at most"),
])
def test_unacceptable_requests_are_refused_with_the_reason(make: object, reason: str, needle: str) -> None:
    assert callable(make)
    with pytest.raises(ca.CsrError) as caught:
        ca.check_csr(make(), "gw-1")
    assert caught.value.reason == reason and needle in str(caught.value)


def test_a_request_with_more_than_a_cn_or_a_broken_signature_is_refused() -> None:
    key = ca.generate_key()
    extra = (x509.CertificateSigningRequestBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw-1"),
                                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil")]))
             .sign(key, hashes.SHA256()))
    with pytest.raises(ca.CsrError, match="exactly one common name"):
        ca.check_csr(extra.public_bytes(serialization.Encoding.PEM), "gw-1")
    good = bytearray(csr_pem(key, "gw-1"))
    # Flip a byte inside the base64 of the signature (the end of the body): the request no longer verifies.
    body_end = good.rindex(b"\n-----END")
    good[body_end - 3] = ord("A") if good[body_end - 3] != ord("A") else ord("B")
    with pytest.raises(ca.CsrError):
        ca.check_csr(bytes(good), "gw-1")


def test_gateway_ids_may_not_take_hq_identities() -> None:
    ca.check_gateway_id("gw-north-1")
    with pytest.raises(ValueError, match="reserved for HQ"):
        ca.check_gateway_id("hq-1")
    with pytest.raises(ValueError, match="letters, digits"):
        ca.check_gateway_id("gw/1")


def test_crl_lists_revoked_serials_and_its_time_always_grows(authority: ca.Authority) -> None:
    first = ca.crl_last_update(None, NOW)
    assert first == NOW - ca.CLOCK_SKEW
    again = ca.crl_last_update(first, NOW)  # same moment: still strictly later, or OpenSSL keeps the old list
    assert again == first + dt.timedelta(seconds=1)
    assert ca.crl_last_update(again, NOW + dt.timedelta(hours=1)) == NOW + dt.timedelta(hours=1) - ca.CLOCK_SKEW
    crl = ca.build_crl(authority, [(0xABC, NOW), (0x123, NOW)], last_update=first,
                       next_update=first + dt.timedelta(days=30))
    assert crl.is_signature_valid(authority.key.public_key())
    assert {r.serial_number for r in crl} == {0xABC, 0x123}
    assert crl.get_revoked_certificate_by_serial_number(0xABC) is not None
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == int(first.timestamp())


def test_ca_files_are_private_and_made_once(tmp_path: Path) -> None:
    files = ca.CaFiles(tmp_path / "ca")
    made = files.create("Fleet CA", now=NOW, validity_days=3650)
    assert stat.S_IMODE(files.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    assert files.load().certificate == made.certificate
    with pytest.raises(ca.CaError, match="already holds a CA"):
        files.create("Fleet CA", now=NOW, validity_days=3650)
    files.key_path.chmod(0o644)
    with pytest.raises(ca.CaError, match="readable by other users"):
        files.load()


def test_ca_files_load_errors_say_what_to_do(tmp_path: Path) -> None:
    files = ca.CaFiles(tmp_path / "ca")
    with pytest.raises(ca.CaError, match="python -m hq ca init"):
        files.load()
    files.create("Fleet CA", now=NOW, validity_days=3650)
    other = ca.CaFiles(tmp_path / "other")
    other.create("Other CA", now=NOW, validity_days=3650)
    files.key_path.write_bytes(other.key_path.read_bytes())
    with pytest.raises(ca.CaError, match="is not the key of"):
        files.load()


def test_workers_starting_together_share_one_ca(tmp_path: Path) -> None:
    made: list[x509.Certificate] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        made.append(ca.CaFiles(tmp_path / "ca").load_or_create("Fleet CA", now=NOW, validity_days=3650).certificate)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 4 and len(set(made)) == 1
