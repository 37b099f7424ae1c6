"""X.509 building blocks of a TLS identity, shared by the gateway (its own key and certificate) and HQ's CA:
key generation, certificate requests, PEM encodings, and the checks that a key, a certificate and a CA belong
together. Pure apart from key generation's randomness; no files, no network.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def generate_key() -> ec.EllipticCurvePrivateKey:
    """An EC P-256 key: small, fast, and what every TLS 1.2+ stack supports."""
    return ec.generate_private_key(ec.SECP256R1())


def build_csr(key: PrivateKey, cn: str) -> x509.CertificateSigningRequest:
    """A certificate request for the subject CN=`cn`, signed by `key`."""
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .sign(key, hashes.SHA256()))


def common_name(name: x509.Name) -> str | None:
    """The one CN of a name; None if it has none or several."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        return None
    value = values[0].value
    return value if isinstance(value, str) else None


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_private_key(pem: bytes) -> PrivateKey:
    """Raises ValueError for anything but an unencrypted PEM EC or RSA private key."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:  # encrypted, no password given
        raise ValueError(str(exc)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"a {type(key).__name__}; expected an EC or RSA key")
    return key


def _spki(key: object) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else key
    if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return b""
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    """Whether `cert` certifies `key`'s public half."""
    return _spki(key) == _spki(cert.public_key())


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether `ca` signed `cert` (and is named its issuer)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
