"""Read contributed data, check it against the benchmark, and clean it.

A contribution is only worth something when its rows fit the benchmark's schema, hold no personal
data, and are new: rows that repeat one another, the base training data, or (worst) the benchmark
itself would inflate the measured improvement. So, for each file:

1. read it (CSV, JSON / JSON Lines, Parquet);
2. drop columns that look like personal data (email, phone, SSN) by name or by value;
3. require every benchmark column, with values of the benchmark column's kind (number or text),
   no empty cells, and labels the benchmark knows (classification); drop other extra columns;
4. drop duplicate rows, rows already in the training data and rows of the benchmark.

Bad data raises :class:`ValidationError` naming the file, the column and the row (rows count
from 1, header excluded, in file order). What was dropped is reported in the data manifest.

Example::

    schema = BenchmarkSchema.of(benchmark_frame, "label", "classification")
    result = integrate([Source("alice.csv", "0x5aAe...")], schema)
    result.frame, result.manifest["data_hash"], result.rows_kept
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.pipeline.model_types import CLASSIFICATION_TYPES
from mlflow_hokusai_plugin.services.datasets import data_manifest

FIELD = "contributed_data"
FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".pq": "parquet"}

# Words of a column name that say "personal data" whatever the values look like. Whole words of
# the name (split at _, -, spaces and camelCase), so `headphone_price` is not a phone number.
_PII_WORDS = frozenset(
    {
        "email",
        "mail",
        "phone",
        "telephone",
        "tel",
        "mobile",
        "cellphone",
        "msisdn",
        "fax",
        "ssn",
        "phonenumber",
    }
)
_PII_PAIRS = frozenset({("e", "mail"), ("social", "security"), ("cell", "phone"), ("phone", "number")})
_PII_VALUES = (
    ("email addresses", re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")),
    ("social security numbers", re.compile(r"(?<![\d-])\d{3}[- ]\d{2}[- ]\d{4}(?![\d-])")),
    (
        "phone numbers",
        re.compile(
            r"(?<![\d-])(\+\d{1,3}[\s.-]?|\d{1,3}[\s.-])?(\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]?\d{4}(?![\d-])"
            r"|(?<![\w+])\+\d{1,3}([\s.-]?\d{2,4}){2,5}(?!\d)"
        ),
    ),
)
# Numbers as text could hide a benchmark copy behind a different rounding: compare 9 digits.
_SIGNIFICANT_DIGITS = 9


def read_table(path: str | Path, field_name: str = FIELD) -> Any:
    """Read a CSV, JSON (records or columns), JSON Lines or Parquet file into a DataFrame."""
    import pandas as pd

    check_readable(path, field_name)
    path = Path(path)
    kind = FORMATS[path.suffix.lower()]
    try:
        if kind == "csv":
            # Blank lines kept (as empty rows), so row numbers match what an editor shows; only an
            # empty cell is missing data ("NA" is Namibia, not NaN).
            frame = pd.read_csv(path, skip_blank_lines=False, keep_default_na=False, na_values=[""])
        elif kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            # JSON's own types: no guessing dates from column names, no "02134" turned into 2134.
            frame = pd.read_json(
                path,
                lines=kind == "jsonl",
                precise_float=True,
                dtype=False,
                convert_dates=False,
                keep_default_dates=False,
            )
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValidationError(field_name, f"{path}: cannot be read as {kind}: {first_line}") from None
    if frame.empty:
        raise ValidationError(field_name, f"{path}: has no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def check_readable(path: str | Path, field_name: str = FIELD) -> None:
    """The file exists and has a supported type (read later, in the step that needs it)."""
    path = Path(path)
    if FORMATS.get(path.suffix.lower()) is None:
        raise ValidationError(
            field_name, f"{path}: unsupported file type '{path.suffix}'; expected {', '.join(FORMATS)}"
        )
    if not path.is_file():
        raise ValidationError(field_name, f"{path}: no such file")


@dataclass(frozen=True)
class BenchmarkSchema:
    """What a contribution must look like: the benchmark's columns, their kinds and its labels."""

    columns: tuple[str, ...]
    label_column: str
    numeric: frozenset[str]
    labels: frozenset | None  # the label values of a classification benchmark

    @classmethod
    def of(
        cls, benchmark: Any, label_column: str, model_type: str, name: str = "benchmark"
    ) -> BenchmarkSchema:
        """The schema of a benchmark DataFrame; refuses a benchmark the pipeline cannot score on."""
        import pandas as pd

        if label_column not in benchmark.columns:
            raise ValidationError(name, f"has no label column '{label_column}'")
        if len(benchmark) < 2:
            raise ValidationError(name, "needs at least two rows")
        empty = benchmark.columns[benchmark.isna().any()].tolist()
        if empty:
            raise ValidationError(name, f"column '{empty[0]}' has empty cells")
        numeric = frozenset(c for c in benchmark.columns if pd.api.types.is_numeric_dtype(benchmark[c]))
        labels = None
        if model_type in CLASSIFICATION_TYPES:
            labels = frozenset(benchmark[label_column].tolist())
        elif label_column not in numeric:
            raise ValidationError(name, f"label column '{label_column}' must be numeric for {model_type}")
        return cls(tuple(str(c) for c in benchmark.columns), label_column, numeric, labels)


@dataclass(frozen=True)
class Source:
    """One file of contributed rows, and whose they are (``None``: shared by all contributors)."""

    path: str
    contributor: str | None = None


@dataclass
class Integrated:
    """The cleaned contribution and its manifest."""

    frame: Any
    manifest: dict
    rows_kept: list[int] = field(default_factory=list)  # per source, in the order given


def integrate(
    sources: Sequence[Source],
    schema: BenchmarkSchema,
    *,
    benchmark: Any = None,
    training: Any = None,
) -> Integrated:
    """Read, check and clean every source; the union of what is left, with its manifest."""
    import pandas as pd

    if not sources:
        raise ValidationError(FIELD, "no contributed data was given")
    frames, dropped_columns = [], {"pii_columns": {}, "extra_columns": []}
    for source in sources:
        frame, pii, extra = conform(read_table(source.path), schema, source.path)
        frames.append(frame)
        dropped_columns["pii_columns"].update(pii)
        dropped_columns["extra_columns"] += [c for c in extra if c not in dropped_columns["extra_columns"]]

    origin = pd.Series([i for i, f in enumerate(frames) for _ in range(len(f))], dtype=int)
    union = pd.concat(frames, ignore_index=True)
    keys = _row_keys(union, schema)
    keep = ~keys.duplicated(keep="first")
    counts = {"duplicate_rows": int((~keep).sum()), "training_rows": 0, "benchmark_rows": 0}
    for name, other in (("training_rows", training), ("benchmark_rows", benchmark)):
        if other is not None:
            repeated = keys.isin(set(_row_keys(other, schema))) & keep
            counts[name] = int(repeated.sum())
            keep &= ~repeated
    clean = union[keep].reset_index(drop=True)
    if clean.empty:
        raise ValidationError(
            FIELD,
            f"no rows left after dropping {counts['duplicate_rows']} duplicate rows, "
            f"{counts['training_rows']} rows already in the training data and "
            f"{counts['benchmark_rows']} rows of the benchmark",
        )
    rows_kept = [int(n) for n in origin[keep].value_counts().reindex(range(len(frames)), fill_value=0)]
    paths = [s.path for s in sources]
    manifest = data_manifest(clean, paths[0] if len(paths) == 1 else ", ".join(paths))
    manifest["sha256"] = manifest["data_hash"]
    manifest["sources"] = [
        {"source_path": s.path, "contributor": s.contributor, "rows_read": len(f), "rows_kept": kept}
        for s, f, kept in zip(sources, frames, rows_kept, strict=True)
    ]
    manifest["dropped"] = {**dropped_columns, **counts}
    return Integrated(clean, manifest, rows_kept)


def pii_columns(frame: Any, protected: Sequence[str] = ()) -> dict[str, str]:
    """Columns that look like personal data, each with the reason.

    Names (email, phone, SSN, ...) count except for ``protected`` columns (the benchmark chose
    them); values of text columns count for every column.

    >>> import pandas as pd
    >>> pii_columns(pd.DataFrame({"x": [1.0], "note": ["call 555-123-4567"], "Email": ["-"]}))
    {'note': 'values look like phone numbers', 'Email': "the name 'Email' suggests personal data"}
    """
    import pandas as pd

    found = {}
    for column in frame.columns:
        name = str(column)
        if name not in protected and _pii_name(name):
            found[name] = f"the name '{name}' suggests personal data"
            continue
        if pd.api.types.is_numeric_dtype(frame[column]):
            continue
        values = frame[column].dropna().astype(str)  # every value: row 1200 counts as much as row 1
        for what, pattern in _PII_VALUES:
            if values.str.contains(pattern).any():
                found[name] = f"values look like {what}"
                break
    return found


def _pii_name(name: str) -> bool:
    """Whether a column name says personal data, by its words.

    >>> [_pii_name(n) for n in ("mobileNumber", "customerSSN", "e_mail", "headphone_price", "phone_count")]
    [True, True, True, False, True]
    """
    words = [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]
    pairs = zip(words, words[1:], strict=False)
    return any(w in _PII_WORDS for w in words) or any(pair in _PII_PAIRS for pair in pairs)


def conform(
    frame: Any, schema: BenchmarkSchema, path: str, field_name: str = FIELD
) -> tuple[Any, dict[str, str], list[str]]:
    """A file's rows in the benchmark's columns and kinds; also the PII and extra columns dropped."""
    import pandas as pd

    pii = pii_columns(frame, protected=schema.columns)
    needed_pii = [c for c in pii if c in schema.columns]
    if needed_pii:
        column = needed_pii[0]
        raise ValidationError(
            field_name,
            f"{path}: column '{column}' {pii[column]}, but the benchmark needs that column; "
            "remove the personal data from it",
        )
    missing = [c for c in schema.columns if c not in frame.columns]
    if missing:
        listed = ", ".join(f"'{c}'" for c in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValidationError(field_name, f"{path}: missing column(s) {listed} that the benchmark has")
    extra = [c for c in frame.columns if c not in schema.columns and c not in pii]
    conformed = {}
    for column in schema.columns:
        raw = frame[column]
        empty = raw.isna() | (raw.astype(str).str.strip() == "")
        if empty.any():
            raise ValidationError(field_name, f"{path}: row {_row(empty)}, column '{column}': empty cell")
        if column in schema.numeric:
            # True/False, inf and text are not numbers, whatever pandas would make of them.
            is_bool = raw.map(lambda v: isinstance(v, (bool, np.bool_)))
            values = raw if pd.api.types.is_numeric_dtype(raw) else pd.to_numeric(raw, errors="coerce")
            bad = is_bool | values.isna() | ~np.isfinite(values.astype(float))
            if bad.any():
                row = _row(bad)
                raise ValidationError(
                    field_name,
                    f"{path}: row {row}, column '{column}': {_show(raw.iloc[row - 1])} is not a number",
                )
            conformed[column] = values.astype(float)
        else:
            conformed[column] = raw.astype(str)
    result = pd.DataFrame(conformed)
    if schema.labels is not None:
        label = schema.label_column
        unknown = ~result[label].isin(schema.labels)
        if unknown.any():
            row = _row(unknown)
            known = ", ".join(_show(v) for v in sorted(schema.labels, key=str))
            raise ValidationError(
                field_name,
                f"{path}: row {row}, column '{label}': {_show(frame[label].iloc[row - 1])} is not a label "
                f"of the benchmark ({known})",
            )
    return result, pii, extra


def _show(value: Any) -> str:
    """A cell as the user wrote it: ``7.0``, not ``np.float64(7.0)``."""
    return repr(value.item() if hasattr(value, "item") else value)


def _row(mask: Any) -> int:
    """The 1-based row number of the first True in ``mask``."""
    return int(mask.to_numpy().argmax()) + 1


def _row_keys(frame: Any, schema: BenchmarkSchema) -> Any:
    """One hash per row over the benchmark's columns, in the kinds a conformed contribution has,
    so that a benchmark row read back from a CSV file hashes the same as the original."""
    import pandas as pd

    columns = {}
    for c in schema.columns:
        if c in schema.numeric:
            columns[c] = frame[c].astype(float).map(lambda v: float(f"{v:.{_SIGNIFICANT_DIGITS}g}"))
        else:
            columns[c] = frame[c].astype(str)
    return pd.util.hash_pandas_object(pd.DataFrame(columns), index=False)
