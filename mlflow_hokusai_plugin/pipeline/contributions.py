"""Who contributed which data: the ``--contributor`` and ``--contributed-data`` parameters.

``--contributor`` is either one address (all of ``--contributed-data`` is theirs) or a contributors
file, JSON (a list of objects) or CSV (a header row), whose entries are all of one form:

- ``{"address", "data"}``: each contributor's own file (relative paths are relative to the
  contributors file); their share follows the rows of theirs that survive cleaning;
- ``{"address", "weight_bps"}`` or ``{"address", "samples"}``: shares given outright, for the rows
  of ``--contributed-data``.

With ``--sample``, the bundled sample supplies what neither parameter gives (:func:`sample_supplies`):
its two contributors with their files when neither is given, or its rows as ``--contributed-data``
when ``--contributor`` is one address or a file of shares.

Example::

    plan = plan_contributions("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "rows.csv")
    plan.sources  # [Source(path='rows.csv', contributor='0x5aAe...')]
    plan.contributors_for([1200])  # [{'address': '0x5aAe...', 'samples': 1200}]
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from mlflow_hokusai_plugin.core import contributors as contrib
from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.pipeline.contributed_data import Source

FIELD = "contributor"
SHARE_FORMS = ("weight_bps", "samples")
# What the bundled sample supplies in a --sample run.
SAMPLE_CONTRIBUTORS = "contributors"  # its two contributors, each with their own file
SAMPLE_ROWS = "rows"  # its contributed rows, as --contributed-data


@dataclass(frozen=True)
class ContributionPlan:
    """The files to integrate and how the improvement is shared among contributors."""

    sources: tuple[Source, ...]
    # Given shares ({"address", "weight_bps"|"samples"}); None when shares follow each source's rows.
    shares: tuple[dict, ...] | None

    def contributors_for(self, rows_kept: list[int]) -> list[dict]:
        """The ``hokusai.contributors`` tag entries once the sources are cleaned.

        With shares by data, a contributor none of whose rows survived cleaning gets no share;
        every entry is validated as the server will validate the tag.
        """
        if self.shares is not None:
            entries = [dict(s) for s in self.shares]
        else:
            entries = [
                {"address": source.contributor, "samples": kept}
                for source, kept in zip(self.sources, rows_kept, strict=True)
                if kept > 0
            ]
        contrib.parse_contributors(entries)  # refused here, not by the server after training
        return entries


def sample_supplies(contributor: str, contributed_data: str) -> str | None:
    """What the sample supplies in a ``--sample`` run: :data:`SAMPLE_CONTRIBUTORS` when neither
    parameter is given, :data:`SAMPLE_ROWS` when ``--contributor`` leaves the rows to
    ``--contributed-data`` and that is not given, else None (the user's own files are used).

    >>> sample_supplies("", ""), sample_supplies("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "")
    ('contributors', 'rows')
    """
    if (contributed_data or "").strip():
        return None
    if not (contributor or "").strip():
        return SAMPLE_CONTRIBUTORS
    return SAMPLE_ROWS if needs_rows(contributor) else None


def needs_rows(contributor: str) -> bool:
    """Whether ``--contributor`` leaves the rows to ``--contributed-data``: one address, or a
    contributors file of shares (a file naming each contributor's data does not)."""
    contributor = contributor.strip()
    if contributor.lower().startswith("0x") and not Path(contributor).exists():
        return True
    path = Path(contributor)
    if not path.is_file():
        return True  # plan_contributions says what is wrong with it
    return not any(entry.get("data") for entry in _read_entries(path))


def plan_contributions(contributor: str, contributed_data: str) -> ContributionPlan:
    """Read the two parameters into a plan; any problem names the parameter (and the entry)."""
    contributor = (contributor or "").strip()
    contributed_data = (contributed_data or "").strip()
    if not contributor:
        raise ValidationError(
            FIELD, "give one address (--contributor 0x...) or a contributors file (JSON or CSV)"
        )
    if contributor.lower().startswith("0x") and not Path(contributor).exists():
        address = to_checksum_address(contributor, FIELD)
        if not contributed_data:
            raise ValidationError("contributed_data", f"give the file of rows contributed by {address}")
        return ContributionPlan((Source(contributed_data, address),), None)
    path = Path(contributor)
    if not path.is_file():
        raise ValidationError(FIELD, f"'{contributor}' is neither an address (0x + 40 hex) nor a file")
    entries = _read_entries(path)
    with_data = [i for i, e in enumerate(entries) if e.get("data")]
    if with_data and len(with_data) != len(entries):
        missing = next(i for i in range(len(entries)) if i not in with_data)
        raise ValidationError(
            f"{FIELD}[{missing}].data", f"{path}: either every entry names its data file or none does"
        )
    if with_data:
        if contributed_data:
            raise ValidationError(
                "contributed_data",
                f"{path} names each contributor's data; do not also give --contributed-data",
            )
        sources = []
        for i, entry in enumerate(entries):
            address = to_checksum_address(entry.get("address"), f"{FIELD}[{i}].address")
            data = Path(str(entry["data"]))
            sources.append(Source(str(data if data.is_absolute() else path.parent / data), address))
        # Validate addresses and duplicates now, before any data is read.
        contrib.parse_contributors([{"address": s.contributor, "samples": 1} for s in sources])
        return ContributionPlan(tuple(sources), None)
    if not contributed_data:
        raise ValidationError("contributed_data", f"{path} gives shares; give the contributed rows too")
    shares = tuple(_share(entry) for entry in entries)
    contrib.parse_contributors([dict(s) for s in shares])  # refuse bad addresses or shares now
    return ContributionPlan((Source(contributed_data, None),), shares)


def _read_entries(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a CSV saved by Excel starts with a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(FIELD, f"{path}: cannot be read ({exc})") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        entries = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in rows]
    else:
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(FIELD, f"{path}: not valid JSON ({exc})") from None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ValidationError(FIELD, f"{path}: expected a non-empty list of contributor entries")
    return entries


def _share(entry: dict) -> dict:
    """A CSV cell is text: shares come back as integers when they are whole numbers."""
    share = {"address": entry.get("address")}
    for key in SHARE_FORMS:
        if key in entry:
            value = entry[key]
            share[key] = int(value) if isinstance(value, str) and value.isdigit() else value
    return share
