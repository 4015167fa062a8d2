"""Contributed data against the benchmark: formats, schema, PII, duplicates, and who gets credit.

Real files on disk (CSV, JSON, JSON Lines, Parquet) read by the same code the flow runs; the
bundled breast-cancer sample is the benchmark.
"""

import json

import pandas as pd
import pytest

from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.pipeline.contributed_data import (
    BenchmarkSchema,
    Source,
    integrate,
    pii_columns,
    read_table,
)
from mlflow_hokusai_plugin.pipeline.contributions import plan_contributions
from mlflow_hokusai_plugin.pipeline.sample import write_contribution_files
from mlflow_hokusai_plugin.services.datasets import dataframe_digest

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BOB = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"


def write(frame, path):
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        # The json module writes floats exactly (repr); pandas' to_json rounds to 10 digits.
        records = frame.to_dict(orient="records")
        if suffix == ".jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
        else:
            path.write_text(json.dumps(records))
    return str(path)


def refused(sources, schema, **kwargs) -> str:
    with pytest.raises(ValidationError) as info:
        integrate(sources, schema, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".parquet"])
def test_every_format_gives_the_same_rows_and_digest(tmp_path, sample, schema, suffix):
    rows = sample.contributions[0]
    result = integrate([Source(write(rows, tmp_path / f"rows{suffix}"), ALICE)], schema)
    assert result.rows_kept == [len(rows)]
    assert result.manifest["data_hash"] == dataframe_digest(rows) == result.manifest["sha256"]
    assert result.manifest["row_count"] == len(rows)
    assert result.manifest["columns"] == list(sample.benchmark.columns)
    for key in ("dtypes", "null_counts", "unique_counts", "column_count", "source_path"):
        assert key in result.manifest


def test_unreadable_files_are_named(tmp_path, schema):
    (tmp_path / "rows.xlsx").write_text("x")
    assert "unsupported file type '.xlsx'" in refused([Source(str(tmp_path / "rows.xlsx"))], schema)
    assert "no such file" in refused([Source(str(tmp_path / "missing.csv"))], schema)
    (tmp_path / "broken.json").write_text("[{not json")
    message = refused([Source(str(tmp_path / "broken.json"))], schema)
    assert "broken.json: cannot be read as json" in message
    (tmp_path / "empty.csv").write_text("a,b\n")
    assert "empty.csv: has no rows" in refused([Source(str(tmp_path / "empty.csv"))], schema)


def test_a_missing_benchmark_column_is_named(tmp_path, sample, schema):
    rows = sample.contributions[0].drop(columns=["mean area"])
    message = refused([Source(write(rows, tmp_path / "rows.csv"))], schema)
    assert "rows.csv: missing column(s) 'mean area'" in message


def test_a_value_of_the_wrong_type_names_file_row_and_column(tmp_path, sample, schema):
    rows = sample.contributions[0].astype({"mean radius": object}).reset_index(drop=True)
    rows.loc[6, "mean radius"] = "abc"
    message = refused([Source(write(rows, tmp_path / "rows.csv"))], schema)
    assert (
        message
        == "contributed_data: "
        + f"{tmp_path / 'rows.csv'}: row 7, column 'mean radius': 'abc' is not a number"
    )


def test_an_empty_cell_and_an_unknown_label_are_named(tmp_path, sample, schema):
    rows = sample.contributions[0].reset_index(drop=True)
    holes = rows.copy()
    holes.loc[2, "worst area"] = None
    assert "row 3, column 'worst area': empty cell" in refused(
        [Source(write(holes, tmp_path / "a.csv"))], schema
    )
    labels = rows.copy()
    labels.loc[4, "label"] = 7.0
    message = refused([Source(write(labels, tmp_path / "b.parquet"))], schema)
    assert "row 5, column 'label': 7.0 is not a label of the benchmark (0.0, 1.0)" in message


def test_pii_columns_are_dropped_by_name_and_by_value(tmp_path, sample, schema):
    rows = sample.contributions[0].reset_index(drop=True).copy()
    rows["contact_email"] = "-"
    rows["notes"] = ["ssn 123-45-6789" if i == 3 else "fine" for i in range(len(rows))]
    rows["phoneNumber"] = "n/a"
    rows["who"] = ["ann@example.org"] + ["-"] * (len(rows) - 1)
    rows["batch"] = 3.0  # an extra column that is not personal: dropped as not in the benchmark
    result = integrate([Source(write(rows, tmp_path / "rows.csv"))], schema)
    dropped = result.manifest["dropped"]
    assert dropped["pii_columns"] == {
        "contact_email": "the name 'contact_email' suggests personal data",
        "notes": "values look like social security numbers",
        "phoneNumber": "the name 'phoneNumber' suggests personal data",
        "who": "values look like email addresses",
    }
    assert dropped["extra_columns"] == ["batch"]
    assert list(result.frame.columns) == list(sample.benchmark.columns)


def test_personal_data_inside_a_benchmark_column_stops_the_flow(tmp_path, schema):
    benchmark = pd.DataFrame({"city": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "label": [0, 1, 0]})
    text_schema = BenchmarkSchema.of(benchmark, "label", "classification")
    rows = pd.DataFrame({"city": ["b", "call (555) 123-4567"], "x": [5.0, 6.0], "label": [1, 0]})
    message = refused([Source(write(rows, tmp_path / "rows.csv"))], text_schema)
    assert "column 'city' values look like phone numbers, but the benchmark needs that column" in message
    assert pii_columns(pd.DataFrame({"mobile_no": [1]})) == {
        "mobile_no": "the name 'mobile_no' suggests personal data"
    }
    assert (
        pii_columns(pd.DataFrame({"automobile": ["x"], "phone_count": [2]}), protected=["phone_count"]) == {}
    )


def test_duplicates_training_rows_and_benchmark_rows_are_dropped_and_counted(tmp_path, sample, schema):
    rows = pd.concat(
        [
            sample.contributions[0].iloc[:10],
            sample.contributions[0].iloc[:3],  # repeated within the contribution
            sample.baseline.iloc[:2],  # already in the training data
            sample.benchmark.iloc[:4],  # the benchmark itself: would inflate the gain
        ]
    )
    result = integrate(
        [Source(write(rows, tmp_path / "rows.csv"))],
        schema,
        benchmark=sample.benchmark,
        training=sample.baseline,
    )
    assert result.rows_kept == [10]
    dropped = result.manifest["dropped"]
    assert (dropped["duplicate_rows"], dropped["training_rows"], dropped["benchmark_rows"]) == (3, 2, 4)
    assert result.manifest["data_hash"] == dataframe_digest(sample.contributions[0].iloc[:10])


def test_nothing_left_after_cleaning_is_an_error(tmp_path, sample, schema):
    message = refused(
        [Source(write(sample.benchmark.iloc[:5], tmp_path / "rows.csv"))], schema, benchmark=sample.benchmark
    )
    assert (
        "no rows left after dropping 0 duplicate rows, 0 rows already in the training data and 5 rows"
        in message
    )


def test_the_first_contributor_of_a_repeated_row_keeps_it(tmp_path, sample, schema):
    alice = sample.contributions[0].iloc[:20]
    bob = pd.concat([sample.contributions[1].iloc[:5], alice.iloc[:15]])
    plan = plan_contributions(
        str(
            _contributors_file(
                tmp_path, [(ALICE, write(alice, tmp_path / "a.csv")), (BOB, write(bob, tmp_path / "b.json"))]
            )
        ),
        "",
    )
    result = integrate(plan.sources, schema)
    assert result.rows_kept == [20, 5]
    assert plan.contributors_for(result.rows_kept) == [
        {"address": ALICE, "samples": 20},
        {"address": BOB, "samples": 5},
    ]
    # A contributor none of whose rows survived gets no share.
    assert plan.contributors_for([20, 0]) == [{"address": ALICE, "samples": 20}]


def _contributors_file(tmp_path, pairs):
    path = tmp_path / "contributors.json"
    path.write_text(json.dumps([{"address": a, "data": d} for a, d in pairs]))
    return path


def test_one_contributor_gets_every_kept_row(tmp_path):
    plan = plan_contributions(ALICE.lower(), "rows.csv")
    assert plan.sources == (Source("rows.csv", ALICE),)
    assert plan.contributors_for([42]) == [{"address": ALICE, "samples": 42}]


def test_shares_from_a_csv_contributors_file(tmp_path):
    path = tmp_path / "contributors.csv"
    path.write_text(f"address,weight_bps\n{ALICE},7000\n{BOB},3000\n")
    plan = plan_contributions(str(path), "rows.parquet")
    assert plan.sources == (Source("rows.parquet", None),)
    assert plan.contributors_for([99]) == [
        {"address": ALICE, "weight_bps": 7000},
        {"address": BOB, "weight_bps": 3000},
    ]


@pytest.mark.parametrize(
    ("contributor", "data", "message"),
    [
        ("", "rows.csv", "contributor: give one address"),
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", "rows.csv", "checksum"),
        ("0x1234", "rows.csv", "contributor"),
        (ALICE, "", "contributed_data: give the file of rows contributed by"),
        ("nobody.json", "rows.csv", "'nobody.json' is neither an address"),
    ],
)
def test_bad_contributor_parameters(contributor, data, message):
    with pytest.raises(ValidationError, match=message):
        plan_contributions(contributor, data)


def test_bad_contributors_files(tmp_path):
    def refused_file(text, data="", name="c.json"):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValidationError) as info:
            plan_contributions(str(path), data)
        return str(info.value)

    assert "not valid JSON" in refused_file("[{")
    assert "expected a non-empty list" in refused_file("[]")
    mixed = json.dumps([{"address": ALICE, "data": "a.csv"}, {"address": BOB, "samples": 3}])
    assert "contributor[1].data" in refused_file(mixed)
    with_data = json.dumps([{"address": ALICE, "data": "a.csv"}])
    assert "do not also give --contributed-data" in refused_file(with_data, data="rows.csv")
    shares = json.dumps([{"address": ALICE, "weight_bps": 6000}, {"address": BOB, "weight_bps": 3000}])
    assert "10000" in refused_file(shares, data="rows.csv")
    assert "give the contributed rows too" in refused_file(shares)
    twice = json.dumps([{"address": ALICE, "data": "a.csv"}, {"address": ALICE.lower(), "data": "b.csv"}])
    assert "duplicate" in refused_file(twice).lower()


def test_the_sample_contribution_files_round_trip(tmp_path, sample, schema):
    plan = plan_contributions(str(write_contribution_files(tmp_path)), "")
    result = integrate(plan.sources, schema, benchmark=sample.benchmark, training=sample.baseline)
    assert result.rows_kept == [len(c) for c in sample.contributions]
    assert {source.path.rsplit(".", 1)[-1] for source in plan.sources} == {"csv", "parquet"}


def test_benchmark_problems_are_named():
    with pytest.raises(ValidationError, match="has no label column 'y'"):
        BenchmarkSchema.of(pd.DataFrame({"x": [1, 2]}), "y", "classification")
    with pytest.raises(ValidationError, match="column 'x' has empty cells"):
        BenchmarkSchema.of(pd.DataFrame({"x": [1, None], "label": [0, 1]}), "label", "classification")
    with pytest.raises(ValidationError, match="must be numeric for regression"):
        BenchmarkSchema.of(pd.DataFrame({"x": [1, 2], "label": ["a", "b"]}), "label", "regression")


def test_read_table_keeps_column_names_as_text(tmp_path):
    frame = read_table(write(pd.DataFrame({1: [1.0], "b": [2.0]}), tmp_path / "t.parquet"))
    assert list(frame.columns) == ["1", "b"]


def test_a_benchmark_copy_is_caught_whatever_the_rounding_of_its_export(tmp_path, sample, schema):
    copy = sample.benchmark.iloc[:50]
    # pandas' own JSON export keeps 10 digits, a CSV export with %.12g keeps 12: both still copies.
    copy.to_json(tmp_path / "copy.json", orient="records")
    copy.to_csv(tmp_path / "copy.csv", index=False, float_format="%.12g")
    rows = pd.concat([sample.contributions[0].iloc[:5]])
    for name in ("copy.json", "copy.csv"):
        result = integrate(
            [Source(write(rows, tmp_path / "own.csv")), Source(str(tmp_path / name))],
            schema,
            benchmark=sample.benchmark,
        )
        assert result.manifest["dropped"]["benchmark_rows"] == 50, name
        assert result.rows_kept == [5, 0]


def test_json_is_read_as_written_no_dates_guessed(tmp_path):
    benchmark = pd.DataFrame({"signup_time": [1.7e9, 1.8e9], "zip": ["02134", "10001"], "label": [0, 1]})
    text_schema = BenchmarkSchema.of(benchmark, "label", "classification")
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"signup_time": 1700000000, "zip": "02134", "label": 1}]))
    result = integrate([Source(str(path))], text_schema)
    assert result.frame["signup_time"].tolist() == [1.7e9]
    assert result.frame["zip"].tolist() == ["02134"]


def test_personal_data_late_in_a_column_is_still_found(tmp_path, sample):
    frame = pd.DataFrame({"note": ["ok"] * 1500})
    frame.loc[1200, "note"] = "reach me at ann@example.org"
    assert pii_columns(frame) == {"note": "values look like email addresses"}


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("(555)123-4567", True),
        ("+44 20 7946 0958", True),
        ("123 45 6789", True),
        ("order 2024-555-1234", False),
        ("batch 20240101", False),
    ],
)
def test_phone_and_ssn_values(value, found):
    assert bool(pii_columns(pd.DataFrame({"text": [value]}))) is found


def test_infinite_and_boolean_values_are_not_numbers(tmp_path, sample, schema):
    rows = sample.contributions[0].reset_index(drop=True).astype({"mean area": object})
    rows.loc[3, "mean area"] = "inf"
    assert "row 4, column 'mean area': inf is not a number" in refused(
        [Source(write(rows, tmp_path / "a.csv"))], schema
    )
    records = sample.contributions[0].iloc[:2].to_dict(orient="records")
    records[1]["mean area"] = True
    (tmp_path / "b.json").write_text(json.dumps(records))
    assert "row 2, column 'mean area': True is not a number" in refused(
        [Source(str(tmp_path / "b.json"))], schema
    )


def test_blank_lines_keep_row_numbers_and_na_is_text(tmp_path, sample, schema):
    rows = sample.contributions[0].iloc[:4]
    lines = rows.to_csv(index=False).splitlines()
    (tmp_path / "gap.csv").write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n")
    assert "row 3, column 'mean radius': empty cell" in refused([Source(str(tmp_path / "gap.csv"))], schema)
    countries = pd.DataFrame({"country": ["NA", "FR"], "label": [0, 1]})
    text_schema = BenchmarkSchema.of(countries, "label", "classification")
    result = integrate([Source(write(countries, tmp_path / "c.csv"))], text_schema)
    assert result.frame["country"].tolist() == ["NA", "FR"]


def test_a_contributors_csv_saved_with_a_bom(tmp_path):
    path = tmp_path / "contributors.csv"
    path.write_bytes(f"\ufeffaddress,weight_bps\n{ALICE},10000\n".encode())
    assert plan_contributions(str(path), "rows.csv").contributors_for([1]) == [
        {"address": ALICE, "weight_bps": 10000}
    ]
