"""The short Markdown a model version's description gains, so the MLflow UI shows the Hokusai facts.

MLflow keeps a version's description in a 5000-character column
(:data:`~mlflow_hokusai_plugin.core.storage_bounds.MLFLOW_DESCRIPTION_LENGTH`) and checks no length
before writing it, so a summary that does not fit would fail in the database after the version is
written. The summaries here know their shorter forms (:class:`Summary`): with 100 contributors, or
below a long description of the user's, :func:`replace_summary` keeps the headline facts and the
first contributors and says where the rest is (the attestation document lists them all).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlflow_hokusai_plugin.core.storage_bounds import MLFLOW_DESCRIPTION_LENGTH

MARKER = "<!-- hokusai -->"
MAX_DESCRIPTION_LENGTH = MLFLOW_DESCRIPTION_LENGTH


class Summary(str):
    """A summary that can shorten itself.

    The text is its longest form within MLflow's description limit; :meth:`fit` gives the longest
    form within fewer characters, or None when not even the shortest fits.
    """

    _shorter: Callable[[int], str | None]

    def __new__(cls, shorter: Callable[[int], str | None], limit: int = MAX_DESCRIPTION_LENGTH) -> Summary:
        made = super().__new__(cls, shorter(limit) or "")
        made._shorter = shorter
        return made

    def fit(self, room: int) -> str | None:
        """The longest form of this summary that has at most ``room`` characters, or None."""
        return str(self) if len(self) <= room else self._shorter(room)


def baseline_markdown(*, project: str, model_type: str, benchmark_metric: str | None) -> Summary:
    """Description of a baseline version.

    >>> print(baseline_markdown(project="demo", model_type="classification", benchmark_metric="accuracy"))
    <!-- hokusai -->
    **Hokusai baseline** of project `demo` (classification), benchmark metric `accuracy`.
    """
    metric = f", benchmark metric `{benchmark_metric}`" if benchmark_metric else ""
    forms = (
        f"{MARKER}\n**Hokusai baseline** of project `{project}` ({model_type}){metric}.",
        f"{MARKER}\n**Hokusai baseline** of project `{project}`.",
    )
    return Summary(lambda room: next((form for form in forms if len(form) <= room), None))


def improvement_markdown(
    *,
    baseline_model_id: str,
    benchmark_metric: str,
    metric_deltas: Mapping[str, Mapping[str, Any]],
    delta_one_bps: int,
    contributors: Sequence[Mapping[str, Any]],
    attestation_id: str | None,
) -> Summary:
    """Description of an improved version: baseline, deltas, DeltaOne and contributors.

    Shortened when it does not fit (see :class:`Summary`): first the contributor table loses its
    last rows for "... and K more, see the attestation", then the metric table goes, then all but
    the attestation id.

    >>> many = [{"address": f"0x{i:040x}", "weight_bps": 100} for i in range(100)]
    >>> text = improvement_markdown(
    ...     baseline_model_id="churn/1", benchmark_metric="accuracy",
    ...     metric_deltas={"accuracy": {"baseline_value": 0.75, "new_value": 0.82, "absolute_delta": 0.07}},
    ...     delta_one_bps=700, contributors=many, attestation_id="ab" * 32)
    >>> len(text) <= MAX_DESCRIPTION_LENGTH, "... and" in text, "7 DeltaOne" in text
    (True, True, True)
    """
    headline = [
        MARKER,
        f"**Hokusai improvement** over `{baseline_model_id}` on `{benchmark_metric}`: "
        f"**{delta_one_bps / 100:g} DeltaOne** ({delta_one_bps} bps).",
    ]
    metrics = ["", "| metric | baseline | new | delta |", "|---|---|---|---|"]
    for name, delta in metric_deltas.items():
        old, new, change = delta["baseline_value"], delta["new_value"], delta["absolute_delta"]
        metrics.append(f"| {name} | {_number(old)} | {_number(new)} | {_number(change, '+')} |")
    table = ["", "| contributor | weight (bps) | attributed (bps) |", "|---|---|---|"]
    rows = [f"| `{c['address']}` | {c['weight_bps']} | {c.get('attributed_bps', 0)} |" for c in contributors]
    closing = ["", f"Attestation `{attestation_id}`."] if attestation_id else []
    where = f"the attestation `{attestation_id}`" if attestation_id else "the attestation document"
    shortened = f"(shortened to fit MLflow's {MAX_DESCRIPTION_LENGTH}-character description limit)"

    def form(shown: int) -> str:
        """Every metric and the first ``shown`` contributors."""
        if shown == len(rows):
            return "\n".join(headline + metrics + table + rows + closing)
        rest = len(rows) - shown
        if shown:
            more = [*table, *rows[:shown], "", f"... and {rest} more, see {where} {shortened}."]
        else:
            more = ["", f"{rest} contributor{'s' if rest != 1 else ''}, see {where} {shortened}."]
        return "\n".join(headline + metrics + more)

    def shorter(room: int) -> str | None:
        for shown in range(len(rows), -1, -1):
            text = form(shown)
            if len(text) <= room:
                return text
        for text in (
            "\n".join(
                [*headline, "", f"The metric deltas and {len(rows)} contributors: see {where} {shortened}."]
            ),
            "\n".join([*headline, "", f"Details: {where} (shortened)."]),
            f"{MARKER}\n**Hokusai improvement**, **{delta_one_bps / 100:g} DeltaOne**: {where}.",
        ):
            if len(text) <= room:
                return text
        return None

    return Summary(shorter)


def _number(value: float, sign: str = "") -> str:
    # Four decimals, as a metric reads; a huge value in exponent form, so a row stays short.
    return f"{value:{sign}.4f}" if abs(value) < 1e12 else f"{value:{sign}.4e}"


def replace_summary(description: str | None, summary: str, limit: int = MAX_DESCRIPTION_LENGTH) -> str:
    """Put ``summary`` in place of an earlier Hokusai summary, keeping the user's own text above it.

    The result fits ``limit`` (MLflow's description column) whenever the user's own text does: a
    :class:`Summary` is shortened to the room left, and one that cannot fit at all is left out
    (the registration never fails because of its summary).

    >>> replace_summary("notes\\n\\n<!-- hokusai -->\\nold", "<!-- hokusai -->\\nnew")
    'notes\\n\\n<!-- hokusai -->\\nnew'
    >>> own = "x" * 4990  # no room left for even the shortest baseline summary
    >>> replace_summary(own, baseline_markdown(project="p", model_type="ranking", benchmark_metric="")) == own
    True
    """
    own = (description or "").split(MARKER, 1)[0].rstrip()
    room = limit - (len(own) + 2 if own else 0)
    fitted = summary if len(summary) <= room else summary.fit(room) if isinstance(summary, Summary) else None
    if fitted is None:
        return own
    return f"{own}\n\n{fitted}" if own else str(fitted)  # a plain str for the database driver


def server_block(description: str | None) -> str | None:
    """The server's part of a description: from :data:`MARKER` to the end, or None if it has none.

    >>> server_block("mine\\n\\n<!-- hokusai -->\\n**Hokusai improvement**")
    '<!-- hokusai -->\\n**Hokusai improvement**'
    """
    text = description or ""
    return MARKER + text.split(MARKER, 1)[1] if MARKER in text else None


def keep_server_block(description: str | None, stored: str | None) -> str | None:
    """``description`` as a client asked for it, with the server's block of ``stored`` kept as it is.

    On an attested version everything from the marker on is the server's: the client's own text
    (above the block, or around an unchanged copy of it) is kept, and the block is put back as
    stored, whatever the client sent in its place (changed, removed, or a block of its own).

    >>> stored = "old\\n\\n<!-- hokusai -->\\n**7 DeltaOne**"
    >>> keep_server_block("new notes", stored)
    'new notes\\n\\n<!-- hokusai -->\\n**7 DeltaOne**'
    >>> keep_server_block("new\\n\\n<!-- hokusai -->\\n**99 DeltaOne**", stored)
    'new\\n\\n<!-- hokusai -->\\n**7 DeltaOne**'
    >>> keep_server_block(None, stored)
    '<!-- hokusai -->\\n**7 DeltaOne**'
    """
    block = server_block(stored)
    text = description or ""
    if block is not None and block in text:
        own = text.replace(block, "", 1)  # the client's text around an unchanged copy
    else:
        own = text
    own = own.split(MARKER, 1)[0].strip() if MARKER in own else own.strip()
    if block is None:
        return own or (None if description is None else "")
    return f"{own}\n\n{block}" if own else block
