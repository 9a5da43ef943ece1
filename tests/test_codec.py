"""Payload encryption (common.codec): what Temporal stores is ciphertext, keys rotate, bad
key material is a clear error, and a release's secrets are not in its raw history."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.aws import AwsClients
from client.binaries import find_binary
from common.codec import (
    ENCODING,
    KEY_ID,
    CodecError,
    CodecKeys,
    EncryptionCodec,
    data_converter,
    keys_from_env,
    new_key_line,
)
from models.messages import OperatorInput
from models.status import ReleasePhase
from tests.helpers import (
    base64_fields,
    make_plan,
    ssm,
    ssm_values,
    start_release,
    wait_for_gate,
    wave,
)
from tests.notify_receivers import webhook_receiver
from tests.trust import signed_update
from workflows.release import ReleaseWorkflow

KEY_A, KEY_B = b"a" * 32, b"b" * 32
SECRET = "s3cr3t-db-password-7f2c"
VAULTED = "vaulted-api-key-91d0"


def payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


async def test_payloads_are_encrypted_and_decrypt_to_what_was_sent() -> None:
    codec = EncryptionCodec(CodecKeys.of([("a", KEY_A)], "test"))
    [sealed] = await codec.encode([payload(SECRET)])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata[KEY_ID] == b"a"
    assert SECRET.encode() not in sealed.SerializeToString()
    assert await codec.decode([sealed]) == [payload(SECRET)]


async def test_keys_rotate_without_breaking_what_the_old_key_wrote() -> None:
    old = EncryptionCodec(CodecKeys.of([("a", KEY_A)], "test"))
    [written] = await old.encode([payload("in flight")])
    rotated = EncryptionCodec(CodecKeys.of([("b", KEY_B), ("a", KEY_A)], "test"))
    assert await rotated.decode([written]) == [payload("in flight")]
    [new] = await rotated.encode([payload("new")])
    assert new.metadata[KEY_ID] == b"b"
    # Payloads written before encryption existed decode as they are.
    assert await rotated.decode([payload("clear")]) == [payload("clear")]


async def test_an_unknown_key_or_a_tampered_payload_is_refused_by_name() -> None:
    [sealed] = await EncryptionCodec(CodecKeys.of([("a", KEY_A)], "test")).encode([payload("x")])
    other = EncryptionCodec(CodecKeys.of([("b", KEY_B)], "/etc/relman/codec.key"))
    with pytest.raises(CodecError) as unknown:
        await other.decode([sealed])
    assert str(unknown.value) == (
        "payload encrypted with key 'a', which /etc/relman/codec.key does not hold"
    )
    # One bit of the tag flipped (setting the last byte to 0 left it as it was one run in 256).
    tampered = Payload(
        metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    )
    with pytest.raises(CodecError, match="payload under key 'a' fails authentication"):
        await EncryptionCodec(CodecKeys.of([("a", KEY_A)], "t")).decode([tampered])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a=" + base64.b64encode(b"short").decode(), "RELMAN_CODEC_KEYS: key 'a' is 5 bytes; "
         "AES-256 needs 32"),
        ("a=not base64!", "RELMAN_CODEC_KEYS: key 'a' is not base64"),
        (f"a={base64.b64encode(KEY_A).decode()},a={base64.b64encode(KEY_B).decode()}",
         "RELMAN_CODEC_KEYS: key id 'a' appears twice"),
    ],
)  # fmt: skip
def test_bad_key_material_is_a_clear_error(value: str, message: str) -> None:
    with pytest.raises(CodecError) as raised:
        keys_from_env({"RELMAN_CODEC_KEYS": value})
    assert str(raised.value) == message


def test_key_files_and_kms_data_keys(tmp_path: Path, aws: AwsClients) -> None:
    key_file = tmp_path / "codec.key"
    key_file.write_text("# current first\n" + new_key_line("k2") + new_key_line("k1"))
    keys = keys_from_env({"RELMAN_CODEC_KEY_FILE": str(key_file)})
    assert keys is not None and keys.current == "k2" and sorted(keys.keys) == ["k1", "k2"]

    kms = aws.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    kms_file = tmp_path / "codec.kms"
    kms_file.write_text(f"prod-1 {base64.b64encode(data_key['CiphertextBlob']).decode()}\n")
    keys = keys_from_env({"RELMAN_CODEC_KMS_KEYS": str(kms_file)}, kms=kms)
    assert keys is not None and keys.keys == {"prod-1": data_key["Plaintext"]}
    assert keys.source == f"{kms_file} (KMS)"
    assert keys_from_env({}) is None


async def test_a_releases_raw_history_holds_no_secret_and_it_still_applies_and_rolls_back(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str
) -> None:
    aws.client("ssm").put_parameter(
        Name="/payments/db/password", Value="old-password", Type="SecureString"
    )
    aws.client("ssm").put_parameter(Name="/payments/api/key", Value="old-api-key", Type="String")
    vault = aws.client("secretsmanager").create_secret(
        Name="payments/api-key", SecretString=VAULTED
    )["ARN"]
    from_vault = {
        "name": "api-key",
        "kind": "ssm_parameter",
        "parameter": "/payments/api/key",
        "value_from": {"secretsmanager": vault},
    }
    with webhook_receiver() as hook:  # a webhook whose path holds a token
        plan = make_plan(
            [ssm("db", "/payments/db/password", SECRET, "SecureString"), from_vault,
             ssm("flag", "/payments/f", "on")],
            [wave("first", ["db", "api-key"]), wave("second", ["flag"], after=["first"],
                                                   groups={"finance-cab": 1})],
            notifications={"webhook_url": hook.url, "events": ["wave_completed"]},
        )  # fmt: skip
        token = hook.url.split("/", 3)[3]
        secrets = ["/payments/db/password", "/payments/api/key"]
        async with make_worker(dev_env, aws):
            handle = await start_release(dev_env.client, plan, task_queue)
            await wait_for_gate(handle, "second")
            assert ssm_values(aws, secrets) == {
                "/payments/db/password": SECRET, "/payments/api/key": VAULTED
            }  # fmt: skip
            await signed_update(
                handle, ReleaseWorkflow.abort, OperatorInput(actor="alice", reason="test")
            )
            outcome = await handle.result()
    assert outcome.phase == ReleasePhase.CANCELLED
    assert [d.body["wave"] for d in hook.deliveries] == ["first"]  # the webhook was used
    assert ssm_values(aws, secrets) == {
        "/payments/db/password": "old-password", "/payments/api/key": "old-api-key"
    }  # fmt: skip

    # What anyone reading the namespace sees: the `temporal` CLI's raw JSON history.
    address = dev_env.client.service_client.config.target_host
    for workflow_id in (plan.id, f"{plan.id}/first/1"):
        shown = subprocess.run(
            [find_binary("temporal"), "workflow", "show", "--workflow-id", workflow_id,
             "--address", address, "--output", "json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        raw = shown.stdout
        assert base64.b64encode(ENCODING).decode() in raw  # payloads are encrypted...
        # ...and no secret shows, in clear or in any base64 field decoded (search
        # attributes and the SDK's patch markers stay clear: they hold names, not values).
        decoded = b"".join(base64_fields(json.loads(raw)))
        for text in (SECRET, "old-password", VAULTED, "old-api-key", token):
            assert text not in raw and text.encode() not in decoded

    # A client without the key cannot read the release; one with it can.
    blind = await Client.connect(address, data_converter=data_converter(None))
    with pytest.raises(CodecError) as unreadable:
        await blind.get_workflow_handle(plan.id).result()
    assert str(unreadable.value) == (
        "payload encrypted with key 'tests-1', but no payload keys are configured: set "
        "RELMAN_CODEC_KEYS, RELMAN_CODEC_KEY_FILE or RELMAN_CODEC_KMS_KEYS"
    )
    keyed = await Client.connect(address, data_converter=data_converter(keys_from_env()))
    assert (await keyed.get_workflow_handle(plan.id).result())["phase"] == "cancelled"
