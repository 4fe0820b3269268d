"""Field-level encryption of personal data with a key per customer (RULES §7).

Each customer gets a random 256-bit data key (DEK). PII field values are
sealed with AES-GCM under it, bound (as associated data) to the event id and
field name, so a ciphertext cannot be moved to another event or field. DEKs
are stored wrapped by a key-encryption key (KEK) from configuration, bound to
the customer id. Erasure destroys the wrapped DEK: the ciphertexts stay
byte-for-byte (the hash chain still verifies) but can never be read again.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from timeline.errors import ConfigurationError

log = logging.getLogger(__name__)

NONCE_BYTES = 12
KEY_BYTES = 32


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def load_kek(value: str | None = None, key_file: Path | None = None, create: bool = True) -> bytes:
    """The KEK from ``TIMELINE_KEK`` (base64) or a key file, creating the file if new and ``create``.

    A generated key file is the embedded default so ``timeline demo`` runs with
    nothing configured; production sets ``TIMELINE_KEK`` from a secret store.
    Without ``create`` a missing key is an error: a fresh key silently made
    next to a shared database would wrap some customers' keys with a key the
    other writers do not have.
    """
    value = value if value is not None else os.environ.get("TIMELINE_KEK")
    if value:
        try:
            kek = _b64d(value.strip())
        except (ValueError, TypeError):
            raise ConfigurationError("TIMELINE_KEK is not valid base64") from None
        if len(kek) != KEY_BYTES:
            raise ConfigurationError(f"TIMELINE_KEK must decode to {KEY_BYTES} bytes, got {len(kek)}")
        return kek
    path = key_file or Path(os.environ.get("TIMELINE_KEK_FILE", "timeline.kek"))
    if path.exists():
        return load_kek(path.read_text().strip())
    if not create:
        raise ConfigurationError(
            f"no key-encryption key: set TIMELINE_KEK (base64 of {KEY_BYTES} bytes) or TIMELINE_KEK_FILE to an "
            "existing key file; a key file is generated only for the embedded SQLite store"
        )
    kek = AESGCM.generate_key(bit_length=256)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(_b64e(kek) + "\n")
    log.warning("created a new key-encryption key in %s; keep it safe and apart from the database", path)
    return kek


def new_kek_text() -> str:
    """A fresh KEK as the base64 text ``TIMELINE_KEK`` expects."""
    return _b64e(AESGCM.generate_key(bit_length=256))


class KeyWrapper:
    """Wraps and unwraps customer data keys with the KEK."""

    def __init__(self, kek: bytes | Callable[[], bytes]) -> None:
        """``kek``, or how to load it when a key is first wrapped or unwrapped (readers that never do need none)."""
        self._kek = kek
        self._cipher: AESGCM | None = None

    @property
    def _aead(self) -> AESGCM:
        if self._cipher is None:
            self._cipher = AESGCM(self._kek() if callable(self._kek) else self._kek)
        return self._cipher

    def new_data_key(self, customer_id: str) -> tuple[bytes, bytes]:
        """A fresh DEK and its wrapped form for storage."""
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        return dek, nonce + self._aead.encrypt(nonce, dek, customer_id.encode())

    def unwrap(self, customer_id: str, wrapped: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], customer_id.encode())
        except InvalidTag:
            raise ConfigurationError(
                f"cannot unwrap the data key of customer {customer_id}: wrong TIMELINE_KEK?"
            ) from None


def seal(dek: bytes | AESGCM, event_id: UUID, field: str, value: Any) -> dict[str, str]:
    """Encrypt one PII field value (any JSON value) into its stored form.

    ``dek`` may be given as its cipher (``AESGCM(dek)``), to set the key up once for several fields.
    """
    cipher = dek if isinstance(dek, AESGCM) else AESGCM(dek)
    nonce = os.urandom(NONCE_BYTES)
    plaintext = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    ciphertext = cipher.encrypt(nonce, plaintext, f"{event_id}:{field}".encode())
    return {"$enc": _b64e(nonce + ciphertext)}


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and "$enc" in value


def open_sealed(dek: bytes, event_id: UUID, field: str, sealed: dict[str, str]) -> Any:
    raw = _b64d(sealed["$enc"])
    plaintext = AESGCM(dek).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], f"{event_id}:{field}".encode())
    return json.loads(plaintext)
