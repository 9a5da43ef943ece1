"""Payload encryption: nothing relman sends to Temporal is readable in its history.

Every payload (plans, snapshots, decisions, notification settings, results) is encrypted
with AES-256-GCM before it leaves the process, by the worker, the CLI and the tests alike;
Temporal stores only ciphertext. Each encrypted payload names its key in its metadata
(``encryption-key-id``), so keys rotate without breaking releases in flight: the first key
configured encrypts, every key configured decrypts. Payloads written without encryption
(by a relman that had none) still decode as they are.

Key material, the first of these that is set:

- ``RELMAN_CODEC_KEYS``: ``id=base64key[,id=base64key...]`` (32-byte keys, base64);
- ``RELMAN_CODEC_KEY_FILE``: a file of ``id base64key`` lines;
- ``RELMAN_CODEC_KMS_KEYS``: a file of ``id base64ciphertext`` lines, AWS KMS data keys
  (``aws kms generate-data-key --key-spec AES_256``'s ``CiphertextBlob``), decrypted once
  with KMS when the process starts (the key material never sits on disk in clear);
- the embedded stack's key file (``relman dev up`` writes one), when relman talks to it.

Without any, payloads are not encrypted (and the worker says so when it starts).
``relman codec-server`` decodes payloads for the Temporal Web UI and CLI.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

from common.errors import CliError

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEYS_ENV = "RELMAN_CODEC_KEYS"
KEY_FILE_ENV = "RELMAN_CODEC_KEY_FILE"
KMS_KEYS_ENV = "RELMAN_CODEC_KMS_KEYS"
KEY_BYTES = 32
NONCE_BYTES = 12


class CodecError(CliError):
    """Key material that cannot be used, or a payload that cannot be decrypted."""


@dataclasses.dataclass(frozen=True)
class CodecKeys:
    """The keys by id; ``current`` encrypts."""

    current: str
    keys: Mapping[str, bytes]
    source: str  # where they came from, for the worker's start message

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, bytes]], source: str) -> CodecKeys:
        keys: dict[str, bytes] = {}
        for key_id, key in pairs:
            if not key_id or any(c.isspace() or c in ",=" for c in key_id):
                raise CodecError(f"{source}: key id {key_id!r} is empty or has , = or spaces")
            if len(key) != KEY_BYTES:
                raise CodecError(
                    f"{source}: key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}"
                )
            if key_id in keys:
                raise CodecError(f"{source}: key id {key_id!r} appears twice")
            keys[key_id] = key
        if not keys:
            raise CodecError(f"{source}: no keys")
        return cls(current=next(iter(keys)), keys=keys, source=source)


def new_key_line(key_id: str) -> str:
    """A fresh key as a key file line (``id base64key``)."""
    return f"{key_id} {base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}\n"


def _decoded(value: str, source: str, key_id: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise CodecError(f"{source}: key {key_id!r} is not base64") from None


def _lines(path: Path) -> list[tuple[str, str]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise CodecError(f"cannot read key file {path}: {exc.strerror}") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise CodecError(f"{path}:{number}: expected `id base64key`")
        pairs.append((parts[0], parts[1]))
    return pairs


def keys_from_env(
    environ: Mapping[str, str] | None = None, stack_key_file: Path | None = None, kms: Any = None
) -> CodecKeys | None:
    """The configured keys (see the module docstring), or None. ``kms``: a boto3 KMS
    client for ``RELMAN_CODEC_KMS_KEYS`` (default: one from the standard AWS chain)."""
    env = os.environ if environ is None else environ
    if env.get(KEYS_ENV):
        pairs = [item.partition("=") for item in env[KEYS_ENV].split(",") if item.strip()]
        return CodecKeys.of(
            ((k.strip(), _decoded(v.strip(), KEYS_ENV, k)) for k, _, v in pairs), KEYS_ENV
        )
    if env.get(KEY_FILE_ENV):
        path = Path(env[KEY_FILE_ENV])
        return CodecKeys.of(((k, _decoded(v, str(path), k)) for k, v in _lines(path)), str(path))
    if env.get(KMS_KEYS_ENV):
        path = Path(env[KMS_KEYS_ENV])
        if kms is None:
            import boto3

            kms = boto3.client("kms", endpoint_url=env.get("RELMAN_AWS_ENDPOINT_URL") or None)
        decrypted: list[tuple[str, bytes]] = []
        for key_id, blob in _lines(path):
            try:
                plain = kms.decrypt(CiphertextBlob=_decoded(blob, str(path), key_id))
            except Exception as exc:  # botocore's errors: access denied, unknown key, ...
                raise CodecError(f"{path}: KMS cannot decrypt key {key_id!r}: {exc}") from None
            decrypted.append((key_id, plain["Plaintext"]))
        return CodecKeys.of(decrypted, f"{path} (KMS)")
    if stack_key_file is not None and stack_key_file.exists():
        path = stack_key_file
        return CodecKeys.of(((k, _decoded(v, str(path), k)) for k, v in _lines(path)), str(path))
    return None


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each whole payload (metadata and data), keyed by id."""

    def __init__(self, keys: CodecKeys):
        self.keys = keys
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = secrets.token_bytes(NONCE_BYTES)
        key_id = self.keys.current
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written without encryption
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(
                f"payload encrypted with key {key_id!r}, which {self.keys.source} does not hold"
            )
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
        except InvalidTag:
            raise CodecError(f"payload under key {key_id!r} fails authentication") from None
        return Payload.FromString(plain)


class NoKeysCodec(PayloadCodec):
    """Without keys: payloads go out clear, and an encrypted one read back is an error that
    says which setting is missing (not the SDK's "unknown payload encoding")."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        for payload in payloads:
            if payload.metadata.get("encoding") == ENCODING:
                key_id = payload.metadata.get(KEY_ID, b"").decode()
                raise CodecError(
                    f"payload encrypted with key {key_id!r}, but no payload keys are "
                    f"configured: set {KEYS_ENV}, {KEY_FILE_ENV} or {KMS_KEYS_ENV}"
                )
        return list(payloads)


def data_converter(keys: CodecKeys | None) -> DataConverter:
    """relman's pydantic data converter, encrypting with ``keys`` when there are any."""
    codec = NoKeysCodec() if keys is None else EncryptionCodec(keys)
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)
