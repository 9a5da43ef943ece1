"""S3 artifacts: a version of a source object is promoted to the release key by copy.

The bucket must be versioned, so whatever the key held before is still there to roll back
to: the snapshot records that version's id, and compensation copies it back on top (or
deletes the key if it did not exist). The promoted object carries its source in its
metadata, so a re-run recognises its own copy even where ETags differ (multipart sources).

What relman wrote is the version id its copy created. S3 has no condition a CopyObject can
put on the destination's current version, so the drift check compares the current version
id with the written one immediately before each write.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.errors import aws_call, error_code, raise_aws_error
from activities.targets.base import TargetHandler
from models.messages import ApplyResult, CompensateResult, Snapshot
from models.plan import S3ArtifactTarget

SOURCE_KEY_METADATA = "relman-source-key"
SOURCE_VERSION_METADATA = "relman-source-version-id"
# Headers that MetadataDirective=REPLACE would drop unless given again.
_CONTENT_HEADERS = (
    "ContentType",
    "ContentEncoding",
    "ContentDisposition",
    "ContentLanguage",
    "CacheControl",
)


class BucketNotVersioned(Exception):
    """The bucket keeps no previous versions, so a promotion could not be rolled back."""


class ArtifactNotFound(Exception):
    """The source version to promote, or the version to restore, does not exist."""


def _invalid(target: S3ArtifactTarget, error: type[Exception], reason: str) -> ApplicationError:
    return ApplicationError(f"{target.resource}: {reason}", type=error.__name__, non_retryable=True)


def _describe(head: dict[str, Any] | None) -> str:
    if head is None:
        return "(absent)"
    source = head.get("Metadata", {})
    origin = (
        f" from {source.get(SOURCE_KEY_METADATA)}@{source[SOURCE_VERSION_METADATA]}"
        if SOURCE_VERSION_METADATA in source
        else ""
    )
    return f"version {head['VersionId']} etag {head['ETag']}{origin}"


def _held(head: dict[str, Any] | None) -> dict[str, Any]:
    """The key as ``ApplyResult.written`` records it: its current version id ({} if absent)."""
    return {} if head is None else {"version_id": head["VersionId"]}


def _same_object(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same content, user metadata and content headers (version ids aside)."""
    keys = ("ETag", "Metadata", *_CONTENT_HEADERS)
    return all(a.get(k) == b.get(k) for k in keys)


class S3ArtifactHandler(TargetHandler):
    """``s3_artifact`` targets."""

    kind = "s3_artifact"

    def _check_versioning(self, target: S3ArtifactTarget) -> None:
        with aws_call("s3:GetBucketVersioning", target.resource):
            status = (
                self.client("s3", target).get_bucket_versioning(Bucket=target.bucket).get("Status")
            )
        if status != "Enabled":
            raise _invalid(
                target,
                BucketNotVersioned,
                f"bucket {target.bucket} must have versioning enabled to roll back "
                f"(it is {(status or 'never enabled').lower()})",
            )

    def _head(
        self, target: S3ArtifactTarget, key: str, version_id: str | None = None
    ) -> dict[str, Any] | None:
        """The object (or one version of it); None if absent or a delete marker."""
        params = {"Bucket": target.bucket, "Key": key}
        if version_id is not None:
            params["VersionId"] = version_id
        try:
            return dict(self.client("s3", target).head_object(**params))
        except ClientError as exc:
            # HEAD answers have no body: the code is the bare HTTP status.
            if error_code(exc) in ("404", "NoSuchKey", "NoSuchVersion"):
                return None
            if version_id is not None and error_code(exc) == "400":  # malformed version id
                return None
            raise_aws_error(exc, "s3:HeadObject", f"s3://{target.bucket}/{key}")

    def _version(self, target: S3ArtifactTarget, key: str, version_id: str) -> dict[str, Any]:
        head = self._head(target, key, version_id)
        if head is None:
            raise _invalid(
                target,
                ArtifactNotFound,
                f"s3://{target.bucket}/{key} has no version {version_id!r}",
            )
        return head

    def _copy(
        self, target: S3ArtifactTarget, key: str, version_id: str, **extra: Any
    ) -> dict[str, Any]:
        with aws_call("s3:CopyObject", target.resource):
            self.client("s3", target).copy_object(
                Bucket=target.bucket,
                Key=target.key,
                CopySource={"Bucket": target.bucket, "Key": key, "VersionId": version_id},
                **extra,
            )
        head = self._head(target, target.key)
        assert head is not None  # just written; S3 reads are strongly consistent
        return head

    def snapshot(self, target: S3ArtifactTarget) -> Snapshot:
        self._check_versioning(target)
        head = self._head(target, target.key)
        if head is None:
            return Snapshot(resource=target.resource, exists=False, display="(absent)")
        return Snapshot(
            resource=target.resource,
            exists=True,
            state={"version_id": head["VersionId"], "etag": head["ETag"]},
            display=_describe(head),
        )

    def show(self, target: S3ArtifactTarget, written: dict[str, Any]) -> str:
        return f"version {written['version_id']}" if written else "(absent)"

    def apply(
        self,
        target: S3ArtifactTarget,
        snapshot: Snapshot,
        percent: int,
        written: dict[str, Any] | None = None,
    ) -> ApplyResult:
        self._check_versioning(target)
        source = self._version(target, target.source_key, target.source_version_id)
        current = self._head(target, target.key)
        metadata = current.get("Metadata", {}) if current else {}
        promoted = current is not None and (
            current["ETag"] == source["ETag"]
            or (
                metadata.get(SOURCE_KEY_METADATA) == target.source_key
                and metadata.get(SOURCE_VERSION_METADATA) == target.source_version_id
            )
        )
        if not promoted:
            wanted = f"{target.source_key}@{target.source_version_id}"
            self.check_step(target, snapshot, written, _held(current), wanted)
            current = self._copy(
                target,
                target.source_key,
                target.source_version_id,
                MetadataDirective="REPLACE",
                Metadata={
                    **source.get("Metadata", {}),
                    SOURCE_KEY_METADATA: target.source_key,
                    SOURCE_VERSION_METADATA: target.source_version_id,
                },
                **{h: source[h] for h in _CONTENT_HEADERS if source.get(h)},
            )
        return self.result(target, not promoted, _describe(current), _held(current))

    def compensate(
        self,
        target: S3ArtifactTarget,
        snapshot: Snapshot,
        written: dict[str, Any] | None = None,
        force: bool = False,
    ) -> CompensateResult:
        if not snapshot.exists:
            current = self._head(target, target.key)
            if current is None:
                return CompensateResult(resource=target.resource, changed=False, display="(absent)")
            self.check_rollback(target, snapshot, written, force, _held(current))
            # In a versioned bucket this adds a delete marker: the promoted version stays
            # in the history for the audit.
            with aws_call("s3:DeleteObject", target.resource):
                self.client("s3", target).delete_object(Bucket=target.bucket, Key=target.key)
            current = self._head(target, target.key)
            return CompensateResult(
                resource=target.resource, changed=True, display=_describe(current)
            )

        version_id = snapshot.state["version_id"]
        previous = self._version(target, target.key, version_id)
        # Read last, right before the copy: the drift check compares this version id.
        current = self._head(target, target.key)
        if current is not None and current["VersionId"] == version_id:
            return CompensateResult(
                resource=target.resource, changed=False, display=_describe(current)
            )
        if current is not None and _same_object(current, previous):
            # An earlier compensation already copied the version back. (A version uploaded
            # in parts has a multipart ETag its copy does not share: a repeated compensation
            # then copies the same bytes once more, which is harmless.)
            return CompensateResult(
                resource=target.resource, changed=False, display=_describe(current)
            )
        self.check_rollback(target, snapshot, written, force, _held(current))
        # MetadataDirective COPY (the default) brings back the old metadata and headers too.
        current = self._copy(target, target.key, version_id)
        return CompensateResult(resource=target.resource, changed=True, display=_describe(current))
