"""advhpo.storage: storage URLs, the study database (heartbeats, retries) and trial checkpoints."""

from __future__ import annotations

from advhpo.storage._artifacts import CheckpointStore, default_artifact_dir, unwritable_reason
from advhpo.storage._rdb import open_storage
from advhpo.storage._resilient import (
    GRACE_ATTR,
    LOST_ATTR,
    OUTAGE_SECONDS,
    ResilientRDBStorage,
    is_transient,
)
from advhpo.storage._retry import (
    FAIL_REASON_ATTR,
    INTERRUPTED_ATTR,
    RetryLostTrial,
    may_requeue_interrupted,
    original_trial_number,
    requeue_interrupted,
    retry_callback,
)
from advhpo.storage._url import (
    DEFAULT_STORAGE_URL,
    STORAGE_ENV,
    check_url,
    mask_url,
    resolve_storage_url,
)

__all__ = [
    "DEFAULT_STORAGE_URL",
    "FAIL_REASON_ATTR",
    "GRACE_ATTR",
    "INTERRUPTED_ATTR",
    "LOST_ATTR",
    "OUTAGE_SECONDS",
    "STORAGE_ENV",
    "CheckpointStore",
    "ResilientRDBStorage",
    "RetryLostTrial",
    "check_url",
    "default_artifact_dir",
    "is_transient",
    "mask_url",
    "may_requeue_interrupted",
    "open_storage",
    "original_trial_number",
    "requeue_interrupted",
    "resolve_storage_url",
    "retry_callback",
    "unwritable_reason",
]
