import json

import pytest

from mlflow_hokusai_plugin.core.addresses import ZERO_ADDRESS
from mlflow_hokusai_plugin.core.contributors import (
    MAX_CONTRIBUTORS,
    TOTAL_BPS,
    attribute,
    parse_contributors,
    split_bps,
    weights_from_samples,
)
from mlflow_hokusai_plugin.core.errors import ValidationError

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BOB = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
CAROL = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"


def address(i: int) -> str:
    """A distinct, non-zero, all-lowercase address."""
    return "0x" + f"{i + 1:040x}"


def rejected(value) -> ValidationError:
    with pytest.raises(ValidationError) as excinfo:
        parse_contributors(value)
    return excinfo.value


def test_constants():
    assert TOTAL_BPS == 10000
    assert MAX_CONTRIBUTORS == 100


# --- parse_contributors: weight form ----------------------------------------------------------


def test_single_contributor_from_json_tag():
    tag = json.dumps([{"address": ALICE.lower(), "weight_bps": 10000}])
    assert parse_contributors(tag) == [{"address": ALICE, "weight_bps": 10000}]


def test_weights_keep_input_order_and_checksum_addresses():
    value = [
        {"address": CAROL.upper().replace("0X", "0x"), "weight_bps": 2500},
        {"address": ALICE, "weight_bps": 5000},
        {"address": BOB.lower(), "weight_bps": 2500},
    ]
    assert parse_contributors(value) == [
        {"address": CAROL, "weight_bps": 2500},
        {"address": ALICE, "weight_bps": 5000},
        {"address": BOB, "weight_bps": 2500},
    ]


def test_tuple_input_is_accepted():
    assert parse_contributors(({"address": ALICE, "weight_bps": 10000},)) == [
        {"address": ALICE, "weight_bps": 10000}
    ]


def test_input_is_not_modified():
    value = [{"address": ALICE.lower(), "weight_bps": 10000}]
    parse_contributors(value)
    assert value == [{"address": ALICE.lower(), "weight_bps": 10000}]


def test_one_hundred_contributors_are_allowed():
    weights = [100] * 100
    value = [{"address": address(i), "weight_bps": w} for i, w in enumerate(weights)]
    assert len(parse_contributors(value)) == 100


def test_101_contributors_rejected():
    value = [{"address": address(i), "weight_bps": 1} for i in range(101)]
    error = rejected(value)
    assert error.field == "contributors"
    assert "101" in error.message and "100" in error.message


@pytest.mark.parametrize("total", [9999, 10001])
def test_weights_must_sum_to_exactly_10000(total):
    error = rejected(
        [
            {"address": ALICE, "weight_bps": 5000},
            {"address": BOB, "weight_bps": total - 5000},
        ]
    )
    assert error.field == "contributors"
    assert f"sum to {total}" in error.message
    assert "10000" in error.message


@pytest.mark.parametrize("weight", [0, -1, 10001])
def test_weight_out_of_range(weight):
    error = rejected([{"address": ALICE, "weight_bps": weight}])
    assert error.field == "contributors[0].weight_bps"
    assert "between 1 and 10000" in error.message


@pytest.mark.parametrize("weight", [True, 5000.0, 1.5, "10000", None, [10000]])
def test_weight_must_be_an_integer(weight):
    error = rejected([{"address": BOB, "weight_bps": 5000}, {"address": ALICE, "weight_bps": weight}])
    assert error.field == "contributors[1].weight_bps"
    assert "whole number" in error.message


def test_float_weight_in_json_rejected():
    error = rejected(f'[{{"address": "{ALICE}", "weight_bps": 10000.0}}]')
    assert error.field == "contributors[0].weight_bps"


# --- parse_contributors: samples form ---------------------------------------------------------


def test_samples_become_weights_and_are_kept():
    value = [
        {"address": ALICE, "samples": 1},
        {"address": BOB, "samples": 1},
        {"address": CAROL, "samples": 1},
    ]
    assert parse_contributors(value) == [
        {"address": ALICE, "weight_bps": 3334, "samples": 1},
        {"address": BOB, "weight_bps": 3333, "samples": 1},
        {"address": CAROL, "weight_bps": 3333, "samples": 1},
    ]


def test_samples_from_json_tag():
    tag = json.dumps([{"address": ALICE, "samples": 1200}, {"address": BOB, "samples": 300}])
    assert parse_contributors(tag) == [
        {"address": ALICE, "weight_bps": 8000, "samples": 1200},
        {"address": BOB, "weight_bps": 2000, "samples": 300},
    ]


@pytest.mark.parametrize("samples", [0, -5, 1.0, True, "12", None])
def test_samples_must_be_positive_integers(samples):
    error = rejected([{"address": ALICE, "samples": 10}, {"address": BOB, "samples": samples}])
    assert error.field == "contributors[1].samples"


# --- parse_contributors: structure ------------------------------------------------------------


def test_mixed_forms_rejected():
    error = rejected([{"address": ALICE, "weight_bps": 5000}, {"address": BOB, "samples": 10}])
    assert error.field == "contributors[1]"
    assert "same form" in error.message


def test_weights_may_state_the_contributed_rows_of_every_contributor():
    parsed = parse_contributors(
        [
            {"address": ALICE, "weight_bps": 7000, "samples": 10},
            {"address": BOB, "weight_bps": 3000, "samples": 90},
        ]
    )
    # The weights decide the split; the rows are only stated (they become totalSamples).
    assert [(c["weight_bps"], c["samples"]) for c in parsed] == [(7000, 10), (3000, 90)]


def test_weights_with_the_rows_of_only_some_contributors_rejected():
    error = rejected(
        [{"address": ALICE, "weight_bps": 5000, "samples": 10}, {"address": BOB, "weight_bps": 5000}]
    )
    assert error.field == "contributors[1].samples"
    error = rejected(
        [{"address": ALICE, "weight_bps": 5000}, {"address": BOB, "weight_bps": 5000, "samples": 1}]
    )
    assert error.field == "contributors[1].samples"
    error = rejected([{"address": ALICE, "weight_bps": 10000, "samples": 0}])
    assert error.field == "contributors[0].samples"


def test_neither_form_rejected():
    error = rejected([{"address": ALICE}])
    assert error.field == "contributors[0]"
    assert "weight_bps" in error.message and "samples" in error.message


def test_missing_address():
    error = rejected([{"weight_bps": 10000}])
    assert error.field == "contributors[0].address"
    assert "missing" in error.message


def test_unknown_key_named():
    error = rejected([{"address": ALICE, "weight_bps": 10000, "wallet": "x"}])
    assert error.field == "contributors[0].wallet"
    assert "unknown key" in error.message


def test_zero_address_rejected():
    error = rejected(
        [
            {"address": ALICE, "weight_bps": 5000},
            {"address": ZERO_ADDRESS, "weight_bps": 5000},
        ]
    )
    assert error.field == "contributors[1].address"
    assert "zero address" in error.message


def test_bad_checksum_rejected():
    error = rejected([{"address": ALICE[:-1] + "D", "weight_bps": 10000}])
    assert error.field == "contributors[0].address"
    assert "checksum mismatch" in error.message


def test_duplicate_in_different_case_rejected_naming_both_indexes():
    error = rejected(
        [
            {"address": ALICE, "weight_bps": 4000},
            {"address": BOB, "weight_bps": 2000},
            {"address": ALICE.lower(), "weight_bps": 4000},
        ]
    )
    assert error.field == "contributors[2].address"
    assert "contributors[0]" in error.message
    assert ALICE in error.message


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("[]", "contributors"),
        ([], "contributors"),
        ("not json", "contributors"),
        ('[{"address": "0x", ', "contributors"),
        ("", "contributors"),
        ('{"address": "0x", "weight_bps": 10000}', "contributors"),
        (None, "contributors"),
        (42, "contributors"),
        ({"address": ALICE, "weight_bps": 10000}, "contributors"),
        ([ALICE], "contributors[0]"),
        ([None], "contributors[0]"),
    ],
)
def test_structure_errors(value, field):
    assert rejected(value).field == field


def test_invalid_json_message_says_what_is_expected():
    error = rejected("[{'address': '0xabc'}]")
    assert "not valid JSON" in error.message
    assert "weight_bps" in error.message


# --- weights_from_samples ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "weights"),
    [
        ([1], [10000]),
        ([1, 1, 1], [3334, 3333, 3333]),
        ([1, 1], [5000, 5000]),
        ([1200, 300], [8000, 2000]),
        ([2, 1], [6667, 3333]),
        ([1, 2], [3333, 6667]),
        ([1, 1, 1, 1, 1, 1], [1667, 1667, 1667, 1667, 1666, 1666]),
        ([1, 99999], [0, 10000]),  # a share under half a bps rounds to 0
        ([3, 99997], [0, 10000]),  # 0.3 bps: 0 after the largest remainder
        ([1, 1, 19998], [1, 0, 9999]),  # equal remainders: the lower index wins
    ],
)
def test_weights_from_samples(samples, weights):
    result = weights_from_samples(samples)
    assert result == weights
    assert sum(result) == TOTAL_BPS


@pytest.mark.parametrize("n", [1, 3, 7, 13, 99, 100])
def test_weights_from_samples_always_sum_to_10000(n):
    samples = [(i * 7919) % 1000 + 1 for i in range(n)]
    weights = weights_from_samples(samples)
    assert sum(weights) == TOTAL_BPS
    # Never more than one bps away from the exact share.
    total = sum(samples)
    for count, weight in zip(samples, weights, strict=True):
        assert abs(weight - count * TOTAL_BPS / total) < 1


def test_weights_from_samples_is_deterministic():
    samples = [5, 3, 3, 7, 11, 3]
    assert weights_from_samples(samples) == weights_from_samples(list(samples))


@pytest.mark.parametrize(
    ("samples", "field"),
    [
        ([], "samples"),
        ("12", "samples"),
        (None, "samples"),
        ({1: 2}, "samples"),
        ([1, 0], "samples[1]"),
        ([1, -1], "samples[1]"),
        ([1.5], "samples[0]"),
        ([True], "samples[0]"),
    ],
)
def test_weights_from_samples_rejects(samples, field):
    with pytest.raises(ValidationError) as excinfo:
        weights_from_samples(samples)
    assert excinfo.value.field == field


# --- split_bps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weights", "shares"),
    [
        (10, [3333, 3333, 3334], [4, 3, 3]),  # shares 3, 3, 3; dust 1 to the first
        (700, [10000], [700]),
        (700, [5000, 5000], [350, 350]),
        (701, [5000, 5000], [351, 350]),
        (1, [3334, 3333, 3333], [1, 0, 0]),
        (0, [5000, 5000], [0, 0]),
        (700, [0, 10000], [0, 700]),
        (10, [1, 9999], [1, 9]),  # dust goes to the first even when its weight is tiny
    ],
)
def test_split_bps(total, weights, shares):
    result = split_bps(total, weights)
    assert result == shares
    assert sum(result) == total


def test_split_bps_large_total_is_exact():
    total = 10**30 + 7
    shares = split_bps(total, [3333, 3333, 3334])
    assert sum(shares) == total
    assert shares[1] == total * 3333 // 10000


@pytest.mark.parametrize(
    ("total", "weights", "field"),
    [
        (-1, [10000], "total_bps"),
        (1.5, [10000], "total_bps"),
        (True, [10000], "total_bps"),
        ("10", [10000], "total_bps"),
        (10, [], "weights_bps"),
        (10, None, "weights_bps"),
        (10, [5000, 4999], "weights_bps"),
        (10, [5000, 5000.0], "weights_bps[1]"),
        (10, [-1, 10001], "weights_bps[0]"),
        (10, [10001], "weights_bps[0]"),
    ],
)
def test_split_bps_rejects(total, weights, field):
    with pytest.raises(ValidationError) as excinfo:
        split_bps(total, weights)
    assert excinfo.value.field == field


# --- attribute --------------------------------------------------------------------------------


def test_attribute_adds_attributed_bps():
    contributors = parse_contributors(
        [
            {"address": ALICE, "samples": 1},
            {"address": BOB, "samples": 1},
            {"address": CAROL, "samples": 1},
        ]
    )
    result = attribute(10, contributors)
    assert result == [
        {"address": ALICE, "weight_bps": 3334, "samples": 1, "attributed_bps": 4},
        {"address": BOB, "weight_bps": 3333, "samples": 1, "attributed_bps": 3},
        {"address": CAROL, "weight_bps": 3333, "samples": 1, "attributed_bps": 3},
    ]
    assert "attributed_bps" not in contributors[0]  # input left alone


def test_attribute_single_contributor_gets_everything():
    result = attribute(700, parse_contributors([{"address": ALICE, "weight_bps": 10000}]))
    assert result == [{"address": ALICE, "weight_bps": 10000, "attributed_bps": 700}]


def test_attribute_zero_delta():
    contributors = parse_contributors(
        [{"address": ALICE, "weight_bps": 5000}, {"address": BOB, "weight_bps": 5000}]
    )
    assert [c["attributed_bps"] for c in attribute(0, contributors)] == [0, 0]


@pytest.mark.parametrize(
    ("delta", "contributors", "field"),
    [
        (-1, [{"address": ALICE, "weight_bps": 10000}], "delta_one_bps"),
        (7.0, [{"address": ALICE, "weight_bps": 10000}], "delta_one_bps"),
        (7, [], "contributors"),
        (7, "[]", "contributors"),
        (7, [{"address": ALICE}], "contributors[0].weight_bps"),
        (7, [ALICE], "contributors[0].weight_bps"),
        (7, [{"address": ALICE, "weight_bps": 9999}], "contributors"),
        (7, [{"address": ALICE, "weight_bps": "10000"}], "contributors[0].weight_bps"),
    ],
)
def test_attribute_rejects(delta, contributors, field):
    with pytest.raises(ValidationError) as excinfo:
        attribute(delta, contributors)
    assert excinfo.value.field == field


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, '[{"address": "0x1", "weight_bps": 1' + "0" * 5000 + "}]"],
)
def test_json_the_parser_refuses_is_a_validation_error(text):
    error = rejected(text)
    assert error.field == "contributors"
    assert "JSON" in error.message


def test_huge_integer_weight_gives_a_short_message():
    error = rejected([{"address": ALICE, "weight_bps": 10**5000}])
    assert error.field == "contributors[0].weight_bps"
    assert len(error.message) < 100
