"""Canonical JSON bytes and their SHA-256 digests: what gets signed, and what names a plan or
a policy version. The CLI, the worker and an auditor's machine all compute the same bytes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

DIGEST_PREFIX = "sha256:"


def canonical_json(data: Any) -> bytes:
    """``data`` as sorted-key, compact JSON in UTF-8 (non-ASCII characters kept as they are)."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def model_digest(model: BaseModel) -> str:
    """``sha256:<hex>`` over the canonical JSON of ``model``.

    Fields left at their defaults are left out, so a relman release that adds a field with a
    default does not change the digest of a plan or policy written before it.
    """
    data = model.model_dump(mode="json", exclude_defaults=True)
    return DIGEST_PREFIX + hashlib.sha256(canonical_json(data)).hexdigest()
