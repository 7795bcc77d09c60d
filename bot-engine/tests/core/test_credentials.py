"""The credentials cipher: AES-256-GCM tokens, bound to their owner, under versioned keys."""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import uuid

import pytest
from pydantic import SecretStr

from app.config import Settings
from app.core.credentials import (
    AuthenticationFailed,
    CipherContext,
    CredentialError,
    Keyring,
    MalformedCiphertext,
    UnknownKeyVersion,
    key_id,
    token_key_id,
)

KEY_A, KEY_B, KEY_C = (os.urandom(32) for _ in range(3))
CONTEXT = CipherContext(user_id="user-1", exchange="binance", key_id=uuid.uuid4(), field="secret")
SECRET = "s3cr3t-Value/with+symbols=é"


def _flip(token: str, index: int) -> str:
    """`token` with one bit flipped in byte `index` of its decoded body (negative: from the
    end)."""
    header, body = token.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[index] ^= 0x01
    return f"{header}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


def test_a_value_round_trips() -> None:
    keyring = Keyring(KEY_A)
    for plaintext in (SECRET, "", "x" * 10_000):
        assert keyring.decrypt(keyring.encrypt(plaintext, CONTEXT), CONTEXT) == plaintext


def test_the_token_names_its_format_and_key_and_hides_the_value() -> None:
    keyring = Keyring(KEY_A)
    token = keyring.encrypt(SECRET, CONTEXT)
    again = keyring.encrypt(SECRET, CONTEXT)

    version, kid, body = token.split(".")
    assert version == "jt1"
    assert kid == keyring.active_kid == key_id(KEY_A) == token_key_id(token)
    assert len(kid) == 8 and int(kid, 16) >= 0
    # 12-byte nonce + ciphertext + 16-byte tag, base64url without padding.
    assert len(base64.urlsafe_b64decode(body + "==")) == 12 + len(SECRET.encode()) + 16
    assert token != again  # a fresh random nonce every time
    assert SECRET not in token and KEY_A.hex() not in token
    assert keyring.is_current(token)


@pytest.mark.parametrize(("where", "index"), [("nonce", 0), ("body", 12), ("tag", -1)])
def test_a_tampered_token_fails_authentication(where: str, index: int) -> None:
    keyring = Keyring(KEY_A)
    token = keyring.encrypt(SECRET, CONTEXT)

    with pytest.raises(AuthenticationFailed, match="failed authentication"):
        keyring.decrypt(_flip(token, index), CONTEXT)


@pytest.mark.parametrize(
    "change",
    [
        {"user_id": "user-2"},
        {"exchange": "bybit"},
        {"key_id": uuid.uuid4()},
        {"field": "api_key"},
        # Length-prefixed: moving characters between parts is a different context.
        {"user_id": "user-1b", "exchange": "inance"},
    ],
)
def test_a_token_does_not_open_for_another_owner(change: dict[str, object]) -> None:
    keyring = Keyring(KEY_A)
    token = keyring.encrypt(SECRET, CONTEXT)
    elsewhere = dataclasses.replace(CONTEXT, **change)  # type: ignore[arg-type]

    with pytest.raises(AuthenticationFailed) as caught:
        keyring.decrypt(token, elsewhere)
    assert str(elsewhere.key_id) in str(caught.value)
    assert elsewhere.field in str(caught.value)


def test_a_token_moved_to_another_configured_key_id_fails_authentication() -> None:
    keyring = Keyring(KEY_A, [KEY_B])
    token = keyring.encrypt(SECRET, CONTEXT)
    relabelled = token.replace(key_id(KEY_A), key_id(KEY_B), 1)

    with pytest.raises(AuthenticationFailed):
        keyring.decrypt(relabelled, CONTEXT)


def test_a_key_that_is_not_configured_is_named() -> None:
    token = Keyring(KEY_C).encrypt(SECRET, CONTEXT)

    with pytest.raises(UnknownKeyVersion) as caught:
        Keyring(KEY_A, [KEY_B]).decrypt(token, CONTEXT)
    assert caught.value.kid == key_id(KEY_C)
    assert str(caught.value) == f"encrypted under key {key_id(KEY_C)}, which is not configured"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "plain-api-key-stored-by-mistake",
        "jt2.0123abcd.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "jt1.0123ABCD.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # kids are lower-case hex
        "jt1.0123abcd.AAAA+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # not base64url
        "jt1.0123abcd.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # impossible base64 length
        "jt1.0123abcd.AAAAAAAA",  # shorter than a nonce and a tag
        "jt1.0123abcd.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.extra",
    ],
)
def test_a_malformed_token_is_refused_without_echoing_it(token: str) -> None:
    keyring = Keyring(KEY_A)

    with pytest.raises(MalformedCiphertext) as caught:
        keyring.decrypt(token, CONTEXT)
    if token:
        assert token not in str(caught.value)
        assert "plain-api-key" not in str(caught.value)
    with pytest.raises(MalformedCiphertext):
        keyring.is_current(token)


def test_the_errors_are_distinct_kinds_of_one_error() -> None:
    kinds = (MalformedCiphertext, UnknownKeyVersion, AuthenticationFailed)
    assert all(issubclass(kind, CredentialError) for kind in kinds)
    assert not any(issubclass(a, b) for a in kinds for b in kinds if a is not b)


def test_a_keyring_with_retired_keys_opens_old_tokens_and_seals_under_the_active_one() -> None:
    old = Keyring(KEY_A).encrypt(SECRET, CONTEXT)
    keyring = Keyring(KEY_B, [KEY_A])

    assert keyring.active_kid == key_id(KEY_B)
    assert keyring.kids == {key_id(KEY_A), key_id(KEY_B)}
    assert keyring.decrypt(old, CONTEXT) == SECRET
    assert not keyring.is_current(old)

    resealed = keyring.reseal(old, CONTEXT)

    assert token_key_id(resealed) == key_id(KEY_B)
    assert Keyring(KEY_B).decrypt(resealed, CONTEXT) == SECRET
    assert keyring.reseal(resealed, CONTEXT) == resealed  # already current: unchanged
    with pytest.raises(AuthenticationFailed):  # ...but opened, not merely trusted
        keyring.reseal(_flip(resealed, -1), CONTEXT)


def test_a_keyring_shows_key_ids_only() -> None:
    keyring = Keyring(KEY_A, [KEY_B])
    shown = repr(keyring) + str(keyring)

    assert key_id(KEY_A) in shown and key_id(KEY_B) in shown
    for key in (KEY_A, KEY_B):
        assert key.hex() not in shown and key.hex().upper() not in shown


def test_a_keyring_refuses_keys_of_the_wrong_size_and_ignores_repeats() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring(KEY_A[:16])
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring(KEY_A, [KEY_B + b"\x00"])

    assert Keyring(KEY_A, [KEY_A, KEY_B, KEY_B]).kids == {key_id(KEY_A), key_id(KEY_B)}


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_the_keyring_comes_from_the_settings() -> None:
    active, retired = secrets.token_hex(32), secrets.token_hex(32)
    settings = _settings(ENCRYPTION_KEY=active, ENCRYPTION_KEYS_RETIRED=[retired.upper()])

    keyring = Keyring.from_settings(settings)

    assert settings.problems() == []
    assert keyring.active_kid == key_id(bytes.fromhex(active))
    assert keyring.kids == {key_id(bytes.fromhex(active)), key_id(bytes.fromhex(retired))}
    assert Keyring.from_settings(_settings(ENCRYPTION_KEY=active)).kids == {keyring.active_kid}


def test_retired_keys_are_read_from_the_environment_as_a_json_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = secrets.token_hex(32), secrets.token_hex(32)
    monkeypatch.setenv("ENCRYPTION_KEYS_RETIRED", f'["{first}", "{second}"]')

    settings = _settings()

    assert [k.get_secret_value() for k in settings.ENCRYPTION_KEYS_RETIRED] == [first, second]
    assert first not in repr(settings)


def test_unusable_retired_keys_are_named_without_their_values() -> None:
    active = secrets.token_hex(32)
    settings = _settings(
        ENCRYPTION_KEY=active,
        ENCRYPTION_KEYS_RETIRED=[SecretStr("abc123"), SecretStr(active.upper())],
    )

    problems = settings.problems()

    assert problems == [
        "ENCRYPTION_KEYS_RETIRED entry 1 must be 64 hexadecimal characters",
        "ENCRYPTION_KEYS_RETIRED entry 2 is the active ENCRYPTION_KEY",
    ]
    assert active not in "".join(problems) and "abc123" not in "".join(problems)
