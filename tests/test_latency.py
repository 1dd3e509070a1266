"""utils.measurement.latency: the latency table's fit, prediction and cache (timings on tiny models only
check the plumbing; the prediction error on real models belongs to the benchmark)."""
import json

import numpy as np
import pytest

from utils import saved
from utils.measurement import latency as L
from utils.encoder import model as M
from helpers import random_model

TRUE = {"base": 2.0, "attention_fixed": 0.7, "head": 0.05, "ffn_fixed": 0.3, "neuron": 0.001}


def synthetic_rows(config, coefficients, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for name, (heads, neurons) in L.variants(config).items():
        value = L.predict({"latency_ms": coefficients}, [heads] * config.num_layers,
                          [neurons] * config.num_layers)
        rows.append({"variant": name, "heads": heads, "neurons": neurons,
                     "latency_ms": value + noise * rng.normal(),
                     "ms_per_example_batched": value / 10})
    return rows


def test_fit_recovers_the_coefficients_of_noiseless_timings():
    config = M.EncoderConfig(vocab_size=50, hidden_size=64, num_heads=[4] * 3,
                             intermediate_sizes=[128] * 3, head_size=16)
    table = L.fit_table(synthetic_rows(config, TRUE), config.num_layers)
    for key, value in TRUE.items():
        assert table["latency_ms"][key] == pytest.approx(value)
        assert table["ms_per_example_batched"][key] == pytest.approx(value / 10)


def test_fit_is_the_least_squares_line_numpy_polyfit_gives():
    config = M.EncoderConfig(vocab_size=50, hidden_size=64, num_heads=[4] * 2,
                             intermediate_sizes=[128] * 2, head_size=16)
    rows = synthetic_rows(config, TRUE, noise=0.2, seed=3)
    table = L.fit_table(rows, config.num_layers)["latency_ms"]
    base = next(r["latency_ms"] for r in rows if r["heads"] == r["neurons"] == 0)
    for kind, fixed, slope in (("heads", "attention_fixed", "head"),
                               ("neurons", "ffn_fixed", "neuron")):
        points = [(r[kind], (r["latency_ms"] - base) / 2) for r in rows if r[kind] > 0]
        b, a = np.polyfit(*np.array(points).T, deg=1)
        assert (table[fixed], table[slope]) == pytest.approx((a, b))


def test_prediction_adds_sublayers_and_a_removed_sublayer_costs_nothing():
    table = {"latency_ms": TRUE}
    assert L.predict(table, [0, 0], [0, 0]) == TRUE["base"]
    by_hand = TRUE["base"] + (0.7 + 0.05 * 3) + (0.3 + 0.001 * 100) + 0 + (0.3 + 0.001 * 7)
    assert L.predict(table, [3, 0], [100, 7]) == pytest.approx(by_hand)
    # removing the last head saves the fixed part as well
    assert L.predict(table, [1], [0]) - L.predict(table, [0], [0]) == pytest.approx(0.75)
    assert L.predict(table, [2], [0]) - L.predict(table, [1], [0]) == pytest.approx(0.05)


@pytest.mark.parametrize("call, match", [
    (lambda: L.predict({"latency_ms": TRUE}, [1, 2], [3]), "one of each per layer"),
    (lambda: L.predict({"latency_ms": TRUE}, [-1], [3]), ">= 0"),
    (lambda: L.predict({"latency_ms": TRUE}, [1], [3], cost="flops"), "cost = 'flops'"),
    (lambda: L.fit_table([{"heads": 1, "neurons": 0, "latency_ms": 1.0,
                           "ms_per_example_batched": 1.0}], 2), "no sublayers"),
    (lambda: L.grid(M.tiny_config(50), points=1), "points = 1"),
])
def test_bad_inputs_get_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_fit_needs_two_widths_per_sublayer():
    rows = [{"heads": 0, "neurons": 0, "latency_ms": 1.0, "ms_per_example_batched": 1.0},
            {"heads": 2, "neurons": 0, "latency_ms": 2.0, "ms_per_example_batched": 1.0},
            {"heads": 0, "neurons": 8, "latency_ms": 2.0, "ms_per_example_batched": 1.0},
            {"heads": 0, "neurons": 16, "latency_ms": 3.0, "ms_per_example_batched": 1.0}]
    with pytest.raises(ValueError, match="two or more heads widths"):
        L.fit_table(rows, 1)


def test_measure_and_cache(tokenizer, tmp_path, monkeypatch, caplog):
    config = M.tiny_config(len(tokenizer))
    texts = ["good game tonight", "worst service ever", "ok I guess"]
    path = tmp_path / "latency_table.json"
    table = L.cached_table(path, config, tokenizer, texts, max_length=16, batch_size=2,
                           rounds=1, points=2)
    record = json.loads(path.read_text())
    assert {r["variant"] for r in record["rows"]} == set(L.variants(config, 2))
    assert all(r["latency_ms"] > 0 and r["ms_per_example_batched"] > 0 for r in record["rows"])
    assert set(table) == set(L.COSTS) and set(table["latency_ms"]) == set(L.COEFFICIENTS)

    def fail(*args, **kwargs):
        raise AssertionError("measured again")
    monkeypatch.setattr(L, "measure", fail)
    assert L.cached_table(path, config, tokenizer, texts, max_length=16, batch_size=2,
                          rounds=1, points=2) == table          # same machine: the cache
    # a table written by an older fit: the cached timings are fitted again by this code
    stale = {**record, "table": {cost: {**TRUE, "ffn_fixed": -1.0} for cost in L.COSTS}}
    path.write_text(json.dumps(stale))
    assert L.cached_table(path, config, tokenizer, texts, max_length=16, batch_size=2,
                          rounds=1, points=2) == L.fit_table(record["rows"], config.num_layers)
    measured = []
    monkeypatch.setattr(L, "measure", lambda *a, **k: measured.append(1) or record["rows"])
    L.cached_table(path, config, tokenizer, texts, max_length=32, batch_size=2, rounds=1,
                   points=2)              # other shapes: measured again
    path.write_text("{not json")
    L.cached_table(path, config, tokenizer, texts, max_length=16, batch_size=2, rounds=1,
                   points=2)              # corrupt: measured again
    L.cached_table(path, config, tokenizer, texts, max_length=16, batch_size=2, rounds=1,
                   points=2, runtime="onnx")   # another runtime: measured again
    assert len(measured) == 3
    # another machine's table: measured again, unless any_machine (a recorded run repeated)
    path.write_text(json.dumps({**record, "key": {**record["key"], "cpu": "another CPU"}}))
    L.cached_table(path, config, tokenizer, texts, max_length=16, batch_size=2, rounds=1, points=2)
    assert len(measured) == 4
    path.write_text(json.dumps({**record, "key": {**record["key"], "cpu": "another CPU"}}))
    assert L.cached_table(path, config, tokenizer, texts, max_length=16, batch_size=2, rounds=1,
                          points=2, any_machine=True) == L.fit_table(record["rows"], config.num_layers)
    assert len(measured) == 4 and "another CPU" in caplog.records[-1].getMessage()
    L.cached_table(path, config, tokenizer, texts, max_length=32, batch_size=2, rounds=1,
                   points=2, any_machine=True)   # other shapes: measured again all the same
    assert len(measured) == 5
    messages = [r.getMessage() for r in caplog.records]
    assert any("another machine" in m for m in messages) and any("unreadable" in m for m in messages)


def test_prediction_check_times_the_compacted_models_and_reports_errors(tokenizer, tmp_path):
    from helpers import random_model
    config = M.tiny_config(len(tokenizer))
    model = random_model(config, seed=1)
    saved.save(model, tmp_path / "dense")
    # switch off every head of layer 0: compaction removes its attention sublayer
    for part in ("query", "key", "value"):
        kernel = M.prunable_kernels(model)[f"layer_0/attention/{part}"]
        kernel.assign(np.zeros(kernel.shape, "f4"))
    saved.save(model, tmp_path / "pruned")
    table = {cost: TRUE for cost in L.COSTS}
    rows = L.prediction_check(table, {"dense": tmp_path / "dense", "pruned": tmp_path / "pruned"},
                              tokenizer, ["good game", "bad day"], max_length=16, batch_size=2,
                              rounds=1, group_size=1)
    by = {r["model"]: r for r in rows}
    # one group per non-dense model, each with its own dense copy
    assert by["pruned"]["dense_latency_ms_in_group"] > 0
    assert by["dense"]["num_heads"] == config.num_heads
    assert by["pruned"]["num_heads"][0] == 0
    for row in rows:
        predicted = L.predict(table, row["num_heads"], row["intermediate_sizes"])
        assert row["latency_ms_predicted"] == pytest.approx(predicted)
        assert row["latency_ms_relative_error"] == pytest.approx(
            predicted / row["latency_ms_measured"] - 1)


def test_cli_names_a_missing_model_without_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        L.main(["--dense", str(tmp_path / "nothing"), "--out", str(tmp_path / "out.json")])
    assert exit_info.value.code == 2
    assert "nothing/model_spec.json is missing: run `make run` first" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def _brute_force(importance, alive, table, budget):
    """Every count per sublayer (top-k alive units), the best total importance that fits."""
    import itertools
    keys = sorted(alive)
    orders = {k: sorted(np.flatnonzero(alive[k]), key=lambda u: -importance[k][u]) for k in keys}
    best = -np.inf
    for counts in itertools.product(*[range(len(orders[k]) + 1) for k in keys]):
        heads = {k[0]: 0 for k in keys}
        neurons = dict(heads)
        for k, n in zip(keys, counts):
            (heads if k[1] == "heads" else neurons)[k[0]] = n
        layers = sorted(heads)
        if L.predict(table, [heads[i] for i in layers], [neurons[i] for i in layers]) <= budget:
            best = max(best, sum(importance[k][u] for k, n in zip(keys, counts)
                                 for u in orders[k][:n]))
    return best


@pytest.mark.parametrize("budget", [10.0, 17.0, 23.0, 31.0])
def test_select_under_cost_is_the_brute_force_optimum(budget):
    rng = np.random.default_rng(int(budget))
    table = {"latency_ms": {"base": 5.0, "attention_fixed": 3.0, "head": 1.0,
                            "ffn_fixed": 2.0, "neuron": 1.0}}   # integer costs: the DP is exact
    keys = [(0, "heads"), (1, "heads"), (0, "neurons"), (1, "neurons")]
    sizes = {(0, "heads"): 3, (1, "heads"): 3, (0, "neurons"): 4, (1, "neurons"): 4}
    importance = {k: rng.exponential(size=sizes[k]) for k in keys}
    alive = {k: np.ones(sizes[k], bool) for k in keys}
    alive[(1, "neurons")][2] = alive[(0, "heads")][0] = False       # already switched off
    off = L.select_under_cost(importance, alive, table, budget, step=1.0)
    for k in keys:
        assert not (off[k] & ~alive[k]).any()
    kept = {k: alive[k] & ~off[k] for k in keys}
    heads = [int(kept[(i, "heads")].sum()) for i in (0, 1)]
    neurons = [int(kept[(i, "neurons")].sum()) for i in (0, 1)]
    assert L.predict(table, heads, neurons) <= budget
    assert sum(importance[k][kept[k]].sum() for k in keys) == pytest.approx(
        _brute_force(importance, alive, table, budget))


def test_select_under_cost_empties_a_sublayer_when_its_fixed_part_buys_the_most():
    # two layers' FFNs of equal value per neuron; a budget that fits one FFN with all its
    # neurons, or both with fewer: with a large fixed part, one FFN is removed entirely
    table = {"latency_ms": {"base": 0.0, "attention_fixed": 0.0, "head": 0.0,
                            "ffn_fixed": 10.0, "neuron": 1.0}}
    importance = {(0, "neurons"): np.ones(10), (1, "neurons"): np.ones(10) * 1.01}
    alive = {k: np.ones(10, bool) for k in importance}
    off = L.select_under_cost(importance, alive, table, 20.0, step=1.0)
    assert off[(0, "neurons")].all() and not off[(1, "neurons")].any()


def test_select_under_cost_rejects_a_budget_below_the_base():
    table = {"latency_ms": dict(TRUE)}
    with pytest.raises(ValueError, match="below the cost of a model with no sublayers"):
        L.select_under_cost({(0, "heads"): np.ones(2)}, {(0, "heads"): np.ones(2, bool)},
                            table, 1.0)


@pytest.mark.parametrize("seed", range(40))
def test_nonnegative_line_is_scipys_nonnegative_least_squares(seed):
    from scipy.optimize import nnls
    rng = np.random.default_rng(seed)
    widths = np.sort(rng.choice(np.arange(1, 50), size=rng.integers(2, 6), replace=False))
    # lines of every sign, with noise, so every face of the constraint gets hit
    values = rng.normal(0, 1) + rng.normal(0, 0.05) * widths + rng.normal(0, 0.5, len(widths))
    expected, _ = nnls(np.stack([np.ones_like(widths, dtype=float), widths], axis=1), values)
    assert L.nonnegative_line(widths, values) == pytest.approx(tuple(expected), abs=1e-9)


def test_noisy_timings_never_give_a_negative_cost_and_the_knapsack_runs():
    """The CI failure of 2026-12-02: a tiny model's noisy timings fitted a negative FFN intercept,
    so a sublayer's predicted cost was negative and select_under_cost crashed."""
    config = M.EncoderConfig(vocab_size=50, hidden_size=64, num_heads=[4] * 2,
                             intermediate_sizes=[128] * 2, head_size=16)
    rows = synthetic_rows(config, {**TRUE, "ffn_fixed": 0.0}, noise=0.0)
    narrowest = min(r["neurons"] for r in rows if r["neurons"])
    for row in rows:   # the narrowest FFN timed fast: the unconstrained intercept is < 0
        if row["neurons"] == narrowest:
            row["latency_ms"] -= 0.2
    points = np.array([(r["neurons"], r["latency_ms"] - TRUE["base"]) for r in rows
                       if r["neurons"] and not r["heads"]])
    assert np.polyfit(*points.T, deg=1)[1] < 0          # the case this test is about
    table = L.fit_table(rows, config.num_layers)
    assert min(table["latency_ms"].values()) >= 0
    alive = {(0, "heads"): np.ones(4, bool), (0, "neurons"): np.ones(128, bool)}
    importance = {k: np.linspace(1, 2, len(v)) for k, v in alive.items()}
    off = L.select_under_cost(importance, alive, table, table["latency_ms"]["base"] + 0.5)
    kept = {k: int((~v).sum()) for k, v in off.items()}
    assert L.predict(table, [kept[(0, "heads")]], [kept[(0, "neurons")]]) <= (
        table["latency_ms"]["base"] + 0.5 + 1e-9)


def test_select_under_cost_names_a_table_with_negative_coefficients():
    table = {"latency_ms": {**TRUE, "ffn_fixed": -0.2}}
    with pytest.raises(ValueError, match="ffn_fixed.*negative.*re-measure"):
        L.select_under_cost({(0, "heads"): np.ones(2)}, {(0, "heads"): np.ones(2, bool)},
                            table, 10.0)


def test_speedups_divide_by_dense_timed_in_the_same_group():
    rows = [{"model": "dense", "latency_ms_measured": 10.0, "latency_ms_predicted": 9.0,
             "ms_per_example_batched_measured": 2.0, "ms_per_example_batched_predicted": 2.2,
             "dense_latency_ms_in_group": 10.0, "dense_ms_per_example_batched_in_group": 2.0},
            {"model": "small", "latency_ms_measured": 4.0, "latency_ms_predicted": 3.0,
             "ms_per_example_batched_measured": 0.5, "ms_per_example_batched_predicted": 0.4,
             "dense_latency_ms_in_group": 12.0, "dense_ms_per_example_batched_in_group": 3.0}]
    frame = L.speedups(rows).set_index("model")
    assert frame.loc["dense", ["speedup_batch1", "speedup_batched",
                               "predicted_speedup_batch1"]].tolist() == [1.0, 1.0, 1.0]
    # 12 ms and 3 ms from the dense copy timed beside "small", not dense's own group's 10 and 2
    assert frame.loc["small", "speedup_batch1"] == pytest.approx(3.0)
    assert frame.loc["small", "speedup_batched"] == pytest.approx(6.0)
    assert frame.loc["small", "predicted_speedup_batch1"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="no model named 'dense'"):
        L.speedups(rows[1:])
    with pytest.raises(ValueError, match="dense_latency_ms_in_group.*prediction_check"):
        L.speedups([{k: v for k, v in row.items() if k != "dense_latency_ms_in_group"}
                    for row in rows])


def test_speed_points_mark_the_validation_front_brute_force_finds():
    import pandas as pd
    rng = np.random.default_rng(0)
    n = 12
    timed = pd.DataFrame({"model": ["dense"] + [f"m{i}" for i in range(n)],
                          "speedup_batch1": np.r_[1.0, rng.uniform(1, 4, n)]})
    keys = {f"m{i}": ("block" if i % 2 else "block_latency", i / 100,
                      "sparsity targets" if i % 2 else "latency targets", str(i)) for i in range(n)}
    finals = pd.DataFrame([{"method": k[0], "target_sparsity": k[1], "sparsity_encoder_linear": 0.5,
                            "val_macro_f1": v, "macro_f1": -v}          # test reversed: unused
                           for k, v in zip(keys.values(), rng.uniform(0.7, 0.85, n))])
    speed = L.speed_points(timed, finals, keys)
    assert len(speed) == n and "dense" not in set(speed.model)
    s, v = speed.speedup_batch1.to_numpy(), speed.val_macro_f1.to_numpy()
    dominated = [any(s[j] >= s[i] and v[j] >= v[i] and (s[j] > s[i] or v[j] > v[i])
                     for j in range(n)) for i in range(n)]
    assert speed.on_validation_front.tolist() == [not d for d in dominated]
    assert speed.set_index("model").loc["m3", "curve"] == "sparsity targets"
    with pytest.raises(ValueError, match="no timings for"):
        L.speed_points(timed[timed.model != "m3"], finals, keys)


@pytest.mark.parametrize("runtime", ["onnx", "tflite"])
def test_measure_on_a_deployment_runtime_times_the_int8_export(tokenizer, runtime):
    """runtime="onnx" / "tflite": the uniform models are timed as a bundle runs them, exported
    with int8 weights to that runtime (predictions close to Keras'), one row per variant."""
    from utils import saved
    config = M.tiny_config(len(tokenizer))
    rows = L.measure(config, tokenizer, ["good game tonight", "worst service ever"],
                     max_length=16, batch_size=2, rounds=1, points=2, runtime=runtime)
    assert {r["variant"] for r in rows} == set(L.variants(config, 2))
    assert all(r["latency_ms"] > 0 and r["ms_per_example_batched"] > 0 for r in rows)
    model = random_model(config, seed=1)
    deployed = saved.in_memory(model, tokenizer, runtime)
    assert deployed.kind == runtime and deployed.quantization == "dynamic_range"
    keras_logits = saved.in_memory(model, tokenizer).predict_logits(["good game tonight"])
    np.testing.assert_allclose(deployed.predict_logits(["good game tonight"]), keras_logits,
                               atol=0.2 * np.abs(keras_logits).max())
    with pytest.raises(ValueError, match="runtime='coreml'"):
        saved.in_memory(model, tokenizer, "coreml")
