"""Which of the registry's model types the flow can train and score.

The model types are declared once, in ``core.tags.MODEL_TYPES`` (what the API and the server
accept); this module only says which of them the flow trains, and the flow's ``--model-type`` help
is built from both, so the help lists what the API accepts.
"""

from __future__ import annotations

from mlflow_hokusai_plugin.core.tags import MODEL_TYPES

CLASSIFICATION_TYPES = ("classification", "lead_scoring")
REGRESSION = "regression"
# In the API's order. Ranking needs a ranker and ranking metrics, which the flow does not have.
SUPPORTED_MODEL_TYPES = tuple(t for t in MODEL_TYPES if t in (*CLASSIFICATION_TYPES, REGRESSION))


def model_type_help() -> str:
    """The ``--model-type`` help: the API's types, and which of them the flow trains.

    >>> model_type_help().startswith("One of lead_scoring, classification, regression, ranking")
    True
    """
    others = [t for t in MODEL_TYPES if t not in SUPPORTED_MODEL_TYPES]
    text = f"One of {', '.join(MODEL_TYPES)}. The flow trains and scores {_listed(SUPPORTED_MODEL_TYPES)}"
    if others:
        text += (
            f" models; for {_listed(others, 'or')}, call register_baseline and track_improvement "
            "from your own flow"
        )
    return text + "."


def _listed(names: tuple[str, ...] | list[str], last: str = "and") -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"
