"""How much faster recovery is when it trains the compaction of a unit-pruned snapshot
(`sweep.recover`, via `compact.compacted_for_training`) instead of the masked full-width model
(the recovery before, `train.fine_tune` with the zeros masked): both variants of one recovery
(1,000 tweets, notebook 04's settings) and one validation pass, for the 50% and 70% snapshots of
notebook 03's block run, in this one process; then the steady-state time of a training step
(the same 16 batches, after a warm-up, the two variants alternating over 3 rounds). Writes
results/exploratory/compact_recovery.json.

    .venv/bin/python scripts/measure_compact_recovery.py
"""
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
from utils.compression import compact
from utils.data import corpus as data
from utils.common import io
from utils.encoder import hub
from utils.pruning import block as pruning
from utils import saved
from utils.pruning import sweep
from utils.training import train

EXAMPLES = 1000
tokenizer = hub.load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
dataset = data.load_splits(REPO / "data")
teacher = saved.load_model(REPO / "checkpoints/baseline/best")
sample, logits = sweep.recovery_data(dataset, tokenizer, teacher, EXAMPLES, 42, 64)
config = train.TrainConfig(learning_rate=1e-4, epochs=1, max_length=64, patience=1, seed=42)
distill = pruning.PruningConfig(lambda_group=0.0, lambda_polar=0.0, polarization="none",
                                distill_alpha=0.5, temperature=2.0)
rows = []
for target in ("sparsity_50", "sparsity_70"):
    for variant in ("masked full width", "compacted"):
        model = saved.load_model(REPO / "checkpoints/block_pruning/snapshots" / target)
        started = time.perf_counter()
        if variant == "compacted":
            state = sweep.recover(model, tokenizer, sample, config, logits, 0.5, 2.0)
            evaluated = compact.smallest_equivalent(model)
        else:
            state = pruning.penalized_fine_tune(model, tokenizer, sample, config, progress=False,
                                    masks=pruning.current_masks(model), pruning=distill,
                                    teacher_logits=logits)
            evaluated = model
        recovered = time.perf_counter()
        val = train.evaluate(evaluated, tokenizer, dataset["validation"], max_length=64)
        rows.append({"snapshot": target, "variant": variant, "recovery_examples": EXAMPLES,
                     "recover_seconds": recovered - started, "train_seconds": state["train_seconds"],
                     "validation_pass_seconds": time.perf_counter() - recovered,
                     "val_macro_f1": val["macro_f1"]})
        print(rows[-1], flush=True)

import numpy as np
from utils.data import batching
batches, _ = batching.make_batches(tokenizer, sample["train"]["text"], sample["train"]["label"],
                                   max_length=64, batch_size=32, shuffle=True, seed=42)
STEPS, ROUNDS = 16, 3
steady = []
for target in ("sparsity_50", "sparsity_70"):
    full = saved.load_model(REPO / "checkpoints/block_pruning/snapshots" / target)
    variants = {"masked full width": full, "compacted": compact.compact_model(full)}
    times = {name: [] for name in variants}
    for name, model in variants.items():
        masks = pruning.current_masks(model)
        train.compile_for_training(model, config, STEPS, pruning.masks_by_variable_path(model, masks))
        model.fit(train.fit_input(batches), epochs=1, steps_per_epoch=4, verbose=0)   # trace
    for _ in range(ROUNDS):
        for name, model in variants.items():
            started = time.perf_counter()
            model.fit(train.fit_input(batches), epochs=1, steps_per_epoch=STEPS, verbose=0)
            times[name].append((time.perf_counter() - started) / STEPS)
    for name in variants:
        steady.append({"snapshot": target, "variant": name,
                       "step_seconds_median": float(np.median(times[name])),
                       "step_seconds": times[name]})
    steady[-1]["speedup_vs_masked"] = steady[-2]["step_seconds_median"] / steady[-1]["step_seconds_median"]
    print(steady[-2:], flush=True)
out = REPO / "results/exploratory/compact_recovery.json"
io.write_json(out, {"rows": rows, "steady_state": steady, "git_commit": io.git_commit(),
                    "note": "timings of one process on this machine; compare within it"})
print(f"wrote {out}")
