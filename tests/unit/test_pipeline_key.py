"""The improvement key of an evaluation: the same rows and contributors in another order are the
same evaluation (a rerun takes up its improvement); another row is another evaluation.

The key is computed from real files on disk as the flow's ``create_experiment`` computes it.
"""

import json

import pytest

from mlflow_hokusai_plugin.pipeline import registration
from mlflow_hokusai_plugin.pipeline.contributed_data import integrate
from mlflow_hokusai_plugin.pipeline.contributions import plan_contributions
from mlflow_hokusai_plugin.pipeline.sample import write_contribution_files

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def evaluation_key(sample, schema, contributor, data=""):
    """(improvement key, contributors, manifest data_hash) of the evaluation of these files."""
    plan = plan_contributions(str(contributor), str(data))
    integrated = integrate(plan.sources, schema, benchmark=sample.benchmark, training=sample.baseline)
    contributors = plan.contributors_for(integrated.rows_kept)
    key = registration.improvement_key(
        baseline_id="churn/1",
        data_hash=registration.rows_digest(integrated.frame),
        contributors=contributors,
        benchmark_digest="bd" * 32,
        benchmark_metric="accuracy",
    )
    return key, contributors, integrated.manifest["data_hash"]


@pytest.fixture(scope="module")
def rows(sample, tmp_path_factory):
    """The sample's contributed rows as one file, and the same rows shuffled, columns reordered."""
    import pandas as pd

    directory = tmp_path_factory.mktemp("rows")
    frame = pd.concat(sample.contributions, ignore_index=True)
    frame.to_csv(directory / "rows.csv", index=False)
    shuffled = frame.sample(frac=1, random_state=7)
    shuffled[list(reversed(shuffled.columns))].to_csv(directory / "shuffled.csv", index=False)
    return frame, directory


def test_shuffled_rows_give_the_same_key(sample, schema, rows):
    _, directory = rows
    key, contributors, data_hash = evaluation_key(sample, schema, ALICE, directory / "rows.csv")
    shuffled = directory / "shuffled.csv"
    again, same_contributors, shuffled_hash = evaluation_key(sample, schema, ALICE, shuffled)
    assert again == key and same_contributors == contributors
    # The manifest's data_hash stays the sha256 of the rows as written: it tells the files apart.
    assert shuffled_hash != data_hash


def test_contributor_files_in_another_order_give_the_same_key(sample, schema, tmp_path):
    contributors_file = write_contribution_files(tmp_path)
    entries = json.loads(contributors_file.read_text())
    assert len(entries) > 1
    reversed_file = tmp_path / "contributors-reversed.json"
    reversed_file.write_text(json.dumps(entries[::-1]))
    key, contributors, _ = evaluation_key(sample, schema, contributors_file)
    again, reversed_contributors, _ = evaluation_key(sample, schema, reversed_file)
    assert again == key
    assert sorted(map(json.dumps, reversed_contributors)) == sorted(map(json.dumps, contributors))


def test_a_changed_or_missing_row_gives_another_key(sample, schema, rows, tmp_path):
    frame, directory = rows
    key, _, _ = evaluation_key(sample, schema, ALICE, directory / "rows.csv")
    changed = frame.copy()
    column = next(c for c in changed.columns if c != "label")
    changed.loc[3, column] = changed.loc[3, column] + 0.5
    changed.to_csv(tmp_path / "changed.csv", index=False)
    changed_key, changed_contributors, _ = evaluation_key(sample, schema, ALICE, tmp_path / "changed.csv")
    assert changed_contributors == [{"address": ALICE, "samples": len(frame)}]
    assert changed_key != key
    frame.drop(index=3).to_csv(tmp_path / "fewer.csv", index=False)
    assert evaluation_key(sample, schema, ALICE, tmp_path / "fewer.csv")[0] not in (key, changed_key)


def test_rows_digest_covers_values_column_names_and_repeated_rows():
    import pandas as pd

    frame = pd.DataFrame({"x": [1.0, 2.0, 2.0], "note": ["a,b", 'say "hi"\nthen', ""]})
    digest = registration.rows_digest(frame)
    assert registration.rows_digest(frame.iloc[[2, 0, 1]][["note", "x"]].reset_index(drop=True)) == digest
    assert registration.rows_digest(frame.rename(columns={"x": "y"})) != digest
    assert registration.rows_digest(frame.iloc[[0, 1]]) != digest
    assert registration.rows_digest(pd.concat([frame, frame.iloc[[0]]])) != digest
    # A value's text cannot pass for a column separator or a line break.
    assert registration.rows_digest(pd.DataFrame({"a": ["1,2"], "b": ["3"]})) != registration.rows_digest(
        pd.DataFrame({"a": ["1"], "b": ["2,3"]})
    )
