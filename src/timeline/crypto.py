"""Field-level encryption of personal data with a key per customer (POLICY §7).

Each customer gets a random 256-bit data key (DEK). PII field values are
sealed with AES-GCM under it, bound (as associated data) to the event id and
field name, so a ciphertext cannot be moved to another event or field. DEKs
are stored wrapped by a key-encryption key (KEK) from configuration, bound to
the customer id; the store records a check value of the KEK it was created
with and any other KEK is refused. Erasure destroys the wrapped DEK: the
ciphertexts stay byte-for-byte (the hash chain still verifies) but can never
be read again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from timeline.domain.errors import ConfigurationError

if TYPE_CHECKING:
    from timeline.application.ports import EventStore

log = logging.getLogger(__name__)

NONCE_BYTES = 12
KEY_BYTES = 32


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


KEK_CHECK = "kek_check"
"""The store's metadata naming which key-encryption key it was created with."""
KEK_MISMATCH = "TIMELINE_KEK does not match the key-encryption key this store was created with"


def parse_kek(text: str) -> bytes:
    """A KEK from its base64 text (``TIMELINE_KEK`` or a key file's content)."""
    try:
        kek = _b64d(text.strip())
    except (ValueError, TypeError):
        raise ConfigurationError("TIMELINE_KEK is not valid base64") from None
    if len(kek) != KEY_BYTES:
        raise ConfigurationError(f"TIMELINE_KEK must decode to {KEY_BYTES} bytes, got {len(kek)}")
    return kek


@dataclass(frozen=True, slots=True)
class KekSource:
    """Where the key-encryption key comes from, as configured (``TIMELINE_KEK``, ``TIMELINE_KEK_FILE``).

    Values, not the environment: the interfaces read the configuration once and pass it down.
    """

    text: str | None = None
    """The KEK's base64 text; an empty text is no KEK."""
    file: Path | None = None
    """A key file to use instead of the one beside the database."""


def configured_kek(source: KekSource, embedded: bool) -> bytes | None:
    """The KEK ``source`` names (its text, else its file if that exists), checked.

    ``None`` only for an embedded store, whose key file lives beside its database (:func:`kek_for_store`).
    """
    if source.text:
        return parse_kek(source.text)
    if source.file is not None and source.file.exists():
        return parse_kek(source.file.read_text())
    if not embedded:
        raise ConfigurationError(
            f"no key-encryption key: set TIMELINE_KEK (base64 of {KEY_BYTES} bytes) or TIMELINE_KEK_FILE to an "
            "existing key file; a key file is generated only for the embedded SQLite store"
        )
    return None


def kek_for_store(store: EventStore, source: KekSource, may_create: bool) -> bytes:
    """The KEK for ``store``: :func:`configured_kek`, else the key file beside its database.

    A key file is generated only for an embedded store that has no key yet
    (no data key, no check value) and only by a command that may create
    the store: a fresh key made for a store that has keys would wrap some
    customers' keys with a key the others are not wrapped with.
    """
    default = store.default_key_file()
    kek = configured_kek(source, embedded=default is not None)
    if kek is not None:
        return kek
    path = source.file or default
    assert path is not None
    if path.exists():
        return parse_kek(path.read_text())
    if not may_create or not _unbound(store):
        raise ConfigurationError(
            f"no key-encryption key for the store at {store.url}: its key file {path} is missing and TIMELINE_KEK "
            "is not set; restore the key file or set TIMELINE_KEK to the key the store was created with"
        )
    return _create_key_file(path)


def _unbound(store: EventStore) -> bool:
    return store.metadata(KEK_CHECK) is None and store.any_key() is None


def _create_key_file(path: Path) -> bytes:
    """A new key file, complete or not at all; one made by another process at the same moment wins, and is read."""
    kek = AESGCM.generate_key(bit_length=256)
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(_b64e(kek) + "\n")
    try:
        os.link(draft, path)  # fails if the file exists: never a half-written key file, never a replaced one
    except FileExistsError:
        return parse_kek(path.read_text())
    finally:
        draft.unlink()
    log.warning("created a new key-encryption key in %s; keep it safe and apart from the database", path)
    return kek


def check_value(kek: bytes) -> str:
    """What the store records of its KEK: an HMAC of a fixed label under it, which does not reveal the key."""
    return hmac.new(kek, b"timeline key-encryption key check v1", hashlib.sha256).hexdigest()


def new_kek_text() -> str:
    """A fresh KEK as the base64 text ``TIMELINE_KEK`` expects."""
    return _b64e(AESGCM.generate_key(bit_length=256))


class KeyWrapper:
    """Wraps and unwraps customer data keys with the KEK, refusing a KEK the store was not created with.

    Bound to a store (:meth:`bound`), the first wrap records the KEK's check
    value if the store has none yet (after proving, on a store made before
    check values, that the KEK unwraps a stored key); every use compares it.
    """

    def __init__(self, kek: bytes | Callable[[], bytes], store: EventStore | None = None) -> None:
        """``kek``, or how to load it when a key is first wrapped or unwrapped (readers that never do need none)."""
        self._kek = kek
        self._key = b""
        self._cipher: AESGCM | None = None
        self.store = store
        self._checked = self._recorded = store is None

    def bound(self, store: EventStore) -> KeyWrapper:
        """The same KEK, checked against ``store``."""
        return self if store is self.store else KeyWrapper(self._kek, store)

    def check(self, writing: bool) -> None:
        """Load the KEK now and compare it with the store's (``writing``: record it on a store that has none)."""
        self._aead(writing)

    def _aead(self, writing: bool) -> AESGCM:
        if self._cipher is None:
            self._key = self._kek() if callable(self._kek) else self._kek
            cipher = AESGCM(self._key)
            self._bind(cipher, writing)
            self._cipher = cipher
        elif not self._recorded and (writing or not self._checked):
            self._bind(self._cipher, writing)
        return self._cipher

    def _bind(self, cipher: AESGCM, writing: bool) -> None:
        if self.store is None:
            return
        mine = check_value(self._key)
        stored = self.store.metadata(KEK_CHECK)
        if stored is None and writing:
            sample = self.store.any_key()
            if sample is not None and sample[1] is not None and not _opens(cipher, sample[0], sample[1]):
                raise ConfigurationError(KEK_MISMATCH)
            stored = self.store.record_metadata(KEK_CHECK, mine)
        if stored is not None and not hmac.compare_digest(stored, mine):
            raise ConfigurationError(KEK_MISMATCH)
        self._checked = True
        self._recorded = stored is not None

    def new_data_key(self, customer_id: str) -> tuple[bytes, bytes]:
        """A fresh DEK and its wrapped form for storage."""
        aead = self._aead(writing=True)
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        return dek, nonce + aead.encrypt(nonce, dek, customer_id.encode())

    def unwrap(self, customer_id: str, wrapped: bytes) -> bytes:
        aead = self._aead(writing=False)
        try:
            return aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], customer_id.encode())
        except InvalidTag:
            raise ConfigurationError(
                f"cannot unwrap the data key of customer {customer_id}: wrong TIMELINE_KEK?"
            ) from None


def _opens(cipher: AESGCM, customer_id: str, wrapped: bytes) -> bool:
    try:
        cipher.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], customer_id.encode())
    except InvalidTag:
        return False
    return True
