"""Ed25519 signatures over a bundle's digest (optional extra ``edgebm[sign]``: the ``cryptography`` package).

The signature covers :func:`edgebm.runtime.manifest.manifest_digest` (sha256 over the manifest,
which lists the sha256 of every file), prefixed with a domain tag so a bundle signature can never
be replayed as a signature over anything else. Keys are PEM files: the private key PKCS#8
(``edgebm keygen``; written 0600 whatever the umask, and encrypted keys are read with the
passphrase in ``$EDGEBM_KEY_PASSPHRASE``), the public key SubjectPublicKeyInfo. A key is named in a
manifest by its ``key_id``: the first 16 hex digits of the sha256 of its raw 32-byte public key.

``cryptography`` is imported only when a key is used, so the runtime loads unsigned bundles (and
signed ones without ``trusted_keys``) without it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Any, Iterable

from ..atomic import atomic_write_bytes, file_mode
from ..errors import BundleError, ConfigError

__all__ = [
    "SIGNATURE_DOMAIN", "generate_keypair", "load_private_key", "load_public_key", "key_id", "sign_digest",
    "verify_signature", "public_key_path_for",
]

SIGNATURE_DOMAIN = b"edgebm.bundle-signature/1\n"


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ConfigError(
            "signing", "bundle signatures need the optional 'cryptography' package", "pip install 'edgebm[sign]'"
        ) from None
    return serialization, ed25519


def public_key_path_for(private_path: str | Path) -> Path:
    """``key.pem`` -> ``key.pub.pem`` (where ``edgebm keygen`` writes the public half)."""
    p = Path(private_path)
    stem = p.name[: -len(".pem")] if p.name.endswith(".pem") else p.name
    return p.with_name(f"{stem}.pub.pem")


def generate_keypair(private_path: str | Path, public_path: str | Path | None = None, arg: str = "--out") -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: private PEM at ``private_path`` (mode 0600), public PEM next to it.

    Refuses to overwrite an existing file (a lost private key cannot be recovered).
    """
    serialization, ed25519 = _crypto()
    priv_p = Path(private_path)
    pub_p = Path(public_path) if public_path is not None else public_key_path_for(priv_p)
    for p in (priv_p, pub_p):
        if p.exists() or p.is_symlink():
            raise ConfigError(arg, f"{p} already exists", "choose a new file name; edgebm never overwrites a key")
    key = ed25519.Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    priv_p.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: never follow a planted symlink or clobber a file created since the check above
    fd = os.open(priv_p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(priv)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        priv_p.unlink(missing_ok=True)
        raise
    atomic_write_bytes(pub_p, pub)
    os.chmod(pub_p, file_mode())
    return priv_p, pub_p


def _read(path: str | Path, arg: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(arg, f"{p}: no such key file", "give the PEM file written by edgebm keygen")
    try:
        return p.read_bytes()
    except OSError as e:
        raise ConfigError(arg, f"{p}: cannot read ({e.strerror})") from None


def load_private_key(path: str | Path, arg: str = "--sign-key") -> Any:
    """An ``Ed25519PrivateKey`` from a PEM file (passphrase from ``$EDGEBM_KEY_PASSPHRASE`` if encrypted)."""
    serialization, ed25519 = _crypto()
    data = _read(path, arg)
    pw = os.environ.get("EDGEBM_KEY_PASSPHRASE")
    try:
        key = serialization.load_pem_private_key(data, password=pw.encode() if pw else None)
    except TypeError:
        raise ConfigError(arg, f"{path}: the private key is encrypted", "set EDGEBM_KEY_PASSPHRASE to its passphrase") from None
    except ValueError as e:
        raise ConfigError(arg, f"{path}: not a PEM private key ({str(e).split('.')[0]})", "give the private key written by edgebm keygen") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(arg, f"{path}: a {type(key).__name__}, not an Ed25519 key", "make one with edgebm keygen")
    return key


def load_public_key(key: Any, arg: str = "trusted_keys") -> Any:
    """An ``Ed25519PublicKey`` from a PEM path, PEM bytes, 32 raw bytes or a key object."""
    serialization, ed25519 = _crypto()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.public_key()
    if isinstance(key, (str, Path)):
        data = _read(key, arg)
    elif isinstance(key, (bytes, bytearray)):
        data = bytes(key)
        if len(data) == 32:
            return ed25519.Ed25519PublicKey.from_public_bytes(data)
    else:
        raise ConfigError(arg, f"cannot use a {type(key).__name__} as a public key", "give a PEM file path, PEM bytes or 32 raw bytes")
    try:
        pub = serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigError(arg, f"{key if isinstance(key, (str, Path)) else 'bytes'}: not a PEM public key",
                          "give the .pub.pem file written by edgebm keygen") from None
    if not isinstance(pub, ed25519.Ed25519PublicKey):
        raise ConfigError(arg, f"a {type(pub).__name__}, not an Ed25519 public key", "make keys with edgebm keygen")
    return pub


def key_id(public_key: Any) -> str:
    """First 16 hex digits of the sha256 of the raw 32-byte public key."""
    serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_digest(private_key: Any, digest: str) -> dict[str, str]:
    """The manifest's ``signature`` field for ``digest`` (hex sha256)."""
    sig = private_key.sign(SIGNATURE_DOMAIN + digest.encode("ascii"))
    return {"algorithm": "ed25519", "key_id": key_id(private_key.public_key()), "value": base64.b64encode(sig).decode("ascii")}


def verify_signature(signature: dict[str, Any] | None, digest: str, trusted_keys: Iterable[Any], where: str = "bundle") -> str:
    """Check ``signature`` over ``digest`` against ``trusted_keys``; return the key id that verified.

    :class:`BundleError` when the bundle is unsigned, signed by a key not in ``trusted_keys``, or the
    signature does not verify (the manifest or a file changed after signing).
    """
    keys = [load_public_key(k) for k in trusted_keys]
    if signature is None:
        raise BundleError(f"{where}: bundle is not signed but trusted keys were given; refusing to load (sign it with edgebm sign)")
    from cryptography.exceptions import InvalidSignature

    by_id = {key_id(k): k for k in keys}
    kid = signature.get("key_id")
    if kid not in by_id:
        raise BundleError(f"{where}: bundle is signed by key {kid}, which is not among the trusted keys ({', '.join(by_id) or 'none'}); refusing to load")
    try:
        sig = base64.b64decode(signature["value"], validate=True)
        by_id[kid].verify(sig, SIGNATURE_DOMAIN + digest.encode("ascii"))
    except (InvalidSignature, binascii.Error, ValueError):
        raise BundleError(
            f"{where}: signature by key {kid} does not match the bundle (manifest or files changed after signing); refusing to load"
        ) from None
    return kid
