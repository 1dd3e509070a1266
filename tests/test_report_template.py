"""The report's wording lives in utils/report_template.md.j2 and its values in utils.face.report:
every value a macro uses is one utils.face.report passes (StrictUndefined makes a missing one an
error, so rendering over the committed results and over no results at all must succeed), every
value passed is one the macro declares, and the template uses no variable from outside."""
import json

import jinja2
import jinja2.meta
import pytest

from utils.face import report

RESULTS, FIGURES, DATA = (report.io.REPO_ROOT / name for name in ("results", "figures", "data"))


def test_template_uses_no_variable_it_is_not_given():
    env = report.template_environment()
    source = env.loader.get_source(env, report.TEMPLATE.name)[0]
    # inside a macro, a name that is neither an argument nor set there would be such a variable
    assert jinja2.meta.find_undeclared_variables(env.parse(source)) == set()


@pytest.fixture
def rendered(monkeypatch):
    """Every macro call of a report build: [(macro name, the values passed)]."""
    calls, words = [], report.words

    def recording(name, **values):
        calls.append((name, values))
        return words(name, **values)
    monkeypatch.setattr(report, "words", recording)
    return calls


def check_calls(calls):
    macros = report.template_macros()
    assert calls
    for name, values in calls:
        declared = set(getattr(macros, name).arguments)
        assert set(values) <= declared, (name, set(values) - declared)


@pytest.mark.skipif(not (RESULTS / "baseline.json").exists(), reason="no committed results")
def test_template_renders_over_the_committed_results(tmp_path, rendered):
    paths = report.build_report(RESULTS, FIGURES, tmp_path / "out", DATA)
    check_calls(rendered)
    assert "## References" in paths["markdown"].read_text()


def test_template_renders_over_no_results(tmp_path, rendered):
    (tmp_path / "results").mkdir()
    paths = report.build_report(tmp_path / "results", tmp_path / "figures", tmp_path / "out",
                                tmp_path / "data")
    check_calls(rendered)
    text = paths["markdown"].read_text()
    assert text.count("*Not run yet:*") >= 10 and "{{" not in text and "{%" not in text


def test_a_missing_value_is_an_error():
    with pytest.raises(jinja2.UndefinedError):
        report.words("baseline", model="m")   # the wording needs more than the model
    with pytest.raises(TypeError):
        report.words("baseline", not_run="x", unknown=1)   # a value the macro does not declare


def test_every_macro_is_used(tmp_path, rendered):
    (tmp_path / "empty").mkdir()
    report.build_report(tmp_path / "empty", tmp_path, tmp_path / "a", tmp_path)
    if (RESULTS / "baseline.json").exists():
        report.build_report(RESULTS, FIGURES, tmp_path / "b", DATA)
    # the latency issue's front check, absent from results that predate it
    report.front_check_lines({"front_check": {"floor": 0.79, "speed_ratio": 0.95, "margin": 0.003,
                                              "points": [{"variant": "v", "dominated": False,
                                                          "latency_speedup_vs_dense": 2.0,
                                                          "macro_f1": 0.8}]}})
    # a TweetEval data directory: its official splits, cleaned one by one
    cleaning = {"raw_rows": 6, "empty_rows": 0, "duplicate_rows": 0,
                "removed_as_in_earlier_split": 0, "final_rows": 6}
    split = {"rows": 6, "negative": 2, "neutral": 2, "positive": 2}
    (tmp_path / "tweet_eval").mkdir()
    (tmp_path / "tweet_eval" / "stats.json").write_text(json.dumps({
        "source": "tweet_eval", "final_rows": 18,
        "per_split_cleaning": {s: cleaning for s in ("train", "validation", "test")},
        "splits": {s: split for s in ("train", "validation", "test")}}))
    report.build_report(tmp_path / "empty", tmp_path, tmp_path / "c", tmp_path / "tweet_eval")
    report.readme_blocks(report.Report({"results": tmp_path / "empty", "data": tmp_path},
                                       tmp_path, tmp_path / "c"))   # the README's blocks
    helpers = {"verdict", "distilled"}   # called from other macros, not from utils.face.report
    env = report.template_environment()
    source = env.loader.get_source(env, report.TEMPLATE.name)[0]
    defined = {node.name for node in env.parse(source).find_all(jinja2.nodes.Macro)}
    used = {name for name, _ in rendered}
    assert used == defined - helpers
