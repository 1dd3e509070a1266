"""scripts/compare_runs.py: the row-by-row check that regenerated checkpoints are the committed run's."""
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import compare_runs  # noqa: E402


def test_rows_are_matched_on_their_keys_and_differences_counted(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    rows = pd.DataFrame({"method": ["block", "block", "block"], "target_sparsity": [0.5, 0.5, 0.7],
                         "final": [False, True, True], "sparsity_encoder_linear": [0.5, 0.5, 0.7],
                         "val_macro_f1": [0.80, 0.82, 0.79], "macro_f1": [0.81, 0.83, 0.80]})
    rows.to_csv(a / "sparsity_sweep.csv", index=False)
    # the other run: rows in another order, one score 0.004 apart
    other = rows.iloc[::-1].copy()
    other.loc[other.target_sparsity == 0.7, "macro_f1"] = 0.804
    other.to_csv(b / "sparsity_sweep.csv", index=False)
    out = compare_runs.compare_rows(a, b)
    assert set(out) == {"sparsity_sweep.csv"}   # the other sweeps are in neither
    assert out["sparsity_sweep.csv"]["matched"] == 3 and out["sparsity_sweep.csv"]["identical"] == 2
    assert out["sparsity_sweep.csv"]["max_abs_difference"] == pytest.approx(0.004)
    rows.to_csv(b / "sparsity_sweep.csv", index=False)
    assert compare_runs.compare_rows(a, b)["sparsity_sweep.csv"]["identical"] == 3
