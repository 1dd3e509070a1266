"""Does XLA (`TrainConfig.jit_compile=True`) pay for training on this CPU? The default is False
on CPU, which was never measured. In this one process, alternating the two settings:

1. a recovery-sized fine-tune (1,600 stratified training tweets, one epoch, distilled from
   fixed teacher logits as notebook 04's recovery, a 512-tweet validation pass at its end),
   timed whole, compilation included -- what a short job pays;
2. the steady-state time of a training step (the same 24 batches, after every padded shape
   has been traced), over 3 rounds -- what a long job pays per step.

Every model starts from the pretrained checkpoint notebook 02 fine-tunes (the compute of a
step does not depend on the weights' values), and the teacher logits are that model's own.
Writes results/exploratory/xla_cpu.json.

    .venv/bin/python scripts/measure_xla_cpu.py
"""
import dataclasses
import time
from pathlib import Path

import numpy as np

from utils.data import batching
from utils.data import corpus as data
from utils.common import io
from utils.encoder import hub
from utils.encoder import hf
from utils.pruning import block as pruning
from utils.pruning import sweep
from utils.training import train

REPO = Path(__file__).resolve().parent.parent
EXAMPLES, STEPS, ROUNDS = 1600, 24, 3
tokenizer = hub.load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
dataset = data.load_splits(REPO / "data")
dataset["validation"] = dataset["validation"].select(range(512))
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def start_model():
    return hf.from_pretrained(MODEL, num_labels=3)


teacher = start_model()
sample, logits = sweep.recovery_data(dataset, tokenizer, teacher, EXAMPLES, 42, 64)
base = train.TrainConfig(learning_rate=1e-4, epochs=1, max_length=64, patience=1, seed=42)
distill = pruning.PruningConfig(lambda_group=0.0, lambda_polar=0.0, polarization="none",
                                distill_alpha=0.5, temperature=2.0)
SETTINGS = (False, True)

jobs = []
for round_ in range(2):
    for jit in SETTINGS:
        model = start_model()
        started = time.perf_counter()
        state = pruning.penalized_fine_tune(model, tokenizer, sample, dataclasses.replace(base, jit_compile=jit),
                                progress=False, pruning=distill, teacher_logits=logits)
        jobs.append({"round": round_, "jit_compile": jit, "examples": EXAMPLES,
                     "wall_seconds": time.perf_counter() - started,
                     "train_seconds": state["train_seconds"],
                     "val_macro_f1": state["history"][-1]["val_macro_f1"]})
        print(jobs[-1], flush=True)

batches, _ = batching.make_batches(tokenizer, sample["train"]["text"], sample["train"]["label"],
                                   max_length=64, batch_size=32, shuffle=True, seed=42)
models = {}
for jit in SETTINGS:
    model = start_model()
    train.compile_for_training(model, dataclasses.replace(base, jit_compile=jit), STEPS)
    model.fit(train.fit_input(batches), epochs=1, steps_per_epoch=STEPS, verbose=0)   # trace
    models[jit] = model
times = {jit: [] for jit in SETTINGS}
for _ in range(ROUNDS):
    for jit, model in models.items():
        started = time.perf_counter()
        model.fit(train.fit_input(batches), epochs=1, steps_per_epoch=STEPS, verbose=0)
        times[jit].append((time.perf_counter() - started) / STEPS)
steady = {str(jit): {"step_seconds_median": float(np.median(t)), "step_seconds": t}
          for jit, t in times.items()}
steady["speedup_of_xla"] = steady["False"]["step_seconds_median"] / steady["True"]["step_seconds_median"]
print(steady, flush=True)

out = REPO / "results/exploratory/xla_cpu.json"
io.write_json(out, {"jobs": jobs, "steady_state": steady, "steps": STEPS, "rounds": ROUNDS,
                    "git_commit": io.git_commit(),
                    "note": "timings of one process on this machine; compare within it"})
print(f"wrote {out}")
