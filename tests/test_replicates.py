"""The replicate tables of notebook 12 (utils.face.replicates) against direct computations."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from utils.face import replicates


def rows_of(points):
    """Recovered rows from {(method, target, seed): (test, val, seconds)}."""
    return pd.DataFrame([{"method": m, "target_sparsity": t, "seed": s, "final": True, "retrained": True,
                          "macro_f1": test, "val_macro_f1": val, "sparsity_encoder_linear": t + 0.001,
                          "train_examples_total": 1000, "train_seconds": sec}
                         for (m, t, s), (test, val, sec) in points.items()])


BLOCK = {0.5: [0.84, 0.83, 0.845], 0.7: [0.83, 0.82, 0.826], 0.9: [0.81, 0.80, 0.79]}
FISHER = {0.5: [0.835, 0.834, 0.84], 0.7: [0.80, 0.79, 0.795], 0.9: [0.70, 0.72, 0.71]}
SEEDS = (42, 43, 44)


def example_rows(block_seconds=600.0, fisher_seconds=300.0):
    points = {}
    for method, scores, seconds in (("block", BLOCK, block_seconds), ("fisher_mask", FISHER, fisher_seconds)):
        for target, values in scores.items():
            for seed, v in zip(SEEDS, values):
                points[(method, target, seed)] = (v, v - 0.01, seconds)
    return rows_of(points)


def test_point_table_is_the_mean_std_and_student_t_interval_over_seeds():
    table = replicates.point_table(example_rows(), 0.85, [0.5, 0.7, 0.9])
    row = table[(table.method == "block") & (table.level == 0.7)].iloc[0]
    x = np.array(BLOCK[0.7])
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert row.n == 3 and row.seeds == [42, 43, 44]
    assert row.macro_f1_mean == pytest.approx(x.mean())
    assert row.macro_f1_std == pytest.approx(x.std(ddof=1))
    assert (row.macro_f1_low, row.macro_f1_high) == pytest.approx((low, high))
    assert row.gap_points_mean == pytest.approx(100 * (0.85 - x.mean()))
    assert len(table) == 6


def test_the_table_keeps_only_recovered_points_at_the_levels():
    rows = example_rows()
    extra = rows.iloc[:3].assign(final=False, macro_f1=0.1)          # as saved: not a point
    other = rows.iloc[:3].assign(target_sparsity=0.6, macro_f1=0.2)   # not a level
    table = replicates.point_table(pd.concat([rows, extra, other]), 0.85, [0.5, 0.7, 0.9])
    assert len(table) == 6 and table.macro_f1_mean.min() > 0.5


def test_paired_differences_are_by_seed_with_scipys_paired_interval():
    paired = replicates.paired_table(example_rows(), [0.5, 0.7, 0.9])
    for level in (0.5, 0.7, 0.9):
        row = paired[paired.level == level].iloc[0]
        d = 100 * (np.array(BLOCK[level]) - np.array(FISHER[level]))
        low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
        assert row.method == "fisher_mask"
        assert row.test_diff_points == pytest.approx(d.mean())
        assert (row.test_diff_low, row.test_diff_high) == pytest.approx((low, high))
        expected = "higher" if low > 0 else "lower" if high < 0 else "tie"
        assert row.test_verdict == expected
    # 50%: +0.5, -0.4, +0.5 points -> the interval covers zero; 90%: always ahead by 8-11 points
    assert paired.set_index("level").test_verdict.to_dict() == {0.5: "tie", 0.7: "higher", 0.9: "higher"}


def test_pairing_uses_only_the_seeds_both_methods_have():
    rows = example_rows()
    rows = rows[~((rows.method == "fisher_mask") & (rows.seed == 44))]
    paired = replicates.paired_table(rows, [0.5])
    assert paired.iloc[0].seeds == [42, 43]


def test_block_targets_choose_on_mean_validation_among_sparser_snapshots():
    rows = example_rows()
    # a 0.6 snapshot better on validation than 0.5 on average, worse on test
    extra = rows_of({("block", 0.6, s): (0.70, 0.90, 1.0) for s in SEEDS})
    targets = replicates.block_targets(pd.concat([rows, extra]), 0.85)
    assert targets[">=50%"]["target_sparsity"] == 0.6
    assert targets[">=50%"]["gap_points"] == pytest.approx(15.0)
    assert targets[">=50%"]["met"] is False
    assert targets[">=70%"]["target_sparsity"] == 0.7
    gap = 100 * (0.85 - np.array(BLOCK[0.9]))
    assert targets[">=90%"]["gap_points"] == pytest.approx(gap.mean())
    assert targets[">=90%"]["met"] == (gap.mean() <= 2.5)


def test_recommendation_takes_the_cheapest_of_those_tied_on_validation():
    rows = example_rows(block_seconds=600.0, fisher_seconds=300.0)
    table = replicates.point_table(rows, 0.85, [0.5, 0.7])
    paired = replicates.paired_table(rows, [0.5, 0.7])
    chosen = replicates.recommendation(table, paired, [0.5, 0.7])
    assert chosen[0.5]["tied_on_validation"] == ["block", "fisher_mask"]
    assert chosen[0.5]["method"] == "fisher_mask"     # tied, and half the training time
    assert chosen[0.7]["method"] == "block"           # ahead on validation in every seed
    assert chosen[0.7]["tied_on_validation"] == ["block"]
    # when block is also the cheaper, the tie goes to block
    rows = example_rows(block_seconds=100.0, fisher_seconds=300.0)
    chosen = replicates.recommendation(replicates.point_table(rows, 0.85, [0.5]),
                                       replicates.paired_table(rows, [0.5]), [0.5])
    assert chosen[0.5]["method"] == "block"


def test_discussion_sentences_come_from_the_numbers():
    rows = example_rows()
    table = replicates.point_table(rows, 0.85, [0.5, 0.7, 0.9])
    paired = replicates.paired_table(rows, [0.5, 0.7, 0.9])
    text = replicates.discussion(table, paired, replicates.block_targets(rows, 0.85),
                                 replicates.recommendation(table, paired, [0.5, 0.7, 0.9]), SEEDS)
    assert "At 50%, block is tied with fisher_mask" in text
    assert "At 70%, block is ahead of fisher_mask" in text
    d = 100 * (np.array(BLOCK[0.7]) - np.array(FISHER[0.7]))
    assert f"{d.mean():+.2f} points" in text
    assert "Choose **fisher_mask** at 50%" in text


def test_block_cost_pro_rates_the_run_to_each_snapshot():
    rows = pd.DataFrame({"target_sparsity": [0.5, 0.5, 0.9], "retrained": [False, True, True],
                         "seconds": [5.0, 40.0, 30.0], "final": [False, True, True]})
    record = {"reached": [{"target": 0.5, "step": 100}, {"target": 0.9, "step": 300}],
              "train_seconds": 640.0}
    out = replicates.with_block_cost(rows, record, batch_size=32, run_examples=12800,
                                     retrain={"examples": 2000, "epochs": 2})
    assert list(out.train_examples_total) == [3200, 7200, 13600]
    assert list(out.train_seconds) == pytest.approx([160.0, 200.0, 510.0])
    assert not math.isnan(out.train_seconds.sum())
