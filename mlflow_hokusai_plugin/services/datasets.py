"""Digests and manifests of tabular data (benchmark sets and contributions)."""

from __future__ import annotations

import hashlib
from typing import Any


def dataframe_digest(frame: Any) -> str:
    """sha256 hex of a DataFrame's CSV form (header included, no index).

    CSV, not pickle or parquet bytes, so that the digest depends on the values only and is the
    same across pandas and pyarrow versions.
    """
    return hashlib.sha256(frame.to_csv(index=False).encode("utf-8")).hexdigest()


def data_manifest(frame: Any, source_path: str | None = None) -> dict:
    """The data manifest of a contribution, in the shape the earlier pipeline wrote."""
    return {
        "source_path": source_path,
        "row_count": int(frame.shape[0]),
        "column_count": int(frame.shape[1]),
        "columns": [str(c) for c in frame.columns],
        "data_hash": dataframe_digest(frame),
        "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
        "null_counts": {str(c): int(n) for c, n in frame.isna().sum().items()},
        "unique_counts": {str(c): int(n) for c, n in frame.nunique().items()},
    }
