"""Exploratory run of progressive unit pruning (utils.pruning.units) on the checkpoints of `make run`.

Committed verbatim as it ran on 2026-11-29 (code of branch issue12 at 42153e1, identical to
utils/pruning/units.py and utils/pruning/sweep.py of the merge e66ac46), with the paths of that session: the
work tree of the branch at /work/wt12, the repository with `make run`'s checkpoints at
/work/main, outputs to /tmp/prog (copied to results/exploratory/). Command:
    .venv/bin/python scripts/exploratory_progressive_pruning.py
Not part of make run / make study and not quoted in the report: evidence for issue 12, whose
notebook 03/04 work will run this method inside the pipeline.
"""
import sys, time
sys.path.insert(0, "/work/wt12")
from utils.data import corpus as data
from utils.common import io
from utils.encoder import hub
from utils import saved
from utils.pruning import sweep
from utils.training import train
from utils.pruning import units

TARGETS = [0.3, 0.5, 0.6, 0.7, 0.8, 0.9]
OUT = "/tmp/prog"
started = time.perf_counter()
dataset = data.load_splits("/work/main/data")
tok = hub.load_tokenizer(hub.DEFAULT_MODEL)
model = saved.load_model("/work/main/checkpoints/baseline/best")
teacher = train.predict_texts(model, tok, dataset["train"]["text"], max_length=64)
print(f"teacher logits {time.perf_counter() - started:.0f} s", flush=True)
cfg = train.TrainConfig(learning_rate=1e-4, epochs=1, batch_size=32, max_length=64, patience=1, seed=42)
pruner, state = units.progressive_prune(model, tok, dataset, TARGETS, cfg, f"{OUT}/snapshots",
                                        teacher_logits=teacher)
io.write_json(f"{OUT}/progressive.json", {"reached": pruner.reached, "history": state["history"],
                                          "train_seconds": state["train_seconds"], "ends": pruner.ends})
print("reached", pruner.reached, f"train {state['train_seconds']:.0f} s", flush=True)
retrain = train.TrainConfig(learning_rate=1e-4, epochs=1, max_length=64, patience=1, seed=42)
for target in TARGETS:
    frame = sweep.snapshot_sweep({target: f"{OUT}/snapshots/{sweep.sparsity_dir_name(target)}"}, tok,
                                 dataset, retrain, retrain_examples=4000, method="block_progressive")
    sweep.write_sweep_csv(frame, f"{OUT}/progressive_sweep.csv", append=True)
    print(frame[["target_sparsity", "retrained", "sparsity_encoder_linear", "val_macro_f1", "macro_f1",
                 "fully_removable_heads", "fully_removable_neurons"]].round(4).to_string(), flush=True)
print(f"total {time.perf_counter() - started:.0f} s", flush=True)
