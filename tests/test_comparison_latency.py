"""timing.time_compacted in groups (bounded memory, dense re-timed in every group) and
attach_latency's in-group speedups. Tiny random models, 4 texts, one round: timings are only
checked for shape and sign, never for speed."""
import dataclasses
import gc
import re
import weakref

import numpy as np
import pandas as pd
import pytest

from utils import saved
from utils.face import comparison
from scipy import stats

from utils.measurement import dominance, intervals
from utils.measurement import timing
from utils.compression import compact as compact_lib
from utils.encoder import model as model_lib
from helpers import TWEETS, random_model

TEXTS = TWEETS[:4]
OLD_COLUMNS = ["variant", "parameters", "nonzero_parameters", "heads", "ffn_neurons",
               "latency_ms_median", "latency_ms_p90", "throughput_ex_per_s"]
IN_GROUP = ["dense_latency_ms_in_group", "dense_throughput_in_group"]


def one_layer_config(tokenizer):
    """`tiny_config` cut to one layer (2 heads x 16, FFN 64): half the build/trace time."""
    return dataclasses.replace(model_lib.tiny_config(len(tokenizer)), num_heads=[2],
                               intermediate_sizes=[64])


def masked_model(config, seed, heads=0, neurons=0):
    """A random model with its first `heads` heads (attention-output rows) and first `neurons`
    FFN neurons (output rows) zeroed: compaction removes them."""
    model = random_model(config, seed=seed)
    kernels = model_lib.prunable_kernels(model)
    for name, rows in (("layer_0/attention/output", slice(0, heads * config.head_size)),
                       ("layer_0/ffn/output", slice(0, neurons))):
        value = np.asarray(kernels[name]).copy()
        value[rows] = 0
        kernels[name].assign(value)
    return model


GROUP_SIZE = 2


@pytest.fixture(scope="module")
def grouped_run(tmp_path_factory, tokenizer):
    """One `time_compacted` run, group_size 2, over dense and 5 variants (dense in the middle of
    the order; one a keras model object the caller keeps), with `compact_model` and
    `time_variants` wrapped to count the compacted models alive (weakrefs, after gc)."""
    root = tmp_path_factory.mktemp("latency_models")
    config = one_layer_config(tokenizer)
    variants = {}
    for name, seed, heads, neurons in (("v0", 1, 1, 0), ("v1", 2, 0, 16), ("dense", 0, 0, 0)):
        saved.save(masked_model(config, seed, heads, neurons), root / name)
        variants[name] = root / name
    held = masked_model(config, 9, heads=1)
    variants["held"] = held
    for name, seed, heads, neurons in (("v2", 3, 1, 8), ("v3", 4, 0, 0)):
        saved.save(masked_model(config, seed, heads, neurons), root / name)
        variants[name] = root / name

    compacted, live_before_compact, timed = [], [], []
    real_compact, real_time = compact_lib.compact_model, timing.time_variants

    def live():
        gc.collect()
        return sum(ref() is not None for ref in compacted)

    def tracking_compact(model):
        live_before_compact.append(live())
        out = real_compact(model)
        compacted.append(weakref.ref(out))
        return out

    def tracking_time(loaded, *args, **kwargs):
        timed.append((list(loaded), live()))
        return real_time(loaded, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compact_lib, "compact_model", tracking_compact)
        patch.setattr(timing, "time_variants", tracking_time)
        frame = timing.time_compacted(variants, tokenizer, TEXTS, rounds=1, batch_size=2,
                                          group_size=GROUP_SIZE)
    return {"frame": frame, "variants": variants, "held": held, "timed": timed,
            "live_before_compact": live_before_compact, "live_after": live()}


def test_time_compacted_in_groups_rows_in_order(grouped_run, tokenizer):
    frame, variants, held = grouped_run["frame"], grouped_run["variants"], grouped_run["held"]
    assert list(frame.variant) == list(variants)
    assert list(frame.columns) == OLD_COLUMNS + IN_GROUP + ["latency_speedup_rounds"]
    rows = frame.set_index("variant")
    # each round's speedup over the dense copy of its group (one round here: the medians' ratio)
    assert intervals.parse_rounds(rows.loc["dense", "latency_speedup_rounds"]) == [1.0]
    for name in ("v0", "v1", "v2", "v3"):
        (speedup,) = intervals.parse_rounds(rows.loc[name, "latency_speedup_rounds"])
        assert speedup == pytest.approx(rows.loc[name, "dense_latency_ms_in_group"]
                                        / rows.loc[name, "latency_ms_median"], rel=1e-3)
    timings = rows[["latency_ms_median", "latency_ms_p90", "throughput_ex_per_s"] + IN_GROUP]
    assert np.isfinite(timings.to_numpy()).all() and (timings.to_numpy() > 0).all()
    assert (rows.dense_latency_ms_in_group > 0).all()
    # the dense row reports itself (median over the 3 groups)
    assert rows.loc["dense", "dense_latency_ms_in_group"] == rows.loc["dense", "latency_ms_median"]
    assert (rows.loc["dense", "dense_throughput_in_group"]
            == rows.loc["dense", "throughput_ex_per_s"])
    # variants of one group share their dense numbers
    assert (rows.loc["v0", "dense_latency_ms_in_group"]
            == rows.loc["v1", "dense_latency_ms_in_group"])
    # every variant was compacted: removed heads / neurons show up
    assert tuple(rows.loc["dense", ["heads", "ffn_neurons"]]) == (2, 64)
    assert tuple(rows.loc["v0", ["heads", "ffn_neurons"]]) == (1, 64)
    assert tuple(rows.loc["v1", ["heads", "ffn_neurons"]]) == (2, 48)
    assert tuple(rows.loc["v2", ["heads", "ffn_neurons"]]) == (1, 56)
    assert rows.loc["held", "heads"] == 1
    assert rows.loc["v3", "parameters"] == rows.loc["dense", "parameters"]
    # the caller's model is untouched and still usable after its group was released
    assert held.encoder_config.num_heads == [2]
    logits = saved.in_memory(held, tokenizer).predict_logits(TEXTS)
    assert logits.shape == (4, 3) and np.isfinite(logits).all()


def test_time_compacted_keeps_at_most_group_size_plus_one_models_alive(grouped_run):
    timed, before = grouped_run["timed"], grouped_run["live_before_compact"]
    # groups of non-dense variants in `variants` order, each timed together with dense
    assert [names for names, _ in timed] == [["dense", "v0", "v1"], ["dense", "held", "v2"],
                                             ["dense", "v3"]]
    assert [alive for _, alive in timed] == [3, 3, 2]
    # dense + each group member compacted; a new group starts with nothing alive
    assert len(before) == 3 + 3 + 2
    assert [before[i] for i in (0, 3, 6)] == [0, 0, 0]
    assert max(before) + 1 <= GROUP_SIZE + 1
    assert grouped_run["live_after"] == 0                 # everything released at the end


def test_attach_latency_uses_in_group_dense():
    points = pd.DataFrame([{"method": m, "target_sparsity": t, "retrained": True,
                            "sparsity_encoder_linear": t, "sparsity_total": t / 2,
                            "accuracy": 0.8, "macro_f1": 0.8, "macro_recall": 0.8}
                           for m, t in (("block", 0.5), ("block", 0.7), ("magnitude", 0.5))])
    keys = {"dense": ("dense", 0.0), "block @ 50%": ("block", 0.5),
            "block @ 70%": ("block", 0.7), "magnitude @ 50%": ("magnitude", 0.5)}
    latency = pd.DataFrame({
        "variant": ["dense", "block @ 50%", "block @ 70%", "magnitude @ 50%"],
        "parameters": [100, 60, 40, 100],
        "latency_ms_median": [10.0, 6.0, 5.0, 12.0],
        "latency_ms_p90": [11.0, 7.0, 6.0, 13.0],
        "throughput_ex_per_s": [100.0, 150.0, 260.0, 90.0],
        # dense timed at 9 / 12 ms in the two groups (the dense row: their median, 10 here)
        "dense_latency_ms_in_group": [10.0, 9.0, 9.0, 12.0],
        "dense_throughput_in_group": [100.0, 110.0, 110.0, 80.0]})
    dense_metrics = {"accuracy": 0.9, "macro_f1": 0.85, "macro_recall": 0.84}
    merged = comparison.attach_latency(points, latency, keys, dense_metrics).set_index("variant")
    order = list(latency.variant)
    expected = latency.set_index("variant").loc[order]
    np.testing.assert_allclose(
        merged.loc[order, "latency_speedup_vs_dense"],
        expected.dense_latency_ms_in_group.to_numpy() / expected.latency_ms_median.to_numpy())
    np.testing.assert_allclose(
        merged.loc[order, "throughput_speedup_vs_dense"],
        expected.throughput_ex_per_s.to_numpy() / expected.dense_throughput_in_group.to_numpy())
    assert merged.loc["dense", "latency_speedup_vs_dense"] == 1.0
    assert merged.loc["magnitude @ 50%", "latency_speedup_vs_dense"] == 1.0   # 12 vs 12 in-group
    # without the in-group columns: against the dense row, as before
    old = comparison.attach_latency(points, latency.drop(columns=IN_GROUP), keys,
                                    dense_metrics).set_index("variant")
    np.testing.assert_allclose(old.loc[order, "latency_speedup_vs_dense"],
                               10.0 / expected.latency_ms_median.to_numpy())
    np.testing.assert_allclose(old.loc[order, "throughput_speedup_vs_dense"],
                               expected.throughput_ex_per_s.to_numpy() / 100.0)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", None, True, np.float64(2.0)])
def test_time_compacted_rejects_bad_group_size(bad, tmp_path, tokenizer):
    variants = {"dense": tmp_path / "missing", "v": tmp_path / "missing_too"}
    with pytest.raises(ValueError, match=re.escape(f"group_size = {bad!r}: must be an int >= 1")):
        timing.time_compacted(variants, tokenizer, TEXTS, rounds=1, group_size=bad)


def test_time_compacted_needs_dense(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="no 'dense' entry"):
        timing.time_compacted({"v": tmp_path / "missing"}, tokenizer, TEXTS, rounds=1)


def pareto_row(method, variant, speedup, f1, final=True):
    return {"method": method, "variant": variant, "latency_speedup_vs_dense": speedup,
            "macro_f1": f1, "final": final}


def test_front_check_says_which_points_block_pruning_dominates():
    latency = pd.DataFrame([
        pareto_row("dense", "dense", 1.0, 0.85),
        pareto_row("block", "block @ 50%", 1.3, 0.84),
        pareto_row("block_latency", "block_latency @ 0.3x latency", 3.0, 0.80),
        # dominated: 0.95 x 3.1 = 2.945 <= 3.0 and 0.80 >= 0.802 - 0.003
        pareto_row("layers", "layers @ 70%", 3.1, 0.802),
        # too fast for any block point
        pareto_row("layers", "layers @ 90%", 4.0, 0.80),
        # fast enough (1.3 >= 0.95 x 1.2) but 0.84 < 0.845 - 0.003
        pareto_row("fisher_mask", "fisher_mask @ 50%", 1.2, 0.845),
        # below the floor: not counted
        pareto_row("cofi", "cofi @ 90%", 5.0, 0.70),
        # not final: not counted
        pareto_row("layers", "layers @ 50%, as pruned", 2.0, 0.83, final=False)])
    check = dominance.front_check(latency, floor=0.79).set_index("variant")
    assert list(check.index) == ["layers @ 70%", "layers @ 90%", "fisher_mask @ 50%"]
    assert check.dominated.tolist() == [True, False, False]
    assert check.loc["layers @ 70%", "block_variant"] == "block_latency @ 0.3x latency"
    assert check.loc["layers @ 90%", "block_variant"] == ""
    # not dominated: the most accurate block point that is fast enough is named
    assert check.loc["fisher_mask @ 50%", "block_variant"] == "block @ 50%"
    # dominated: the dominating point closest in speed is named
    relaxed = dominance.front_check(latency, floor=0.79, margin=0.01).set_index("variant")
    assert relaxed.loc["fisher_mask @ 50%", "dominated"]
    assert relaxed.loc["fisher_mask @ 50%", "block_variant"] == "block @ 50%"
    # a block point 0.1 points worse than required flips the verdict (mutation)
    latency.loc[2, "macro_f1"] = 0.798
    assert not dominance.front_check(latency, floor=0.79).set_index("variant").loc[
        "layers @ 70%", "dominated"]


def with_rounds(row, rounds):
    return {**row, "latency_speedup_rounds": intervals.format_rounds(rounds)}


def test_front_check_compares_speed_by_the_spread_of_the_rounds():
    """With per-round speedups a block point is at least as fast unless its rounds say it is
    slower (the 95% interval of the mean log ratio below 1), whatever a fixed ratio says."""
    other = with_rounds(pareto_row("fisher_mask", "fisher_mask @ 50%", 1.40, 0.84), [1.30, 1.50, 1.40])
    noisy = with_rounds(pareto_row("block", "block @ 50%", 1.25, 0.845), [1.35, 1.15, 1.25])
    slower = with_rounds(pareto_row("block", "block @ 60%", 1.38, 0.845), [1.28, 1.48, 1.38])
    # the noisy block point: 0.89x the median speedup (a fixed 0.95 ratio says slower), but the
    # rounds' ratios (1.04, 0.77, 0.89) cover 1: a tie, so it dominates
    assert dominance.speed_verdict(noisy, other) == "tie"
    check = dominance.front_check(pd.DataFrame([pareto_row("dense", "dense", 1.0, 0.85), noisy, other]),
                                  floor=0.79).iloc[0]
    assert check.dominated and check.speed_rule == "rounds" and check.block_variant == "block @ 50%"
    # slower in every round by 1.4%: below 1 beyond the spread, though 0.986 > 0.95
    assert dominance.speed_verdict(slower, other) == "lower"
    check = dominance.front_check(pd.DataFrame([slower, other]), floor=0.79).iloc[0]
    assert not check.dominated and check.block_variant == ""
    ratios = [a / b for a, b in zip([1.28, 1.48, 1.38], [1.30, 1.50, 1.40])]
    logs = np.log(ratios)
    high = np.exp(logs.mean() + stats.t.ppf(0.975, 2) * logs.std(ddof=1) / np.sqrt(3))
    assert high < 1   # the independent reference agrees
    # without rounds (records of older code) the fixed ratio decides, as before
    plain = dominance.front_check(pd.DataFrame([pareto_row("block", "b", 1.38, 0.845),
                                                pareto_row("fisher_mask", "f", 1.40, 0.84)]), floor=0.79).iloc[0]
    assert plain.dominated and plain.speed_rule == "ratio"


def test_latency_variants_find_cost_directories_for_latency_targets(tmp_path, tokenizer):
    config = one_layer_config(tokenizer)
    saved.save(random_model(config, seed=0), tmp_path / "dense")
    saved.save(random_model(config, seed=1), tmp_path / "lat" / "cost_30")
    saved.save(random_model(config, seed=2), tmp_path / "block" / "sparsity_50")
    points = pd.DataFrame([{"method": "block_latency", "target_sparsity": 0.3, "retrained": True},
                           {"method": "block", "target_sparsity": 0.5, "retrained": True},
                           {"method": "block", "target_sparsity": 0.7, "retrained": True}])
    variants, keys = comparison.latency_variants(
        points, {"block": tmp_path / "block", "block_latency": tmp_path / "lat"},
        tmp_path / "dense", cost_methods=("block_latency",))
    assert variants == {"dense": tmp_path / "dense",
                        "block_latency @ 0.3x latency": tmp_path / "lat" / "cost_30",
                        "block @ 50%": tmp_path / "block" / "sparsity_50"}
    assert keys["block_latency @ 0.3x latency"] == ("block_latency", 0.3)
