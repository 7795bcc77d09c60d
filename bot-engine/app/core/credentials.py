"""The cipher of stored exchange credentials: AES-256-GCM under a keyring of versioned keys.

A ciphertext is a text token `jt1.<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>`: the format
version, the id of the key that sealed it, and a 12-byte random nonce with the sealed value.
The id is derived from the key itself, so a keyring needs no setting besides the keys.

Every value is sealed together with what it belongs to (user, exchange, key row, field) as
associated data: a ciphertext copied to another row, user, exchange or field fails to open.
Errors name the failure (malformed token, key not configured, authentication failed) and never
carry plaintext, key material or the token itself — a "token" may be a value stored in clear
by mistake.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.config import Settings

FORMAT_VERSION = "jt1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
# Key ids are a hash of the key under this label: naming a key reveals nothing about it.
_KID_LABEL = b"jadetrade/credentials/key-id/v1\x00"
_TOKEN = re.compile(rf"^{FORMAT_VERSION}\.([0-9a-f]{{8}})\.([A-Za-z0-9_-]+)$")


class CredentialError(Exception):
    """A stored credential could not be decrypted."""


class MalformedCiphertext(CredentialError):
    """The value is not a ciphertext token this engine writes."""


class UnknownKeyVersion(CredentialError):
    """The value was sealed under a key that is not in the keyring."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"encrypted under key {kid}, which is not configured")
        self.kid = kid


class AuthenticationFailed(CredentialError):
    """The value does not authenticate: tampered with, or bound to another row or field."""


@dataclass(frozen=True)
class CipherContext:
    """What a sealed value belongs to; bound into the ciphertext as associated data."""

    user_id: str
    exchange: str
    key_id: uuid.UUID  # the exchange_api_keys row
    field: str  # "api_key", "secret", "passphrase"

    def encode(self, header: str) -> bytes:
        # Length-prefixed parts: no choice of user id or exchange name can make two different
        # contexts encode alike. The token header (version and kid) is bound as well.
        parts = (header, self.user_id, self.exchange, str(self.key_id), self.field)
        encoded = [part.encode("utf-8") for part in parts]
        return b"".join(len(part).to_bytes(4, "big") + part for part in encoded)


def key_id(key: bytes) -> str:
    """The public id of a key: the first 8 hex characters of a labelled SHA-256 of it."""
    return hashlib.sha256(_KID_LABEL + key).hexdigest()[:8]


def token_key_id(token: str) -> str:
    """The id of the key a token was sealed under (without decrypting it)."""
    return _parse(token)[0]


def _parse(token: str) -> tuple[str, bytes]:
    match = _TOKEN.match(token)
    if match is None:
        raise MalformedCiphertext(f"not a {FORMAT_VERSION} ciphertext token")
    kid, body = match.groups()
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise MalformedCiphertext("ciphertext token has an invalid base64 body") from None
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise MalformedCiphertext("ciphertext token is too short")
    return kid, raw


class Keyring:
    """The active key (seals new values) and retired keys (still open old values)."""

    __slots__ = ("_active_kid", "_ciphers")

    def __init__(self, active: bytes, retired: Iterable[bytes] = ()) -> None:
        keys: dict[str, bytes] = {}
        for key in (active, *retired):
            if len(key) != KEY_BYTES:
                raise ValueError(f"an encryption key must be {KEY_BYTES} bytes")
            kid = key_id(key)
            if keys.setdefault(kid, key) != key:
                raise ValueError(f"two different keys share the id {kid}; generate a new key")
        ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self._active_kid = key_id(active)
        self._ciphers = ciphers

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        """`ENCRYPTION_KEY` as the active key, `ENCRYPTION_KEYS_RETIRED` as the retired ones."""
        retired = [bytes.fromhex(k.get_secret_value()) for k in settings.ENCRYPTION_KEYS_RETIRED]
        return cls(settings.encryption_key_bytes, retired)

    @property
    def active_kid(self) -> str:
        return self._active_kid

    @property
    def kids(self) -> frozenset[str]:
        """Ids of every key this keyring opens values with."""
        return frozenset(self._ciphers)

    def __repr__(self) -> str:
        retired = sorted(self.kids - {self._active_kid})
        return f"Keyring(active={self._active_kid!r}, retired={retired!r})"

    __str__ = __repr__

    def is_current(self, token: str) -> bool:
        """Whether `token` is sealed under the active key (raises if malformed)."""
        return token_key_id(token) == self._active_kid

    def encrypt(self, plaintext: str, context: CipherContext) -> str:
        header = f"{FORMAT_VERSION}.{self._active_kid}"
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._active_kid].encrypt(
            nonce, plaintext.encode("utf-8"), context.encode(header)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{header}.{body}"

    def decrypt(self, token: str, context: CipherContext) -> str:
        kid, raw = _parse(token)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise UnknownKeyVersion(kid)
        nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, context.encode(f"{FORMAT_VERSION}.{kid}"))
        except InvalidTag:
            raise AuthenticationFailed(
                f"the {context.field} of exchange key {context.key_id} failed authentication"
                " (tampered with, or copied from another key, user, exchange or field)"
            ) from None
        return plain.decode("utf-8")

    def reseal(self, token: str, context: CipherContext) -> str:
        """`token` under the active key: itself when already there, else decrypted and sealed
        again. Raises CredentialError when it cannot be opened."""
        if self.is_current(token):
            # Authenticate it anyway: a token that does not open must not count as current.
            self.decrypt(token, context)
            return token
        return self.encrypt(self.decrypt(token, context), context)
