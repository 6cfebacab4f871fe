"""VAPID keys for Web Push (RFC 8292): the server's P-256 key pair that push services know
it by.

The pair comes from ``FARMSTAND_VAPID_PRIVATE_KEY`` / ``FARMSTAND_VAPID_PUBLIC_KEY``; outside
production, when they are unset, it is generated once and kept in
``<data_dir>/.farmstand-vapid.json``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

from farmstand.config import Environment, Settings

log = logging.getLogger(__name__)

VAPID_FILE_NAME = ".farmstand-vapid.json"


class VapidKeyError(ValueError):
    """The VAPID keys are missing, unreadable or don't match."""


class VapidKeysMissing(VapidKeyError):
    """Production without configured keys."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Base64url (or standard base64), padded or not."""
    clean = "".join(text.split()).replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(clean + "=" * (-len(clean) % 4))


@dataclass(frozen=True)
class VapidKeys:
    private_key: str  # PEM, or base64url of the raw 32-byte scalar (or of DER)
    public_key: str  # the uncompressed P-256 point, base64url without padding

    def env_lines(self) -> list[str]:
        """What ``farmstand push keys`` prints, to paste into the environment or ``.env``."""
        raw = load_private_key(self.private_key).private_numbers().private_value.to_bytes(32, "big")
        return [
            f"FARMSTAND_VAPID_PRIVATE_KEY={b64url(raw)}",
            f"FARMSTAND_VAPID_PUBLIC_KEY={self.public_key}",
        ]


def load_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from PEM, or base64url of the raw scalar or of DER (PKCS#8/SEC1)."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = b64url_decode(text)
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise VapidKeyError(f"not a P-256 private key (PEM or base64url): {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise VapidKeyError("not a P-256 (prime256v1) private key")
    return key


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """What the browser's ``applicationServerKey`` takes."""
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(point)


def generate_vapid_keys() -> VapidKeys:
    """A new key pair (private key as base64url of the raw scalar, one line for an env var)."""
    vapid = Vapid()
    vapid.generate_keys()
    key = vapid.private_key
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    return VapidKeys(private_key=b64url(raw), public_key=public_key_b64(key))


def vapid_keys(settings: Settings) -> VapidKeys:
    """The configured key pair; outside production, when none is configured, the one kept in
    ``<data_dir>/.farmstand-vapid.json`` (generated on first use, mode 0600).

    Remembered per configuration, so the public-key endpoint can call it on every request.
    Raises VapidKeyError (a ValueError) on bad or mismatched keys, VapidKeysMissing in
    production without keys.
    """
    private = settings.vapid_private_key.get_secret_value() if settings.vapid_private_key else None
    return _vapid_keys(
        private,
        settings.vapid_public_key or None,
        settings.environment is Environment.PRODUCTION,
        settings.data_dir.absolute(),
    )


@functools.lru_cache(maxsize=16)
def _vapid_keys(
    private: str | None, public_setting: str | None, production: bool, data_dir: Path
) -> VapidKeys:
    if private is not None:
        try:
            public = public_key_b64(load_private_key(private))
        except VapidKeyError as exc:
            raise VapidKeyError(f"FARMSTAND_VAPID_PRIVATE_KEY: {exc}") from None
        if public_setting:
            try:
                matches = b64url_decode(public_setting) == b64url_decode(public)
            except (ValueError, binascii.Error):
                matches = False
            if not matches:
                raise VapidKeyError(
                    "FARMSTAND_VAPID_PUBLIC_KEY does not match FARMSTAND_VAPID_PRIVATE_KEY "
                    f"(its public key is {public})"
                )
        return VapidKeys(private_key=private, public_key=public)
    if public_setting:
        raise VapidKeyError(
            "FARMSTAND_VAPID_PUBLIC_KEY is set but FARMSTAND_VAPID_PRIVATE_KEY is not"
        )
    if production:
        raise VapidKeysMissing(
            "Web Push needs FARMSTAND_VAPID_PRIVATE_KEY and FARMSTAND_VAPID_PUBLIC_KEY in "
            "production (generate them with `farmstand push keys`)"
        )
    return _local_vapid_keys(data_dir / VAPID_FILE_NAME)


def _read_key_file(path: Path) -> VapidKeys:
    try:
        data = json.loads(path.read_text())
        keys = VapidKeys(
            private_key=data["private_key"],
            public_key=public_key_b64(load_private_key(data["private_key"])),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VapidKeyError(
            f"{path} cannot be read ({exc}); delete it to generate new keys (browsers then "
            "subscribe again)"
        ) from None
    return keys


def _local_vapid_keys(path: Path) -> VapidKeys:
    if path.exists():
        return _read_key_file(path)
    keys = generate_vapid_keys()
    data = (
        json.dumps({"private_key": keys.private_key, "public_key": keys.public_key}, indent=2)
        + "\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask: a private key
            handle.write(data)
        try:
            os.link(tmp, path)  # atomic, and only if no other process got there first
        except FileExistsError:
            return _read_key_file(path)
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    log.info("generated VAPID keys for Web Push in %s", path)
    return keys
