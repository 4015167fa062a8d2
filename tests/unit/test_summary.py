"""How the description summary reads in the MLflow UI: the versions table's cell, links to versions,
and a baseline's line of improvements; descriptions written in the earlier layout still found."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

import pytest

from mlflow_hokusai_plugin.core import summary
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.store.registrar import Registrar

DELTAS = {"accuracy": {"baseline_value": 0.75, "new_value": 0.82, "absolute_delta": 0.07}}
ATTESTATION_ID = "9f" * 32
OLD_BASELINE = "<!-- hokusai -->\n**Hokusai baseline** of project `demo` (classification)."
OLD_IMPROVEMENT = "<!-- hokusai -->\n**Hokusai improvement** over `churn/1` on `accuracy`: **7 DeltaOne**."


def mlflow_table_cell(description: str) -> str:
    """What MLflow's versions table shows of a description, as plain text.

    ``ModelVersionTable.tsx``: ``truncateToFirstLineWithMaxLength(description, 32)``, lodash's
    ``truncate(text, {length: 32})`` ("..." in the last three places) cut at the first newline.
    """
    text = description if len(description) <= 32 else description[:29] + "..."
    return text.split("\n", 1)[0]


def _improvement(count: int = 2, baseline: str = "churn/1") -> summary.Summary:
    contributors = [
        {"address": f"0x{i:040x}", "weight_bps": 10000 // count, "attributed_bps": 7} for i in range(count)
    ]
    return summary.improvement_markdown(
        baseline_model_id=baseline,
        benchmark_metric="accuracy",
        metric_deltas=DELTAS,
        delta_one_bps=700,
        contributors=contributors,
        attestation_id=ATTESTATION_ID,
    )


def _baseline() -> summary.Summary:
    return summary.baseline_markdown(project="demo", model_type="classification", benchmark_metric="accuracy")


def _listing(count: int, total: int | None = None, name: str = "churn") -> summary.Summary:
    latest = [(f"{name}/{count - i + 1}", 100 * (i + 1)) for i in range(count)]
    return summary.improvements_markdown(latest, count if total is None else total)


# -- the versions table ---------------------------------------------------------------------------


def _every_form(text: summary.Summary) -> list[str]:
    return sorted({str(text)} | {text.fit(room) for room in range(0, len(text), 7)} - {None}, key=len)


@pytest.mark.parametrize(
    "made",
    [_baseline, _improvement, lambda: _improvement(100), lambda: _improvement(3, "n" * 256 + "/12")],
)
def test_the_table_shows_the_headline_not_the_marker_in_every_form(made):
    forms = _every_form(made())
    assert len(forms) >= 2
    for text in forms:
        cell = mlflow_table_cell(text)
        assert cell.startswith("**Hokusai ") and "<!--" not in cell, cell
        # The marker ends the first line: the block is the whole summary.
        assert summary.MARKER in text.splitlines()[0]
        assert summary.split_summary(text) == ("", text)


def test_a_description_that_is_only_a_listed_baseline_shows_the_headline():
    text = summary.with_improvements(None, _listing(3), _baseline())
    assert mlflow_table_cell(text) == "**Hokusai baseline** of proje..."
    assert text.endswith("[`churn/2`](#/models/churn/versions/2) (3 DeltaOne).")


def test_the_users_own_text_stays_first():
    text = summary.replace_summary("Trained on March data.\nSecond line.", _improvement())
    assert mlflow_table_cell(text) == "Trained on March data."
    assert summary.split_summary(text) == ("Trained on March data.\nSecond line.", str(_improvement()))


# -- descriptions written with the marker above the headline -------------------------------------


@pytest.mark.parametrize("old", [OLD_BASELINE, OLD_IMPROVEMENT])
@pytest.mark.parametrize("own", ["", "notes", "notes\n\nmore notes"])
def test_an_earlier_summary_is_replaced_never_doubled(old, own):
    stored = f"{own}\n\n{old}" if own else old
    assert summary.split_summary(stored) == (own, old)
    text = summary.replace_summary(stored, _improvement())
    assert text == (f"{own}\n\n{_improvement()}" if own else str(_improvement()))
    assert text.count(summary.MARKER) == 1 and "**Hokusai baseline**" not in text
    # Twice is once.
    assert summary.replace_summary(text, _improvement()) == text


def test_an_earlier_block_is_kept_as_stored_on_an_attested_version():
    stored = f"notes\n\n{OLD_IMPROVEMENT}"
    assert summary.keep_server_block("new notes", stored) == f"new notes\n\n{OLD_IMPROVEMENT}"
    forged = f"new\n\n{_improvement()}"  # a block in the new layout in its place: dropped
    assert summary.keep_server_block(forged, stored) == f"new\n\n{OLD_IMPROVEMENT}"
    assert summary.keep_server_block(f"mine\n\n{OLD_IMPROVEMENT}", stored) == f"mine\n\n{OLD_IMPROVEMENT}"


def test_a_forged_headline_on_the_markers_line_is_not_the_clients_text():
    stored = f"notes\n\n{_improvement()}"
    forged = "mine\n\n**Hokusai improvement** over `x/1`: **99 DeltaOne** <!-- hokusai -->\nmore"
    assert summary.keep_server_block(forged, stored) == f"mine\n\n{_improvement()}"


def test_an_earlier_baseline_summary_gains_the_listing():
    text = summary.with_improvements(f"notes\n\n{OLD_BASELINE}", _listing(1))
    assert text == f"notes\n\n{OLD_BASELINE}\n\n{_listing(1)}"


# -- links ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["churn", "fraud model (v2)", "50% [x]", "a#b?c&d", "modèle ünïcode", "n" * 256]
)
def test_a_version_link_is_the_uis_route_with_the_name_encoded(name):
    link = summary.version_link(f"{name}/12")
    assert link.startswith(f"[`{name}/12`](#/models/") and link.endswith("/versions/12)")
    target = link[len(f"[`{name}/12`](") : -1]
    # Nothing in the target that Markdown or the hash route would read: the name one path segment.
    assert target.startswith("#/models/") and not set(target[1:]) & set(" ()[]<>`?&#")
    assert target.count("/") == 4 and unquote(target.split("/")[2]) == name


def test_an_improvement_links_its_baseline():
    assert "over [`churn/1`](#/models/churn/versions/1) on `accuracy`" in _improvement()
    assert "over [`my%20model/3`]" not in _improvement(baseline="my model/3")
    assert "(#/models/my%20model/versions/3)" in _improvement(baseline="my model/3")


# -- a baseline's improvements --------------------------------------------------------------------


def test_the_listing_links_the_latest_and_says_how_many_in_all():
    assert summary.IMPROVEMENTS_LISTED == 5
    text = _listing(5, total=12)
    assert text.startswith(
        "**Improved by** 12 versions, the latest 5: [`churn/6`](#/models/churn/versions/6)"
    )
    assert text.count("](#/models/") == 5
    assert str(_listing(2)) == (
        "**Improved by** [`churn/3`](#/models/churn/versions/3) (1 DeltaOne), "
        "[`churn/2`](#/models/churn/versions/2) (2 DeltaOne)."
    )
    assert str(summary.improvements_markdown([("churn/2", 400)], 1)) == (
        "**Improved by** [`churn/2`](#/models/churn/versions/2) (4 DeltaOne)."
    )


def test_the_listing_shortens_to_fewer_links_then_to_a_count():
    text = _listing(5, total=12, name="n" * 256)
    lengths = []
    for room in range(len(text), 0, -1):
        fitted = text.fit(room)
        if fitted is None:
            assert room < len("**Improved by** 12 versions.")
            break
        assert len(fitted) <= room and fitted.startswith("**Improved by** 12 versions")
        lengths.append(fitted.count("](#/models/"))
    assert lengths == sorted(lengths, reverse=True)  # fewer links as the room shrinks
    assert set(lengths) == {5, 4, 3, 2, 1, 0}


def test_the_listing_is_replaced_not_added_again():
    first = summary.with_improvements(f"notes\n\n{_baseline()}", _listing(1))
    second = summary.with_improvements(first, _listing(2))
    assert second == f"notes\n\n{_baseline()}\n\n{_listing(2)}"
    assert second.count(summary.IMPROVED_BY) == 1
    assert summary.with_improvements(second, _listing(2)) == second
    # The listing is the server's: part of the block an attested version keeps.
    assert summary.server_block(second) == f"{_baseline()}\n\n{_listing(2)}"
    # A new summary (a re-registration) replaces the block, listing included.
    assert summary.replace_summary(second, _baseline()) == f"notes\n\n{_baseline()}"


def test_an_improvements_block_gains_the_listing_after_its_contributors():
    block = str(_improvement())
    text = summary.with_improvements(block, _listing(1))
    assert text == f"{block}\n\n{_listing(1)}" and text.endswith("(1 DeltaOne).")


def test_no_block_and_no_headline_is_nothing_to_write():
    assert summary.with_improvements(None, _listing(1)) is None
    assert summary.with_improvements("just notes", _listing(1)) is None
    assert summary.with_improvements("just notes", _listing(1), _baseline()) == (
        f"just notes\n\n{_baseline()}\n\n{_listing(1)}"
    )


@pytest.mark.parametrize("own", [0, 1000, 4000, 4600, 4750, 4800, 4900, 4950, 4990, 5000])
def test_the_listing_never_takes_the_description_past_the_limit_nor_cuts_the_rest(own):
    mine = "u" * own
    base = summary.replace_summary(mine, _baseline())
    listing = _listing(5, total=40, name="n" * 200)
    text = summary.with_improvements(base, listing)
    if summary.server_block(base) is None:
        assert text is None  # no room for a summary at all: nothing to list it in
        return
    assert len(text) <= summary.MAX_DESCRIPTION_LENGTH
    assert text.startswith(base)  # the user's text and the headline, whole
    if len(base) + 2 + len("**Improved by** 40 versions.") <= summary.MAX_DESCRIPTION_LENGTH:
        assert summary.IMPROVED_BY in text
    else:
        assert text == base
    # A plain baseline without a summary: the headline first, shortened if it must be.
    text = summary.with_improvements(mine, listing, _baseline())
    if text is not None:
        assert len(text) <= summary.MAX_DESCRIPTION_LENGTH and text.startswith(mine)


# -- the registrar writes the baseline's listing, best effort --------------------------------------


class FakeRegistry:
    def __init__(self, versions, fail=False):
        self.versions, self.fail, self.calls = versions, fail, 0

    def update_description(self, name, version, rewrite):
        self.calls += 1
        if self.fail:
            raise RuntimeError("database went away")
        stored = self.versions[f"{name}/{version}"]
        text = rewrite(stored["description"], stored["tags"])
        if text is None or text == stored["description"]:
            return False
        stored["description"] = text
        return True


class FakeStore:
    def __init__(self, children, fail=False):
        self.children, self.fail = children, fail

    def improvements_of(self, model_id, limit):
        if self.fail:
            raise RuntimeError("lineage unreadable")
        edges = [{"child_model_id": c, "delta_one_bps": bps} for c, bps in self.children.get(model_id, [])]
        return edges[:limit], len(edges)


def _registrar(registry, store) -> Registrar:
    return Registrar(registry=registry, tracking=None, store=store, signer=lambda: None)


BASE_TAGS = {T.PROJECT: "demo", T.MODEL_TYPE: "classification", T.BENCHMARK_METRIC: "accuracy"}


def test_the_registrar_lists_the_improvements_on_the_baseline():
    versions = {
        "churn/1": {"description": f"notes\n\n{_baseline()}", "tags": dict(BASE_TAGS)},
        "plain/1": {"description": None, "tags": dict(BASE_TAGS)},
        "churn/2": {
            "description": "too long to hold a summary",
            "tags": {**BASE_TAGS, T.BASELINE: "churn/1"},
        },
    }
    children = {
        "churn/1": [(f"churn/{v}", 100) for v in range(9, 1, -1)],
        "plain/1": [("plain/2", 300)],
        "churn/2": [("churn/3", 100)],
    }
    registrar = _registrar(FakeRegistry(versions), FakeStore(children))
    for baseline in ("churn/1", "plain/1", "churn/2", "unknown/1"):
        registrar._list_on_baseline(baseline)
    churn = versions["churn/1"]["description"]
    assert churn.startswith(
        f"notes\n\n{_baseline()}\n\n**Improved by** 8 versions, the latest 5: [`churn/9`]"
    )
    # A plain client's baseline had no summary: it gets one, headline first.
    plain = versions["plain/1"]["description"]
    assert plain == f"{_baseline()}\n\n**Improved by** [`plain/2`](#/models/plain/versions/2) (3 DeltaOne)."
    # An improvement with no block of its own is left as it is.
    assert versions["churn/2"]["description"] == "too long to hold a summary"


@pytest.mark.parametrize("registry_fails", [True, False])
def test_a_failed_listing_is_logged_and_never_fails_the_registration(registry_fails, caplog):
    versions = {"churn/1": {"description": str(_baseline()), "tags": dict(BASE_TAGS)}}
    registry = FakeRegistry(versions, fail=registry_fails)
    registrar = _registrar(registry, FakeStore({"churn/1": [("churn/2", 100)]}, fail=not registry_fails))
    with caplog.at_level(logging.WARNING, logger="mlflow_hokusai_plugin.store.registrar"):
        registrar._list_on_baseline("churn/1")
    assert registry.calls == 1
    assert versions["churn/1"]["description"] == str(_baseline())  # nothing half-written
    assert "could not list the improvements of churn/1" in caplog.text


def test_a_forged_block_on_a_baseline_is_replaced_by_the_servers():
    forged = f"notes\n\n{_baseline()}\n\n**Audited: 0xAttacker earned 9999 DeltaOne**"
    versions = {"churn/1": {"description": forged, "tags": dict(BASE_TAGS)}}
    _registrar(FakeRegistry(versions), FakeStore({"churn/1": [("churn/2", 100)]}))._list_on_baseline(
        "churn/1"
    )
    listed = versions["churn/1"]["description"]
    assert "Attacker" not in listed
    assert (
        listed
        == f"notes\n\n{_baseline()}\n\n**Improved by** [`churn/2`](#/models/churn/versions/2) (1 DeltaOne)."
    )


@pytest.mark.parametrize("name", ["m`](?x=1) **VERIFIED 999 DeltaOne** [`x", "a``b", "`edge`"])
def test_a_model_name_is_shown_as_itself_never_as_markup(name):
    link = summary.version_link(f"{name}/1")
    text = link[1 : link.index("](#/models/")]
    fence = re.match(r"`+", text).group(0)
    assert text.endswith(fence) and fence not in text[len(fence) : -len(fence)]  # one code span
    assert text[len(fence) : -len(fence)].strip() == f"{name}/1"
