"""Contributors of an improvement and how a reward is split between them.

The rules mirror the on-chain DeltaVerifier, so that a list accepted here is never refused at mint
time: weights are basis points summing to exactly 10000, at most 100 contributors, no zero address,
no duplicates, and a reward share is ``total * weight // 10000`` with the rounding dust going to the
first contributor.

Sample counts are stored as 64-bit integers (``core.storage_bounds.SAMPLES_MAX``): a larger count
is refused here, before anything is written, rather than by the database after MLflow's write.
"""

from collections.abc import Mapping, Sequence

from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.canonical import parse_json
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.storage_bounds import SAMPLES_MAX

TOTAL_BPS = 10000
MAX_CONTRIBUTORS = 100

_FIELD = "contributors"
_FORMS = ("weight_bps", "samples")
_ALLOWED_KEYS = ("address", *_FORMS)


def parse_contributors(value: object) -> list[dict]:
    """Validate and normalise the contributor list of a model version.

    ``value`` is the JSON text of the ``hokusai.contributors`` tag or the already-parsed list.
    Entries are all ``{"address", "weight_bps"}`` or all ``{"address", "samples"}``; with samples
    the weights are derived by :func:`weights_from_samples` and the samples are kept. Entries given
    by weight may also state their contributed rows (``samples``: all of them or none), which then
    become the MintRequest's ``totalSamples``. Addresses come back EIP-55 checksummed, in input order.

    >>> parse_contributors('[{"address": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",'
    ...                    ' "weight_bps": 10000}]')
    [{'address': '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed', 'weight_bps': 10000}]
    """
    entries = _load(value)
    if not entries:
        raise ValidationError(_FIELD, "must list at least one contributor")
    if len(entries) > MAX_CONTRIBUTORS:
        raise ValidationError(
            _FIELD,
            f"has {len(entries)} entries; at most {MAX_CONTRIBUTORS} contributors are allowed",
        )

    form = None
    seen: dict[str, int] = {}
    result = []
    for i, entry in enumerate(entries):
        entry_field = f"{_FIELD}[{i}]"
        entry_form = _entry_form(entry, entry_field)
        if form is None:
            form = entry_form
        elif entry_form != form:
            raise ValidationError(
                entry_field,
                f"gives {entry_form} but {_FIELD}[0] gives {form}; all entries must use the same form",
            )
        if "address" not in entry:
            raise ValidationError(f"{entry_field}.address", "missing")
        address = to_checksum_address(entry["address"], field=f"{entry_field}.address")
        if address in seen:
            raise ValidationError(
                f"{entry_field}.address",
                f"duplicates {_FIELD}[{seen[address]}].address ({address}); list each contributor once",
            )
        seen[address] = i
        amount = entry[form]
        _check_int(amount, f"{entry_field}.{form}", 1, TOTAL_BPS if form == "weight_bps" else SAMPLES_MAX)
        result.append({"address": address, form: amount})
        if form == "weight_bps" and ("samples" in entry) != ("samples" in entries[0]):
            raise ValidationError(
                f"{entry_field}.samples",
                "give the contributed rows of every contributor or of none (they add up to the total)",
            )
        if form == "weight_bps" and "samples" in entry:
            _check_int(entry["samples"], f"{entry_field}.samples", 1, SAMPLES_MAX)
            result[-1]["samples"] = entry["samples"]

    if form == "samples":
        weights = weights_from_samples([c["samples"] for c in result])
        return [
            {"address": c["address"], "weight_bps": w, "samples": c["samples"]}
            for c, w in zip(result, weights, strict=True)
        ]
    total = sum(c["weight_bps"] for c in result)
    if total != TOTAL_BPS:
        raise ValidationError(_FIELD, f"weight_bps sum to {total}; they must sum to exactly {TOTAL_BPS}")
    return result


def weights_from_samples(samples: Sequence[int]) -> list[int]:
    """Turn sample counts into weights in basis points summing to exactly 10000.

    Largest-remainder method: each contributor gets the floor of their exact share, and the basis
    points left over go one each to the largest remainders, ties to the lower index. A contributor
    whose exact share is below one basis point can therefore get 0 (the verifier accepts a zero
    weight and mints nothing for it).

    >>> weights_from_samples([1, 1, 1])
    [3334, 3333, 3333]
    >>> weights_from_samples([1, 99999])
    [0, 10000]
    """
    if isinstance(samples, str | bytes) or not isinstance(samples, Sequence):
        raise ValidationError("samples", f"must be a list of sample counts, got {type(samples).__name__}")
    if not samples:
        raise ValidationError("samples", "must list at least one sample count")
    for i, count in enumerate(samples):
        _check_int(count, f"samples[{i}]", 1, SAMPLES_MAX)
    total = sum(samples)
    # Integer arithmetic only: floats would make the remainders, and so the winners, fuzzy.
    floors, remainders = zip(*(divmod(count * TOTAL_BPS, total) for count in samples), strict=True)
    weights = list(floors)
    leftover = TOTAL_BPS - sum(weights)
    by_remainder = sorted(range(len(samples)), key=lambda i: (-remainders[i], i))
    for i in by_remainder[:leftover]:
        weights[i] += 1
    return weights


def split_bps(total_bps: int, weights_bps: Sequence[int]) -> list[int]:
    """Split ``total_bps`` by weights the way the verifier splits a reward.

    Each share is ``total * weight // 10000``; what rounding leaves over goes to the first
    contributor, so the shares always add up to the total.

    >>> split_bps(10, [3333, 3333, 3334])
    [4, 3, 3]
    """
    return _split(total_bps, weights_bps, "total_bps", "weights_bps")


def attribute(delta_one_bps: int, contributors: list[dict]) -> list[dict]:
    """Return the normalised contributors, each with its ``attributed_bps`` of the DeltaOne.

    >>> attribute(700, [{"address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    ...                  "weight_bps": 10000}])[0]["attributed_bps"]
    700
    """
    if isinstance(contributors, str | bytes) or not isinstance(contributors, Sequence):
        raise ValidationError(
            _FIELD,
            f"must be the parsed contributor list, got {type(contributors).__name__}",
        )
    weights = []
    for i, contributor in enumerate(contributors):
        if not isinstance(contributor, Mapping) or "weight_bps" not in contributor:
            raise ValidationError(
                f"{_FIELD}[{i}].weight_bps",
                "missing: pass the output of parse_contributors",
            )
        weights.append(contributor["weight_bps"])
    shares = _split(delta_one_bps, weights, "delta_one_bps", _FIELD, suffix=".weight_bps")
    return [
        {**contributor, "attributed_bps": share}
        for contributor, share in zip(contributors, shares, strict=True)
    ]


def _split(
    total: object,
    weights: object,
    total_field: str,
    weights_field: str,
    suffix: str = "",
) -> list[int]:
    _check_int(total, total_field, 0, None)
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence) or not weights:
        raise ValidationError(weights_field, "must be a non-empty list of weights in basis points")
    for i, weight in enumerate(weights):
        # 0 is allowed here: weights_from_samples may legitimately produce it.
        _check_int(weight, f"{weights_field}[{i}]{suffix}", 0, TOTAL_BPS)
    if sum(weights) != TOTAL_BPS:
        raise ValidationError(
            weights_field,
            f"weights sum to {sum(weights)}; they must sum to exactly {TOTAL_BPS}",
        )
    shares = [total * weight // TOTAL_BPS for weight in weights]
    shares[0] += total - sum(shares)
    return shares


def _load(value: object) -> list:
    if isinstance(value, str):
        # The strict reader: it also refuses nesting deep enough to crash the interpreter.
        try:
            value = parse_json(value, _FIELD)
        except ValidationError as exc:
            raise ValidationError(
                _FIELD,
                f"is not valid JSON ({exc.message}); "
                'expected e.g. [{"address": "0x...", "weight_bps": 10000}]',
            ) from None
    if not isinstance(value, list | tuple):
        raise ValidationError(_FIELD, f"must be a list of contributors, got {type(value).__name__}")
    return list(value)


def _entry_form(entry: object, field: str) -> str:
    if not isinstance(entry, Mapping):
        raise ValidationError(
            field,
            f'must be an object like {{"address": "0x...", "weight_bps": 10000}}, got {type(entry).__name__}',
        )
    for key in entry:
        if key not in _ALLOWED_KEYS:
            raise ValidationError(
                f"{field}.{key}",
                f"unknown key; allowed keys are {', '.join(_ALLOWED_KEYS)}",
            )
    # Weights decide the split; samples beside a weight only state the contributed rows.
    if "weight_bps" in entry:
        return "weight_bps"
    if "samples" in entry:
        return "samples"
    raise ValidationError(field, "needs one of weight_bps and samples")


def _check_int(value: object, field: str, minimum: int, maximum: int | None) -> None:
    # bool is an int subclass and 1.5 or 5000.0 are not counts: refuse both explicitly.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be a whole number, got {_show(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        if maximum == SAMPLES_MAX:
            bound += " (a sample count is stored as a 64-bit integer)"
        raise ValidationError(field, f"must be {bound}, got {_show(value)}")


def _show(value: object) -> str:
    # Messages reach HTTP responses and logs: keep them short, and never fail while building one
    # (repr of an int with more than 4300 digits raises ValueError).
    try:
        text = repr(value)
    except ValueError:
        text = ""
    return text if 0 < len(text) <= 40 else type(value).__name__
