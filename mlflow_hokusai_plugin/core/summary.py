"""The short Markdown a model version's description gains, so the MLflow UI shows the Hokusai facts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MARKER = "<!-- hokusai -->"


def baseline_markdown(*, project: str, model_type: str, benchmark_metric: str | None) -> str:
    """Description of a baseline version.

    >>> print(baseline_markdown(project="demo", model_type="classification", benchmark_metric="accuracy"))
    <!-- hokusai -->
    **Hokusai baseline** of project `demo` (classification), benchmark metric `accuracy`.
    """
    metric = f", benchmark metric `{benchmark_metric}`" if benchmark_metric else ""
    return f"{MARKER}\n**Hokusai baseline** of project `{project}` ({model_type}){metric}."


def improvement_markdown(
    *,
    baseline_model_id: str,
    benchmark_metric: str,
    metric_deltas: Mapping[str, Mapping[str, Any]],
    delta_one_bps: int,
    contributors: Sequence[Mapping[str, Any]],
    attestation_id: str | None,
) -> str:
    """Description of an improved version: baseline, deltas, DeltaOne and contributors."""
    lines = [
        MARKER,
        f"**Hokusai improvement** over `{baseline_model_id}` on `{benchmark_metric}`: "
        f"**{delta_one_bps / 100:g} DeltaOne** ({delta_one_bps} bps).",
        "",
        "| metric | baseline | new | delta |",
        "|---|---|---|---|",
    ]
    for name, delta in metric_deltas.items():
        old, new, change = delta["baseline_value"], delta["new_value"], delta["absolute_delta"]
        lines.append(f"| {name} | {old:.4f} | {new:.4f} | {change:+.4f} |")
    lines += ["", "| contributor | weight (bps) | attributed (bps) |", "|---|---|---|"]
    for contributor in contributors:
        weight, attributed = contributor["weight_bps"], contributor.get("attributed_bps", 0)
        lines.append(f"| `{contributor['address']}` | {weight} | {attributed} |")
    if attestation_id:
        lines += ["", f"Attestation `{attestation_id}`."]
    return "\n".join(lines)


def replace_summary(description: str | None, summary: str) -> str:
    """Put ``summary`` in place of an earlier Hokusai summary, keeping the user's own text above it."""
    own = (description or "").split(MARKER, 1)[0].rstrip()
    return f"{own}\n\n{summary}" if own else summary
