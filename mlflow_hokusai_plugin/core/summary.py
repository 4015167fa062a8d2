"""The short Markdown a model version's description gains, so the MLflow UI shows the Hokusai facts.

MLflow keeps a version's description in a 5000-character column
(:data:`~mlflow_hokusai_plugin.core.storage_bounds.MLFLOW_DESCRIPTION_LENGTH`) and checks no length
before writing it, so a summary that does not fit would fail in the database after the version is
written. The summaries here know their shorter forms (:class:`Summary`): with 100 contributors, or
below a long description of the user's, :func:`replace_summary` keeps the headline facts and the
first contributors and says where the rest is (the attestation document lists them all).

The server's part of a description (its *block*) starts at the line that holds :data:`MARKER` and
runs to the end; the user's own text is above it. The marker ends the block's first line, its
headline, rather than opening the block on a line of its own: MLflow's versions table shows the
first line of a description as plain text (``truncateToFirstLineWithMaxLength(description, 32)``
in ``ModelVersionTable.tsx``), so a description without text of the user's shows the headline,
and the version page's Markdown renderer (showdown, then sanitize-html) drops the HTML comment.
Descriptions written before, with the marker on a line of its own above the headline, are the
same rule's special case: their block starts at the marker.

Model ids are links to the version's page in the MLflow UI (:func:`version_link`), and a
baseline's block ends with the line of its latest improvements (:func:`with_improvements`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from mlflow_hokusai_plugin.core.storage_bounds import MLFLOW_DESCRIPTION_LENGTH

MARKER = "<!-- hokusai -->"
MAX_DESCRIPTION_LENGTH = MLFLOW_DESCRIPTION_LENGTH
# Where the line of a baseline's improvements starts; always the last paragraph of its block.
IMPROVED_BY = "**Improved by**"
# How many improvements a baseline's block links to (the latest); it says how many there are.
IMPROVEMENTS_LISTED = 5


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
    **Hokusai baseline** of project `demo` (classification), benchmark metric `accuracy`. <!-- hokusai -->
    """
    metric = f", benchmark metric {code_span(benchmark_metric)}" if benchmark_metric else ""
    forms = (
        _headline(f"**Hokusai baseline** of project {code_span(project)} ({model_type}){metric}."),
        _headline(f"**Hokusai baseline** of project {code_span(project)}."),
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
    """Description of an improved version: baseline (a link to its page), deltas, DeltaOne and
    contributors.

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
    >>> print(text.split(" on ")[0])  # the first visible text, the baseline a link to its page
    **Hokusai improvement** over [`churn/1`](#/models/churn/versions/1)
    """
    headline = [
        _headline(
            f"**Hokusai improvement** over {version_link(baseline_model_id)} "
            f"on {code_span(benchmark_metric)}: "
            f"**{delta_one_bps / 100:g} DeltaOne** ({delta_one_bps} bps)."
        ),
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
            _headline(f"**Hokusai improvement**, **{delta_one_bps / 100:g} DeltaOne**: {where}."),
        ):
            if len(text) <= room:
                return text
        return None

    return Summary(shorter)


def version_link(model_id: str) -> str:
    """A Markdown link to a model version's page in the MLflow UI, its text the model id.

    The target is the UI's own route (``getModelVersionPageRoute``: the name URL-encoded, as
    ``encodeURIComponent`` does) relative to the page showing the description, so it works
    wherever the UI is served, under a path prefix too. Parentheses are encoded as well: a bare
    one would end the link's target.

    >>> version_link("churn/3")
    '[`churn/3`](#/models/churn/versions/3)'
    >>> version_link("fraud (v2)/1")
    '[`fraud (v2)/1`](#/models/fraud%20%28v2%29/versions/1)'
    """
    name, _, version = model_id.rpartition("/")  # MLflow forbids "/" in a registered model's name
    if not name:
        return code_span(model_id)
    return f"[{code_span(model_id)}](#/models/{quote(name, safe='')}/versions/{quote(version, safe='')})"


def code_span(text: str) -> str:
    """``text`` as one Markdown code span, whatever it holds: fenced with one backtick more than
    its longest run of them (CommonMark's rule, which MLflow's renderer follows), on one line, so
    a name like ``m`](x) **VERIFIED**`` shows as that name and never as markup.

    >>> code_span("churn/3")
    '`churn/3`'
    >>> code_span("m`](?x=1) **VERIFIED** [`x")
    '`` m`](?x=1) **VERIFIED** [`x ``'
    """
    text = " ".join(str(text).splitlines())
    runs = [len(run) for run in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    padded = f" {text} " if runs or text.startswith(" ") else text
    return f"{fence}{padded}{fence}"


def improvements_markdown(latest: Sequence[tuple[str, int]], total: int) -> Summary:
    """The line of a baseline's improvements: ``latest`` (model id, DeltaOne bps), newest first,
    each a link to its page, out of ``total`` in all.

    Shortened by listing fewer of them; the shortest form only counts them.

    >>> print(improvements_markdown([("m/3", 100), ("m/2", 700)], 2))
    **Improved by** [`m/3`](#/models/m/versions/3) (1 DeltaOne), [`m/2`](#/models/m/versions/2) (7 DeltaOne).
    >>> print(improvements_markdown([("m/9", 50)], 8))
    **Improved by** 8 versions, the latest: [`m/9`](#/models/m/versions/9) (0.5 DeltaOne).
    >>> improvements_markdown([("m/9", 50)], 8).fit(40)
    '**Improved by** 8 versions.'
    """
    links = [f"{version_link(model_id)} ({bps / 100:g} DeltaOne)" for model_id, bps in latest]
    counted = f"{total} version{'s' if total != 1 else ''}"

    def form(shown: int) -> str:
        listed = ", ".join(links[:shown])
        if shown == 0:
            return f"{IMPROVED_BY} {counted}."
        if shown == total:
            return f"{IMPROVED_BY} {listed}."
        which = "the latest" if shown == 1 else f"the latest {shown}"
        return f"{IMPROVED_BY} {counted}, {which}: {listed}."

    def shorter(room: int) -> str | None:
        return next(
            (text for text in map(form, range(min(len(links), total), -1, -1)) if len(text) <= room), None
        )

    return Summary(shorter)


def _headline(text: str) -> str:
    # The marker after the headline, not above it: see the module's docstring.
    return f"{text} {MARKER}"


def _number(value: float, sign: str = "") -> str:
    # Four decimals, as a metric reads; a huge value in exponent form, so a row stays short.
    return f"{value:{sign}.4f}" if abs(value) < 1e12 else f"{value:{sign}.4e}"


def replace_summary(description: str | None, summary: str, limit: int = MAX_DESCRIPTION_LENGTH) -> str:
    """Put ``summary`` in place of an earlier Hokusai summary, keeping the user's own text above it.

    The result fits ``limit`` (MLflow's description column) whenever the user's own text does: a
    :class:`Summary` is shortened to the room left, and one that cannot fit at all is left out
    (the registration never fails because of its summary).

    An earlier summary is found in either layout (see the module's docstring), so a description
    written before the marker moved is replaced too, never doubled.

    >>> replace_summary("notes\\n\\n**old** <!-- hokusai -->\\nmore", "**new** <!-- hokusai -->")
    'notes\\n\\n**new** <!-- hokusai -->'
    >>> replace_summary("notes\\n\\n<!-- hokusai -->\\n**old**", "**new** <!-- hokusai -->")
    'notes\\n\\n**new** <!-- hokusai -->'
    >>> own = "x" * 4990  # no room left for even the shortest baseline summary
    >>> replace_summary(own, baseline_markdown(project="p", model_type="ranking", benchmark_metric="")) == own
    True
    """
    own = split_summary(description)[0]
    room = limit - (len(own) + 2 if own else 0)
    fitted = summary if len(summary) <= room else summary.fit(room) if isinstance(summary, Summary) else None
    if fitted is None:
        return own
    return f"{own}\n\n{fitted}" if own else str(fitted)  # a plain str for the database driver


def with_improvements(
    description: str | None,
    improvements: Summary,
    headline: Summary | None = None,
    limit: int = MAX_DESCRIPTION_LENGTH,
) -> str | None:
    """``description`` with its block's line of improvements (:func:`improvements_markdown`) put
    in place of the one before, or added; None when there is nothing to put it in.

    A description without a block gets ``headline`` (a baseline's summary) as one, when given.
    The user's text and the block's headline are never shortened for the line: it is shortened
    to the room left, and left out when not even its shortest form fits.

    >>> listing = improvements_markdown([("churn/2", 700)], 1)
    >>> print(with_improvements("notes\\n\\n**Hokusai baseline** <!-- hokusai -->", listing))
    notes
    <BLANKLINE>
    **Hokusai baseline** <!-- hokusai -->
    <BLANKLINE>
    **Improved by** [`churn/2`](#/models/churn/versions/2) (7 DeltaOne).
    >>> with_improvements("notes", listing) is None
    True
    """
    own, block = split_summary(description)
    prefix = f"{own}\n\n" if own else ""
    if block is None:
        fitted = headline.fit(limit - len(prefix)) if headline is not None else None
        if fitted is None:
            return None
        block = fitted
    else:
        block = block.split(f"\n\n{IMPROVED_BY}", 1)[0]
    line = improvements.fit(limit - len(prefix) - len(block) - 2)
    return prefix + block + (f"\n\n{line}" if line else "")


def split_summary(description: str | None) -> tuple[str, str | None]:
    """A description's two parts: the user's own text (stripped at its end) and the server's block
    (from the start of the line holding :data:`MARKER` to the end), or None if it has none.

    >>> split_summary("mine\\n\\n**Hokusai improvement** <!-- hokusai -->\\nmore")
    ('mine', '**Hokusai improvement** <!-- hokusai -->\\nmore')
    >>> split_summary("mine\\n\\n<!-- hokusai -->\\n**Hokusai improvement**")
    ('mine', '<!-- hokusai -->\\n**Hokusai improvement**')
    >>> split_summary("mine")
    ('mine', None)
    """
    text = description or ""
    at = text.find(MARKER)
    if at < 0:
        return text.rstrip(), None
    start = text.rfind("\n", 0, at) + 1
    return text[:start].rstrip(), text[start:]


def server_block(description: str | None) -> str | None:
    """The server's part of a description (see :func:`split_summary`), or None if it has none.

    >>> server_block("mine\\n\\n**Hokusai improvement** <!-- hokusai -->")
    '**Hokusai improvement** <!-- hokusai -->'
    """
    return split_summary(description)[1]


def keep_server_block(description: str | None, stored: str | None) -> str | None:
    """``description`` as a client asked for it, with the server's block of ``stored`` kept as it is.

    On an attested version everything from the marker on is the server's: the client's own text
    (above the block, or around an unchanged copy of it) is kept, and the block is put back as
    stored, whatever the client sent in its place (changed, removed, or a block of its own).

    >>> stored = "old\\n\\n**7 DeltaOne** <!-- hokusai -->"
    >>> keep_server_block("new notes", stored)
    'new notes\\n\\n**7 DeltaOne** <!-- hokusai -->'
    >>> keep_server_block("new\\n\\n**99 DeltaOne** <!-- hokusai -->", stored)
    'new\\n\\n**7 DeltaOne** <!-- hokusai -->'
    >>> keep_server_block("new\\n\\n<!-- hokusai -->\\n**99 DeltaOne**", stored)
    'new\\n\\n**7 DeltaOne** <!-- hokusai -->'
    >>> keep_server_block(None, stored)
    '**7 DeltaOne** <!-- hokusai -->'
    """
    block = server_block(stored)
    text = description or ""
    if block is not None and block in text:
        own = text.replace(block, "", 1)  # the client's text around an unchanged copy
    else:
        own = text
    own = split_summary(own)[0].strip()
    if block is None:
        return own or (None if description is None else "")
    return f"{own}\n\n{block}" if own else block
