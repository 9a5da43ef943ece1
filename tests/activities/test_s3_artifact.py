"""S3 artifact promotion in a versioned bucket against a moto server.

Every write to a versioned bucket adds a version, so the version list is the resource's own
history: a re-run that writes nothing leaves it as it was.
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients
from activities.targets.s3_artifact import S3ArtifactHandler
from models.plan import S3ArtifactTarget

BUCKET = "artifacts"
KEY = "releases/web.zip"


@pytest.fixture
def s3(aws: AwsClients) -> Any:
    """A versioned bucket."""
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


def put(s3: Any, key: str, body: bytes, build: str) -> str:
    answer = s3.put_object(
        Bucket=BUCKET,
        Key=key,
        Body=body,
        Metadata={"build": build},
        ContentType="application/zip",
    )
    return str(answer["VersionId"])


def obj(s3: Any, key: str = KEY) -> dict[str, Any]:
    """The current object's bytes, user metadata and content type."""
    got = s3.get_object(Bucket=BUCKET, Key=key)
    return {
        "body": got["Body"].read(),
        "metadata": got["Metadata"],
        "content_type": got["ContentType"],
        "etag": got["ETag"],
    }


def versions(s3: Any, key: str = KEY) -> dict[str, dict[str, bool]]:
    """Every version of ``key`` by id: whether it is a delete marker, whether it is current."""
    answer = s3.list_object_versions(Bucket=BUCKET, Prefix=key)
    return {
        entry["VersionId"]: {"delete_marker": marker, "latest": entry["IsLatest"]}
        for kind, marker in (("Versions", False), ("DeleteMarkers", True))
        for entry in answer.get(kind, [])
        if entry["Key"] == key
    }


def current_version(s3: Any, key: str = KEY) -> str:
    return str(s3.head_object(Bucket=BUCKET, Key=key)["VersionId"])


def target(source_version_id: str, bucket: str = BUCKET) -> S3ArtifactTarget:
    return S3ArtifactTarget(
        name="web-artifact",
        kind="s3_artifact",
        bucket=bucket,
        key=KEY,
        source_key="builds/web-2.0.zip",
        source_version_id=source_version_id,
    )


def test_snapshot_records_the_current_version(aws: AwsClients, s3: Any) -> None:
    previous = put(s3, KEY, b"web 1.0", "1.0")
    source = put(s3, "builds/web-2.0.zip", b"web 2.0", "2.0")

    snapshot = S3ArtifactHandler(aws).snapshot(target(source))

    etag = obj(s3)["etag"]
    assert snapshot.exists
    assert snapshot.state == {"version_id": previous, "etag": etag}
    assert snapshot.display == f"version {previous} etag {etag}"


def test_apply_promotes_once_at_any_step(aws: AwsClients, s3: Any) -> None:
    put(s3, KEY, b"web 1.0", "1.0")
    source = put(s3, "builds/web-2.0.zip", b"web 2.0", "2.0")
    put(s3, "builds/web-2.0.zip", b"web 2.0 hotfix", "2.0.1")  # a newer build: not promoted
    handler, new = S3ArtifactHandler(aws), target(source)
    snapshot = handler.snapshot(new)

    result = handler.apply(new, snapshot, 10)  # not a traffic kind: applies fully at once

    promoted = current_version(s3)
    assert result.changed
    assert result.display == (
        f"version {promoted} etag {obj(s3)['etag']} from builds/web-2.0.zip@{source}"
    )
    assert obj(s3)["body"] == b"web 2.0"
    assert obj(s3)["content_type"] == "application/zip"
    assert obj(s3)["metadata"] == {
        "build": "2.0",
        "relman-source-key": "builds/web-2.0.zip",
        "relman-source-version-id": source,
    }

    history = versions(s3)
    for percent in (10, 50, 100):
        rerun = handler.apply(new, snapshot, percent)
        assert not rerun.changed
        assert rerun.display == result.display
    assert versions(s3) == history


def test_compensate_restores_the_previous_version_exactly(aws: AwsClients, s3: Any) -> None:
    put(s3, KEY, b"web 1.0", "1.0")
    source = put(s3, "builds/web-2.0.zip", b"web 2.0", "2.0")
    handler, new = S3ArtifactHandler(aws), target(source)
    before = obj(s3)
    snapshot = handler.snapshot(new)
    handler.apply(new, snapshot, 100)
    assert obj(s3)["body"] == b"web 2.0"

    restored = handler.compensate(new, snapshot)

    assert restored.changed
    assert obj(s3) == before  # bytes, metadata, content type and ETag
    assert len(versions(s3)) == 3  # 1.0, 2.0, and 1.0 copied back on top
    history = versions(s3)
    again = handler.compensate(new, snapshot)
    assert not again.changed
    assert versions(s3) == history


def test_compensate_deletes_a_key_that_did_not_exist(aws: AwsClients, s3: Any) -> None:
    source = put(s3, "builds/web-2.0.zip", b"web 2.0", "2.0")
    handler, new = S3ArtifactHandler(aws), target(source)
    snapshot = handler.snapshot(new)
    assert not snapshot.exists
    handler.apply(new, snapshot, 100)

    restored = handler.compensate(new, snapshot)

    assert restored.changed
    assert restored.display == "(absent)"
    # Deleting in a versioned bucket adds a delete marker: the promoted copy stays history.
    assert sorted(versions(s3).values(), key=lambda v: v["latest"]) == [
        {"delete_marker": False, "latest": False},
        {"delete_marker": True, "latest": True},
    ]
    history = versions(s3)
    again = handler.compensate(new, snapshot)
    assert not again.changed
    assert versions(s3) == history


def test_missing_bucket_names_the_call(aws: AwsClients) -> None:
    with pytest.raises(ApplicationError) as raised:
        S3ArtifactHandler(aws).snapshot(target("v1", bucket="no-such-bucket"))

    assert raised.value.message == (
        "s3:GetBucketVersioning on s3 object s3://no-such-bucket/releases/web.zip failed: "
        "NoSuchBucket: The specified bucket does not exist"
    )
    assert raised.value.non_retryable


def test_unversioned_bucket_is_refused(aws: AwsClients) -> None:
    aws.client("s3").create_bucket(Bucket="plain")

    with pytest.raises(ApplicationError) as raised:
        S3ArtifactHandler(aws).snapshot(target("v1", bucket="plain"))

    assert raised.value.message == (
        "s3 object s3://plain/releases/web.zip: bucket plain must have versioning enabled "
        "to roll back (it is never enabled)"
    )
    assert raised.value.type == "BucketNotVersioned"


def test_missing_source_version_is_refused_before_any_change(aws: AwsClients, s3: Any) -> None:
    put(s3, KEY, b"web 1.0", "1.0")
    put(s3, "builds/web-2.0.zip", b"web 2.0", "2.0")
    handler, new = S3ArtifactHandler(aws), target("no-such-version")
    history = versions(s3)

    with pytest.raises(ApplicationError) as raised:
        handler.apply(new, handler.snapshot(new), 100)

    assert raised.value.message == (
        "s3 object s3://artifacts/releases/web.zip: "
        "s3://artifacts/builds/web-2.0.zip has no version 'no-such-version'"
    )
    assert raised.value.type == "ArtifactNotFound"
    assert versions(s3) == history


# --- drift: someone else uploaded over relman's copy ---------------------------------------


def promoted_then_hotfixed(aws: AwsClients, s3: Any) -> tuple[Any, Any, str]:
    put(s3, KEY, b"web 1.0", "1.0")
    source = put(s3, "builds/web-2.0.zip", b"web 2.0", "2.0")
    handler, new = S3ArtifactHandler(aws), target(source)
    snapshot = handler.snapshot(new)
    applied = handler.apply(new, snapshot, 100)
    hotfix = put(s3, KEY, b"web 2.0.1 hotfix", "2.0.1")
    return snapshot, applied, hotfix


def test_apply_reports_the_version_its_copy_created(aws: AwsClients, s3: Any) -> None:
    source = put(s3, "builds/web-2.0.zip", b"web 2.0", "2.0")
    handler, new = S3ArtifactHandler(aws), target(source)
    applied = handler.apply(new, handler.snapshot(new), 100)
    assert applied.written == {"version_id": current_version(s3)}
    assert applied.written_display == f"version {current_version(s3)}"


def test_compensate_leaves_an_object_someone_else_uploaded_alone(aws: AwsClients, s3: Any) -> None:
    snapshot, applied, hotfix = promoted_then_hotfixed(aws, s3)
    handler, new = S3ArtifactHandler(aws), target("unused")
    written = applied.written["version_id"]

    with pytest.raises(ApplicationError) as raised:
        handler.compensate(new, snapshot, applied.written)

    assert (raised.value.type, raised.value.non_retryable) == ("ResourceDrifted", True)
    assert raised.value.message == (
        f"target 'web-artifact' (s3 object s3://{BUCKET}/{KEY}): relman wrote version "
        f"{written}, it now holds version {hotfix}; not restoring it to {snapshot.display} "
        "without --force"
    )
    assert raised.value.details[0] == {
        "target": "web-artifact",
        "resource": f"s3 object s3://{BUCKET}/{KEY}",
        "written": f"version {written}",
        "current": f"version {hotfix}",
        "snapshot": snapshot.display,
    }
    assert current_version(s3) == hotfix and obj(s3)["body"] == b"web 2.0.1 hotfix"

    assert handler.compensate(new, snapshot, applied.written, force=True).changed
    assert obj(s3)["body"] == b"web 1.0"


def test_compensate_restores_an_untouched_object_and_a_retry_is_a_no_op(
    aws: AwsClients, s3: Any
) -> None:
    put(s3, KEY, b"web 1.0", "1.0")
    source = put(s3, "builds/web-2.0.zip", b"web 2.0", "2.0")
    handler, new = S3ArtifactHandler(aws), target(source)
    before = obj(s3)
    snapshot = handler.snapshot(new)
    applied = handler.apply(new, snapshot, 100)

    assert handler.compensate(new, snapshot, applied.written).changed
    assert obj(s3) == before
    history = versions(s3)
    assert not handler.compensate(new, snapshot, applied.written).changed
    assert versions(s3) == history


def test_compensate_does_not_delete_a_key_someone_else_overwrote(aws: AwsClients, s3: Any) -> None:
    source = put(s3, "builds/web-2.0.zip", b"web 2.0", "2.0")
    handler, new = S3ArtifactHandler(aws), target(source)
    snapshot = handler.snapshot(new)  # absent: the rollback would delete the key
    applied = handler.apply(new, snapshot, 100)
    hotfix = put(s3, KEY, b"web 2.0.1 hotfix", "2.0.1")

    with pytest.raises(ApplicationError) as raised:
        handler.compensate(new, snapshot, applied.written)
    assert raised.value.message.endswith(
        f"it now holds version {hotfix}; not restoring it to (absent) without --force"
    )
    assert current_version(s3) == hotfix


def test_a_further_step_refuses_an_object_replaced_since_the_previous_one(
    aws: AwsClients, s3: Any
) -> None:
    source = put(s3, "builds/web-2.0.zip", b"web 2.0", "2.0")
    handler, new = S3ArtifactHandler(aws), target(source)
    snapshot = handler.snapshot(new)
    applied = handler.apply(new, snapshot, 10)
    assert not handler.apply(new, snapshot, 10, applied.written).changed  # a re-run
    hotfix = put(s3, KEY, b"web 2.0.1 hotfix", "2.0.1")

    with pytest.raises(ApplicationError) as raised:
        handler.apply(new, snapshot, 50, applied.written)

    assert raised.value.message == (
        f"target 'web-artifact' (s3 object s3://{BUCKET}/{KEY}): changed by someone else since "
        f"relman's previous step: relman wrote version {applied.written['version_id']}, it now "
        f"holds version {hotfix}; not applying builds/web-2.0.zip@{source}"
    )
    assert current_version(s3) == hotfix
