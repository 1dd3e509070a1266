"""utils.measurement.intervals against scipy's t-tests, computed another way (the confidence
intervals of scipy.stats.ttest_1samp / ttest_rel)."""
import math

import numpy as np
import pytest
from scipy import stats

from utils.measurement import intervals


@pytest.mark.parametrize("values", [[0.81, 0.83, 0.82], [1.0, 2.0], list(np.linspace(-1, 3, 9))])
def test_summary_matches_scipys_one_sample_interval(values):
    got = intervals.summary(values)
    reference = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert got["mean"] == pytest.approx(np.mean(values))
    assert got["std"] == pytest.approx(np.std(values, ddof=1))
    assert (got["low"], got["high"]) == pytest.approx((reference.low, reference.high))
    assert got["n"] == len(values)


def test_one_replicate_has_no_spread_and_no_verdict():
    got = intervals.summary([0.84])
    assert got == {"n": 1, "mean": 0.84, "std": None, "low": None, "high": None}
    assert intervals.verdict(got) == "unknown"
    with pytest.raises(ValueError, match="at least one replicate"):
        intervals.summary([float("nan")])


def test_paired_difference_matches_scipys_paired_interval_and_pairs_by_seed():
    a = {0: 0.842, 1: 0.851, 2: 0.838, 7: 0.9}     # seed 7 has no partner: left out
    b = {0: 0.835, 1: 0.840, 2: 0.836}
    got = intervals.paired_difference(a, b)
    reference = stats.ttest_rel([a[s] for s in (0, 1, 2)],
                                [b[s] for s in (0, 1, 2)]).confidence_interval(0.95)
    assert got["seeds"] == [0, 1, 2]
    assert (got["low"], got["high"]) == pytest.approx((reference.low, reference.high))
    assert got["verdict"] == ("higher" if reference.low > 0 else "tie")
    with pytest.raises(ValueError, match="pair them by seed"):
        intervals.paired_difference([1, 2, 3], [1, 2])


@pytest.mark.parametrize("a, b, expected", [
    ([0.80, 0.81, 0.82], [0.70, 0.71, 0.72], "higher"),
    ([0.70, 0.71, 0.72], [0.80, 0.81, 0.82], "lower"),
    ([0.80, 0.70, 0.75], [0.75, 0.76, 0.74], "tie")])
def test_verdicts(a, b, expected):
    assert intervals.paired_difference(a, b)["verdict"] == expected


def test_ratio_summary_is_the_geometric_mean_with_a_log_scale_interval():
    ratios = [1.9, 2.1, 2.0, 2.05]
    got = intervals.ratio_summary(ratios)
    logs = np.log(ratios)
    reference = stats.ttest_1samp(logs, 0.0).confidence_interval(0.95)
    assert got["ratio"] == pytest.approx(math.exp(logs.mean()))
    assert (got["low"], got["high"]) == pytest.approx((math.exp(reference.low),
                                                       math.exp(reference.high)))
    assert got["verdict"] == "higher"
    assert intervals.ratio_summary([0.97, 1.04, 1.01])["verdict"] == "tie"
