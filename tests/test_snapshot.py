"""utils.pruning.sweep.choose_snapshot: the pruned model the benchmark, the demo and exports use."""
import json

import pandas as pd
import pytest

from utils import saved
from utils.common import io
from utils.pruning import sweep

DENSE_VAL = 0.830


def write_results(root, val_f1_by_target, with_dirs=None, dense_val=DENSE_VAL):
    """Hand-made results/ (baseline.json + sparsity_sweep.csv) and checkpoints/pruned/."""
    results, snapshots = root / "results", root / "pruned"
    results.mkdir(parents=True, exist_ok=True)
    (results / "baseline.json").write_text(json.dumps(
        {"best_epoch": 2, "history": [{"epoch": 1, "val_macro_f1": 0.70},
                                      {"epoch": 2, "val_macro_f1": dense_val}]}))
    rows = []
    for target, val in val_f1_by_target.items():
        # before-retraining rows have no validation score and must be ignored
        rows.append({"method": "block", "target_sparsity": target, "retrained": False,
                     "sparsity_encoder_linear": target, "macro_f1": 0.5, "val_macro_f1": None})
        rows.append({"method": "block", "target_sparsity": target, "retrained": True,
                     "sparsity_encoder_linear": target + 0.001, "macro_f1": 0.99,
                     "val_macro_f1": val})
    # another method's better point never counts
    rows.append({"method": "heads", "target_sparsity": 0.9, "retrained": True,
                 "sparsity_encoder_linear": 0.9, "macro_f1": 0.9, "val_macro_f1": 0.9})
    pd.DataFrame(rows).to_csv(results / "sparsity_sweep.csv", index=False)
    for target in (val_f1_by_target if with_dirs is None else with_dirs):
        directory = snapshots / io.sparsity_dir_name(target)
        directory.mkdir(parents=True)
        (directory / "model_spec.json").write_text("{}")
    return results, snapshots


def test_sparsest_within_one_point_of_dense(tmp_path):
    results, snapshots = write_results(tmp_path, {0.3: 0.829, 0.5: 0.821, 0.6: 0.8195, 0.7: 0.80})
    chosen = sweep.choose_snapshot(results, snapshots)
    # 0.5 is 0.9 points below dense, 0.6 is 1.05 below: 0.5 is the sparsest within 1 point
    assert chosen.directory == snapshots / "sparsity_50"
    assert chosen.target_sparsity == 0.5 and chosen.within_tolerance
    assert chosen.dense_val_macro_f1 == DENSE_VAL
    assert "sparsity_50" in chosen.message and "within 1 point" in chosen.message
    # a wider tolerance moves to a sparser snapshot; test scores (macro_f1) play no part
    assert sweep.choose_snapshot(results, snapshots, tolerance_points=3.5).target_sparsity == 0.7


def write_latency_results(results, root, val_f1_and_sparsity_by_cost):
    """Hand-made results/latency_sweep.csv and checkpoints/pruned_latency/cost_XX/."""
    rows = []
    for cost, (val, sparsity) in val_f1_and_sparsity_by_cost.items():
        rows.append({"method": "block_latency", "target_sparsity": cost, "target_latency": cost,
                     "retrained": False, "sparsity_encoder_linear": sparsity,
                     "val_macro_f1": 0.99})   # before recovery: never a candidate
        rows.append({"method": "block_latency", "target_sparsity": cost, "target_latency": cost,
                     "retrained": True, "sparsity_encoder_linear": sparsity,
                     "val_macro_f1": val})
        directory = root / "pruned_latency" / io.cost_dir_name(cost)
        directory.mkdir(parents=True)
        (directory / "model_spec.json").write_text("{}")
    pd.DataFrame(rows).to_csv(results / "latency_sweep.csv", index=False)
    return root / "pruned_latency"


def test_latency_targeted_snapshots_compete_when_their_directory_is_given(tmp_path):
    results, snapshots = write_results(tmp_path, {0.3: 0.829, 0.5: 0.821, 0.7: 0.80})
    latency_dir = write_latency_results(results, tmp_path, {0.45: (0.8215, 0.74),
                                                            0.25: (0.79, 0.92)})
    # without the directory, only the sparsity curve counts, as before
    assert sweep.choose_snapshot(results, snapshots).directory.name == "sparsity_50"
    chosen = sweep.choose_snapshot(results, snapshots, latency_snapshots_dir=latency_dir)
    # cost_45 (74% sparse, 0.85 below dense) is sparser than sparsity_50; cost_25 is 4 below
    assert chosen.directory == latency_dir / "cost_45" and chosen.curve == "latency targets"
    assert chosen.sparsity_encoder_linear == 0.74 and chosen.within_tolerance
    assert chosen.record()["curve"] == "latency targets"
    # a latency curve that is not there (an older run) leaves the sparsity curve's choice
    (results / "latency_sweep.csv").unlink()
    assert sweep.choose_snapshot(results, snapshots, latency_snapshots_dir=latency_dir) \
        .directory.name == "sparsity_50"


def test_skips_snapshots_whose_directory_is_missing(tmp_path):
    results, snapshots = write_results(tmp_path, {0.3: 0.829, 0.5: 0.825}, with_dirs=[0.3])
    assert sweep.choose_snapshot(results, snapshots).directory.name == "sparsity_30"


def test_none_within_tolerance_says_so(tmp_path):
    results, snapshots = write_results(tmp_path, {0.3: 0.80, 0.5: 0.81, 0.7: 0.75})
    chosen = sweep.choose_snapshot(results, snapshots)
    assert not chosen.within_tolerance and chosen.directory.name == "sparsity_50"
    assert "no snapshot is within 1 point" in chosen.message and "2.0 points below" in chosen.message
    with pytest.raises(sweep.NoSnapshotError, match="no snapshot is within 1 point"):
        sweep.choose_snapshot(results, snapshots, strict=True)


def test_missing_results_name_the_notebook(tmp_path):
    with pytest.raises(sweep.NoSnapshotError, match="04_thresholding"):
        sweep.choose_snapshot(tmp_path, tmp_path)
    results, snapshots = write_results(tmp_path, {0.3: 0.82}, with_dirs=[])
    with pytest.raises(sweep.NoSnapshotError, match="no retrained 'block' snapshot"):
        sweep.choose_snapshot(results, snapshots)
    frame = pd.read_csv(results / "sparsity_sweep.csv").drop(columns="val_macro_f1")
    frame.to_csv(results / "sparsity_sweep.csv", index=False)
    with pytest.raises(sweep.NoSnapshotError, match="no val_macro_f1 column"):
        sweep.choose_snapshot(results, snapshots)


@pytest.mark.parametrize("bad", [-1, None, float("nan")])
def test_bad_tolerance(tmp_path, bad):
    with pytest.raises(ValueError, match="tolerance_points"):
        sweep.choose_snapshot(tmp_path, tmp_path, tolerance_points=bad)


def test_bench_cli_missing_results_is_an_error_not_a_traceback(tmp_path, capsys):
    """A results directory without notebook 04's sweep: one line naming the notebook (data
    splits present, so the check of --data passes, as on a machine that ran notebook 01)."""
    from utils.face import bench
    data, results = tmp_path / "data", tmp_path / "results"
    data.mkdir()
    results.mkdir()
    for split in ("train", "validation", "test"):
        (data / f"{split}.csv").write_text("text,label\n")
    (results / "baseline.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--dense", str(tmp_path), "--results-dir", str(results),
                    "--snapshots-dir", str(tmp_path), "--data", str(data)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lacks sparsity_sweep.csv" in err and "04" in err
    assert len(err.strip().splitlines()) == 1


def test_sweep_val_scores_are_the_saved_snapshots_own(tokenizer, tmp_path):
    """val_macro_f1 of a retrained point is train.evaluate of the saved model on validation."""
    from helpers import random_model, toy_dataset
    from utils.encoder import model as model_lib
    from utils.pruning import block as pruning
    from utils.training import train
    model = random_model(model_lib.tiny_config(tokenizer.vocab_size))
    data = toy_dataset(n_train=64, n_val=32)
    config = pruning.PruningConfig(num_blocks=1, mode="inner")
    retrain = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16)
    frame = sweep.threshold_sweep(model, tokenizer, data, config, [0.0, 0.5], retrain_config=retrain,
                                  save_dir=tmp_path, progress=False)
    retrained = frame[frame.retrained]
    assert list(retrained.target_sparsity) == [0.5] and frame.val_macro_f1.notna().all()
    snapshot = saved.load_model(tmp_path / "sparsity_50")
    expected = train.evaluate(snapshot, tokenizer, data["validation"], max_length=16)["macro_f1"]
    assert retrained.val_macro_f1.iloc[0] == pytest.approx(expected, abs=1e-9)


def test_hidden_distillation_choice_is_made_on_validation():
    from utils.pruning import sweep
    rows = [{"method": "block", "hidden_alpha": 0.0, "val_macro_f1": 0.80, "macro_f1": 0.90},
            {"method": "block", "hidden_alpha": 0.1, "val_macro_f1": 0.82, "macro_f1": 0.70},
            {"method": "block", "hidden_alpha": 1.0, "val_macro_f1": 0.82, "macro_f1": 0.99},
            {"method": "ffn_neurons", "hidden_alpha": 0.0, "val_macro_f1": 0.81, "macro_f1": 0.1},
            {"method": "ffn_neurons", "hidden_alpha": 1.0, "val_macro_f1": 0.79, "macro_f1": 0.9}]
    chosen = sweep.hidden_distillation_choice(rows)
    assert chosen["block"]["hidden_alpha"] == 0.1 and chosen["block"]["helps"]   # tie: smaller
    assert chosen["block"]["val_gain_points"] == pytest.approx(2.0)
    assert chosen["ffn_neurons"] == {"hidden_alpha": 0.0, "val_macro_f1": 0.81,
                                     "val_gain_points": 0.0, "helps": False}
    with pytest.raises(ValueError, match="no row with hidden_alpha = 0"):
        sweep.hidden_distillation_choice(rows[1:3])


@pytest.mark.parametrize("target, kind, name", [(0.7, "sparsity", "sparsity_70"),
                                                (0.05, "sparsity", "sparsity_05"),
                                                (0.45, "cost", "cost_45")])
def test_snapshot_directory_names_read_back(target, kind, name, tmp_path):
    write = io.sparsity_dir_name if kind == "sparsity" else io.cost_dir_name
    assert write(target) == name
    assert io.snapshot_target(tmp_path / name) == (kind, pytest.approx(target))
    assert io.snapshot_target(f"{tmp_path / name}/") == (kind, pytest.approx(target))
    assert io.snapshot_target(tmp_path / f"{name}_old") is None
    assert io.snapshot_target(tmp_path / "best") is None


def test_the_far_targets_snapshot_is_the_sparsest_within_two_points_if_sparser(tmp_path):
    """The benchmark's second snapshot (utils.face.bench.far_snapshot): chosen on validation
    with the far deployment target's tolerance, and only when sparser than the shipped one."""
    from types import SimpleNamespace

    from utils.face import bench
    results, snapshots = write_results(tmp_path, {0.3: 0.829, 0.5: 0.821, 0.6: 0.8195,
                                                  0.7: 0.812, 0.8: 0.79})
    args = SimpleNamespace(results_dir=results, snapshots_dir=snapshots,
                           latency_snapshots_dir=None)
    shipped = sweep.choose_snapshot(results, snapshots)
    far = bench.far_snapshot(shipped, args)
    # 0.7 is 1.8 points below dense (within 2), 0.8 is 4 below
    assert shipped.target_sparsity == 0.5 and far.target_sparsity == 0.7
    assert "within 2 point" in far.message
    results, snapshots = write_results(tmp_path / "same", {0.5: 0.821, 0.7: 0.79})
    args = SimpleNamespace(results_dir=results, snapshots_dir=snapshots,
                           latency_snapshots_dir=None)
    assert bench.far_snapshot(sweep.choose_snapshot(results, snapshots), args) is None
