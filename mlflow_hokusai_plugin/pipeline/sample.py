"""The bundled sample: scikit-learn's breast-cancer set, split the way a Hokusai project splits data.

It ships inside scikit-learn, so ``--sample`` and ``hokusai demo`` need no download. The split is
fixed (a seeded, stratified 30 % benchmark), so every run sees the same benchmark digest and a
second run finds the baseline the first one registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABEL_COLUMN = "label"
BASELINE_ROWS = 24
# Two well-known EIP-55 test-vector addresses stand in for the data contributors.
CONTRIBUTORS = (
    ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", 160),
    ("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359", 120),
)
BENCHMARK_NAME = "breast-cancer-benchmark"
CONTRIBUTED_ROWS_FILE = "contributed-rows.csv"


@dataclass
class SampleData:
    """The sample's parts, each a DataFrame with the ``label`` column."""

    benchmark: Any
    baseline: Any  # the rows the baseline model is trained on
    contributions: list  # one DataFrame per entry of CONTRIBUTORS


def load_sample() -> SampleData:
    """Split the breast-cancer set into benchmark, baseline training rows and two contributions.

    >>> sample = load_sample()
    >>> len(sample.benchmark), len(sample.baseline), [len(c) for c in sample.contributions]
    (171, 24, [160, 120])
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    # Floats throughout, so MLflow's signature inference has no integer column to warn about.
    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": LABEL_COLUMN}).astype(float)
    train, benchmark = train_test_split(frame, test_size=0.3, random_state=7, stratify=frame[LABEL_COLUMN])
    baseline = train.iloc[:BASELINE_ROWS]
    contributions, start = [], BASELINE_ROWS
    for _, rows in CONTRIBUTORS:
        contributions.append(train.iloc[start : start + rows])
        start += rows
    return SampleData(benchmark.reset_index(drop=True), baseline.reset_index(drop=True), contributions)


def write_contribution_files(directory: Path) -> Path:
    """Write the sample's contributions as files plus a contributors file naming them; return it.

    One CSV and one Parquet file, so a sample run reads both formats the way it reads a user's files.
    """
    import json

    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    formats = ("csv", "parquet")
    for (address, _), frame, suffix in zip(CONTRIBUTORS, load_sample().contributions, formats, strict=True):
        path = directory / f"contribution-{address[:10].lower()}.{suffix}"
        if suffix == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        entries.append({"address": address, "data": path.name})
    contributors_file = directory / "contributors.json"
    contributors_file.write_text(json.dumps(entries, indent=2) + "\n")
    return contributors_file


def contributed_rows_path(directory: Path) -> Path:
    """Where :func:`write_contributed_rows` writes (known before it does, to check the parameters)."""
    return directory / CONTRIBUTED_ROWS_FILE


def write_contributed_rows(directory: Path) -> Path:
    """Write every contributed row of the sample (both contributions) as one CSV file; return it.

    The ``--contributed-data`` of a sample run whose ``--contributor`` is one address (or a file of
    shares): the sample's rows, attributed as the user said.
    """
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    path = contributed_rows_path(directory)
    pd.concat(load_sample().contributions, ignore_index=True).to_csv(path, index=False)
    return path
