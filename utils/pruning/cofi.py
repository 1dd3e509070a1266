"""CoFi-style structured pruning with hard-concrete L0 gates, a peer of block pruning.

Xia, Zhong & Chen, "Structured Pruning Learns Compact and Accurate Models" (ACL 2022; github
princeton-nlp/CoFiPruning, models/l0_module.py and trainer/trainer.py), in this project's
masks format (`utils.pruning.baselines`).

**Gates.** One gate per attention head, per FFN neuron, per whole attention sublayer and per
whole FFN sublayer. Gate z multiplies what it gates. Here that is done exactly by scaling
weights: a head's rows of the attention-output kernel, a neuron's row of the FFN-output kernel,
and a whole sublayer's output kernel and bias. The forward pass is the model's own
(`stateless_call` with the gated values), so nothing is added to the saved model.

**The hard-concrete distribution** (Louizos et al. 2018), with CoFi's constants: temperature
beta = 2/3, stretch limits (-0.1, 1.1).
- Sample: z = clip(sigmoid((log u - log(1-u) + log_alpha) / beta) * 1.2 - 0.1, 0, 1).
- CDF of the stretched variable: Q(x) = sigmoid(logit((x + 0.1) / 1.2) * beta - log_alpha).
- P(z != 0) = 1 - Q(0).

**Expected size.** E[kept encoder-linear weights] = sum over layers of
P(attention sublayer) * sum_h P(head h) * 4 * hidden * head_size
+ P(FFN sublayer) * sum_j P(neuron j) * 2 * hidden. This is the matched quantity of the
comparison (CoFi also counts biases). Expected sparsity s_hat = 1 - E[kept] / all.

**Lagrangian.** lambda1 (s_hat - t) + lambda2 (s_hat - t)^2, with t rising linearly from 0 to
the target over the first `lagrangian_warmup` share of the steps. The lambdas take gradient
*ascent* steps (CoFi: AdamW with learning rate -reg_learning_rate), log_alpha descent steps
(AdamW, reg_learning_rate). log_alpha is clipped to [log 0.01, log 100] after each step. Init
follows CoFi: log_alpha = 10 for heads and whole sublayers, and log(1 - 0.5) - log(0.5) = 0 for
neurons (droprate_init 0.5).

**Masks.** The deterministic gates are CoFi's _deterministic_z, per layer. Round the expected
number of zeros, zero the lowest scores sigmoid(log_alpha / beta * 0.8), keep the others' soft
value. The kept gates' values are folded into the weights. If the result is less sparse than the
target (a short budget may not let the Lagrangian get there), the lowest-scoring remaining
heads and neurons are pruned until it is, and `record["forced_units"]` says how many.

Differences from the reference, all stated in the record:
- Hidden-dimension gates are not built (the compaction here removes heads and neurons, not
  hidden dims).
- Distillation is on logits, as for every method of the comparison; CoFi also distils hidden
  states layer by layer.
- The budget is the comparison's: `train_examples` tweets of pruning, then the common recovery.
  CoFi recommends 20 epochs of pruning and 20 of fine-tuning on large GLUE tasks.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time

import numpy as np

from utils.common import logs
from utils.data import batching
from utils.encoder import model as model_lib
from utils.pruning.block import apply_masks
from utils.pruning.units import head_units, neuron_units, units_masks
from utils.training import checkpoint
from utils.training.losses import task_loss
from utils.training.train import WarmupLinearDecay

log = logging.getLogger(__name__)

BETA = 2.0 / 3.0
LIMIT_A, LIMIT_B = -0.1, 1.1
EPSILON = 1e-6
MAGICAL_NUMBER = 0.8           # CoFi's scale of the deterministic scores (from Wang et al. 2020)
LOG_ALPHA_RANGE = (math.log(1e-2), math.log(1e2))
GATE_KINDS = ("heads", "neurons", "attention_layers", "ffn_layers")


# ------------------------------------------------------------------ the distribution

def reg_learning_rate_on_validation(record):
    """The reg_learning_rate of `record` (scripts/explore_cofi_reg_lr.py's
    results/exploratory/cofi_reg_lr.json: one run per rate at the same target and budget) whose
    pruned model scored the highest validation macro-F1 before recovery."""
    runs = [r for r in record.get("runs", []) if r.get("val_macro_f1_before_recovery") is not None]
    if not runs:
        raise ValueError("the record has no runs with val_macro_f1_before_recovery: rerun "
                         "scripts/explore_cofi_reg_lr.py")
    return float(max(runs, key=lambda r: r["val_macro_f1_before_recovery"])["reg_learning_rate"])


def _sigmoid(x, xp):
    """xp: numpy, or keras.ops (same names and signatures for what is used here)."""
    return 1.0 / (1.0 + xp.exp(-x))


def cdf_qz(x, log_alpha, xp=np):
    """P(stretched concrete <= x) (CoFi's cdf_qz), clipped to [1e-6, 1 - 1e-6]."""
    xn = (x - LIMIT_A) / (LIMIT_B - LIMIT_A)
    logits = math.log(xn) - math.log(1 - xn)
    return xp.clip(_sigmoid(logits * BETA - log_alpha, xp), EPSILON, 1 - EPSILON)


def prob_nonzero(log_alpha, xp=np):
    """P(z != 0) of each gate: the expected L0 norm's terms."""
    return 1.0 - cdf_qz(0.0, log_alpha, xp)


def sample_gates(log_alpha, u, xp=np):
    """Hard-concrete samples for uniform noise `u` in (0, 1) of log_alpha's shape."""
    s = _sigmoid((xp.log(u) - xp.log(1 - u) + log_alpha) / BETA, xp)
    return xp.clip(s * (LIMIT_B - LIMIT_A) + LIMIT_A, 0.0, 1.0)


def deterministic_gates(log_alpha):
    """CoFi's deterministic z for one group (a 1-D array): the expected number of zeros,
    rounded, set to 0 at the lowest scores; the rest keep sigmoid(log_alpha / beta * 0.8)."""
    log_alpha = np.asarray(log_alpha, np.float64)
    num_zeros = int(round(log_alpha.size - float(prob_nonzero(log_alpha).sum())))
    soft = _sigmoid(log_alpha / BETA * MAGICAL_NUMBER, np)
    if num_zeros > 0:
        soft[np.argsort(soft, kind="stable")[:num_zeros]] = 0.0
    return soft


# ------------------------------------------------------------------ expected size

def unit_costs(config):
    """Encoder-linear weights of one head and one FFN neuron."""
    return 4 * config.hidden_size * config.head_size, 2 * config.hidden_size


def expected_sparsity(log_alphas, config, xp=np):
    """1 - E[kept encoder-linear weights] / all of them, for log_alphas {kind: array}:
    heads [L, H], neurons [L, F], attention_layers [L], ffn_layers [L]."""
    head_cost, neuron_cost = unit_costs(config)
    p = {kind: prob_nonzero(value, xp) for kind, value in log_alphas.items()}
    kept = (xp.sum(p["attention_layers"] * xp.sum(p["heads"], axis=1)) * head_cost
            + xp.sum(p["ffn_layers"] * xp.sum(p["neurons"], axis=1)) * neuron_cost)
    total = config.num_layers * (config.num_heads[0] * head_cost
                                 + config.intermediate_sizes[0] * neuron_cost)
    return 1.0 - kept / total


def lagrangian(expected, target, lambda_1, lambda_2):
    return lambda_1 * (expected - target) + lambda_2 * (expected - target) ** 2


def warmup_target(target, step, warmup_steps):
    """CoFi's target schedule: 0 -> target linearly over warmup_steps, then target."""
    return target * min(1.0, step / warmup_steps) if warmup_steps > 0 else target


def initial_log_alphas(config, droprate_init=0.5, seed=0):
    """CoFi's init: N(10, 0.01) for heads and whole sublayers, N(logit(1 - droprate), 0.01)
    for neurons."""
    rng = np.random.default_rng(seed)
    layers, heads, width = config.num_layers, config.num_heads[0], config.intermediate_sizes[0]
    neuron_mean = math.log(1 - droprate_init) - math.log(droprate_init)
    return {"heads": rng.normal(10.0, 1e-2, (layers, heads)),
            "neurons": rng.normal(neuron_mean, 1e-2, (layers, width)),
            "attention_layers": rng.normal(10.0, 1e-2, layers),
            "ffn_layers": rng.normal(10.0, 1e-2, layers)}


# ------------------------------------------------------------------ gates on the weights

def _gated_slots(model):
    """Indices into model.trainable_variables of each layer's attention-output kernel / bias
    and FFN-output kernel / bias."""
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    slots = []
    for layer in model_lib.transformer_layers(model):
        attention, ffn = layer.attention.output_dense, layer.ffn.output_dense
        slots.append({"attention_kernel": index[id(attention.kernel)],
                      "attention_bias": index[id(attention.bias)],
                      "ffn_kernel": index[id(ffn.kernel)], "ffn_bias": index[id(ffn.bias)]})
    return slots


def gate_values(values, slots, gates, head_size, xp):
    """`values` (the trainable variables' values) with every gate applied to its weights:
    gates {kind: array} as in `expected_sparsity` (sampled or deterministic)."""
    values = list(values)
    for i, slot in enumerate(slots):
        head_rows = xp.repeat(gates["heads"][i], head_size) * gates["attention_layers"][i]
        values[slot["attention_kernel"]] = values[slot["attention_kernel"]] * head_rows[:, None]
        values[slot["attention_bias"]] = values[slot["attention_bias"]] * \
            gates["attention_layers"][i]
        neuron_rows = gates["neurons"][i] * gates["ffn_layers"][i]
        values[slot["ffn_kernel"]] = values[slot["ffn_kernel"]] * neuron_rows[:, None]
        values[slot["ffn_bias"]] = values[slot["ffn_bias"]] * gates["ffn_layers"][i]
    return values


def _check_uniform(config):
    if len(set(config.num_heads)) != 1 or len(set(config.intermediate_sizes)) != 1 \
            or 0 in config.num_heads or 0 in config.intermediate_sizes:
        raise ValueError("CoFi pruning starts from the dense model (every layer with the same "
                         f"widths), got heads {config.num_heads}, FFN {config.intermediate_sizes}")


# ------------------------------------------------------------------ training

def cofi_prune(model, tokenizer, dataset, target, train_config, train_examples,
               teacher_logits=None, distill_alpha=0.5, temperature=2.0,
               reg_learning_rate=0.01, lagrangian_warmup=0.1, droprate_init=0.5,
               freeze_embeddings=True, progress=False, checkpoint_dir=None):
    """Train `model` (dense, modified in place) with hard-concrete gates and the Lagrangian
    towards `target` on `train_examples` training tweets (batches of train_config.batch_size,
    AdamW at train_config's learning rate with warm-up/decay), distilled from
    `teacher_logits` (one row per training tweet). The deterministic gates are then folded
    into the weights and the pruned heads and neurons zeroed. Returns the record.
    checkpoint_dir: a checkpoint (`utils.training.checkpoint`) every tenth of the steps, from
    which a run of the same settings and start model resumes; removed when the run ends."""
    import keras
    import tensorflow as tf
    from keras import ops

    config = model.encoder_config
    _check_uniform(config)
    if not 0 < target < 1:
        raise ValueError(f"target sparsity must be in (0, 1), got {target}")
    if train_examples is None or train_examples < train_config.batch_size:
        raise ValueError(f"train_examples={train_examples}: CoFi needs at least one batch of "
                         f"{train_config.batch_size} tweets")
    if not 0 <= lagrangian_warmup < 1:
        raise ValueError(f"lagrangian_warmup={lagrangian_warmup}: a share of the steps in [0, 1)")
    keras.utils.set_random_seed(train_config.seed)
    batches, _ = batching.make_batches(
        tokenizer, dataset["train"]["text"], dataset["train"]["label"],
        train_config.max_length, train_config.batch_size, shuffle=True, seed=train_config.seed,
        teacher_logits=teacher_logits)
    steps = math.ceil(train_examples / train_config.batch_size)
    warmup_steps = int(lagrangian_warmup * steps)

    log_alphas = {k: tf.Variable(v.astype(np.float32), name=f"log_alpha_{k}")
                  for k, v in initial_log_alphas(config, droprate_init, train_config.seed).items()}
    lambdas = [tf.Variable(0.0, name="lambda_1"), tf.Variable(0.0, name="lambda_2")]
    trainable = [v for v in model.trainable_variables
                 if not (freeze_embeddings and "embeddings" in v.path
                         and "layer_norm" not in v.path)]
    frozen = {id(v) for v in model.trainable_variables} - {id(v) for v in trainable}
    slots = _gated_slots(model)
    schedule = WarmupLinearDecay(train_config.learning_rate,
                                 round(train_config.warmup_fraction * steps), steps)
    weights_optimizer = keras.optimizers.AdamW(schedule, weight_decay=train_config.weight_decay,
                                               global_clipnorm=train_config.max_grad_norm)
    weights_optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    gates_optimizer = keras.optimizers.AdamW(reg_learning_rate, weight_decay=0.0)
    lambdas_optimizer = keras.optimizers.AdamW(reg_learning_rate, weight_decay=0.0)
    weights_optimizer.build(trainable)
    gates_optimizer.build(list(log_alphas.values()))
    lambdas_optimizer.build(lambdas)
    all_trainable = model.trainable_variables
    kinds = list(GATE_KINDS)

    @tf.function(reduce_retracing=True)
    def train_step(inputs, labels, teacher, step_target):
        with tf.GradientTape() as tape:
            gates = {k: sample_gates(log_alphas[k], tf.random.uniform(
                tf.shape(log_alphas[k]), EPSILON, 1 - EPSILON), ops) for k in kinds}
            values = gate_values([v.value for v in all_trainable], slots, gates,
                                 config.head_size, ops)
            logits, non_trainable = model.stateless_call(
                values, [v.value for v in model.non_trainable_variables], inputs, training=True)
            y = {"label": labels, "teacher": teacher} if teacher is not None else labels
            task = task_loss(y, logits, distill_alpha if teacher is not None else 0.0,
                             temperature)
            expected = expected_sparsity({k: log_alphas[k] for k in kinds}, config, ops)
            constraint = lagrangian(expected, step_target, lambdas[0], lambdas[1])
            loss = task + constraint
        grads = tape.gradient(loss, trainable + [log_alphas[k] for k in kinds] + lambdas)
        n = len(trainable)
        weights_optimizer.apply_gradients(zip(grads[:n], trainable))
        gates_optimizer.apply_gradients(zip(grads[n:n + len(kinds)],
                                            [log_alphas[k] for k in kinds]))
        lambdas_optimizer.apply_gradients(zip([-g for g in grads[n + len(kinds):]], lambdas))
        for k in kinds:
            log_alphas[k].assign(tf.clip_by_value(log_alphas[k], *LOG_ALPHA_RANGE))
        for variable, value in zip(model.non_trainable_variables, non_trainable):
            variable.assign(value)   # dropout's seed state
        return task, expected, constraint

    settings = {"reg_learning_rate": reg_learning_rate, "lagrangian_warmup": lagrangian_warmup,
                "droprate_init": droprate_init, "beta": BETA, "limits": [LIMIT_A, LIMIT_B],
                "freeze_embeddings": freeze_embeddings, "distill_alpha": distill_alpha,
                "temperature": temperature,
                "not_built": ["hidden-dimension gates", "layer-wise hidden-state distillation"]}
    run = {"target": float(target), "steps": steps, "train": dataclasses.asdict(train_config),
           **{k: v for k, v in settings.items() if k != "not_built"}}
    # the loop's variables besides the model's weights, in a fixed order
    variables = [*weights_optimizer.variables, *gates_optimizer.variables,
                 *lambdas_optimizer.variables, *(log_alphas[k] for k in kinds), *lambdas]
    history, started, step, epoch, first = [], time.perf_counter(), 0, 0, 0
    seconds_before = 0.0
    source = checkpoint.weights_fingerprint(model) if checkpoint_dir is not None else None
    state = checkpoint.read_state(checkpoint_dir) if checkpoint_dir is not None else None
    if state is not None and checkpoint.resumes_from(state, source, checkpoint_dir):
        if state["run"] != json.loads(json.dumps(run)):
            raise ValueError(f"the CoFi checkpoint in {checkpoint_dir} was made with "
                             f"{state['run']}, not {run}; delete it or pass the same settings")
        state = checkpoint.restore(checkpoint_dir, model, variables)
        step, epoch, first = state["step"], state["epoch"], state["index"]
        history, seconds_before = state["history"], state["train_seconds"]
        for _ in range(epoch):
            batches.next_epoch()
        log.info("CoFi -> %.0f%%: resuming from %s at step %d of %d", 100 * target,
                 checkpoint_dir, step, steps)
    save_every = max(1, steps // 10)
    bar = logs.Progress(steps, f"CoFi -> {target:.0%}", log, enabled=progress)
    bar.update(step)
    while step < steps:
        for i in range(first, len(batches)):
            if step >= steps:
                break
            inputs, y = batches[i]
            teacher = y["teacher"] if isinstance(y, dict) else None
            labels = y["label"] if isinstance(y, dict) else y
            t = warmup_target(target, step, warmup_steps)
            task, expected, constraint = train_step(
                {k: tf.constant(v) for k, v in inputs.items()}, tf.constant(labels),
                None if teacher is None else tf.constant(teacher), tf.constant(t, tf.float32))
            if not np.isfinite(float(task)):
                raise FloatingPointError(f"CoFi: the task loss became {float(task)} at step "
                                         f"{step}; lower the learning rate")
            if step % max(1, steps // 20) == 0 or step == steps - 1:
                history.append({"step": step, "task_loss": float(task),
                                "expected_sparsity": float(expected), "target": t,
                                "lagrangian": float(constraint),
                                "lambda_1": float(lambdas[0].numpy()),
                                "lambda_2": float(lambdas[1].numpy())})
            step += 1
            bar.update(1)
            if checkpoint_dir is not None and step % save_every == 0 and step < steps:
                checkpoint.save(checkpoint_dir, model, {
                    "step": step, "epoch": epoch, "index": i + 1, "history": history,
                    "train_seconds": seconds_before + time.perf_counter() - started,
                    "source": source, "run": run}, variables)
        batches.next_epoch()
        epoch, first = epoch + 1, 0
    record = fold_gates(model, {k: v.numpy() for k, v in log_alphas.items()}, target)
    record.update(history=history, steps=steps, train_examples=steps * train_config.batch_size,
                  train_seconds=seconds_before + time.perf_counter() - started,
                  frozen_variables=len(frozen), settings=settings)
    if checkpoint_dir is not None:   # the run is in its record now; its checkpoint is spent
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return record


def fold_gates(model, log_alphas, target):
    """Fold the deterministic gates of `log_alphas` into `model`'s weights and zero what they
    prune; then prune the lowest-scoring remaining heads/neurons until `target` is reached."""
    config = model.encoder_config
    gates = {kind: np.stack([deterministic_gates(row) for row in log_alphas[kind]])
             for kind in ("heads", "neurons")}
    for kind in ("attention_layers", "ffn_layers"):
        gates[kind] = np.array([deterministic_gates(np.array([a]))[0]
                                for a in log_alphas[kind]])
    values = [np.asarray(v) for v in model.trainable_variables]
    values = gate_values(values, _gated_slots(model), gates, config.head_size, np)
    for variable, value in zip(model.trainable_variables, values):
        variable.assign(value)
    # what the gates removed, as whole units (a sublayer gate of 0 removes all its units)
    kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
    heads, neurons = head_units(kernels, config.head_size), neuron_units(kernels)
    head_off = gates["heads"] * gates["attention_layers"][:, None] == 0
    neuron_off = gates["neurons"] * gates["ffn_layers"][:, None] == 0
    pruned = [u for u in heads if head_off[u.key]] + [u for u in neurons if neuron_off[u.key]]
    total = sum(np.size(k) for k in kernels.values())
    removed = sum(u.size(kernels) for u in pruned)
    # short of the target: the lowest scores among what is left (per weight of the unit)
    score = {kind: prob_nonzero(np.asarray(log_alphas[kind], np.float64))
             for kind in GATE_KINDS}
    rest = sorted([(score["heads"][u.key] * score["attention_layers"][u.key[0]], u)
                   for u in heads if not head_off[u.key]]
                  + [(score["neurons"][u.key] * score["ffn_layers"][u.key[0]], u)
                     for u in neurons if not neuron_off[u.key]], key=lambda p: (p[0], p[1].key))
    forced = 0
    while removed < target * total - 1e-6 and rest:
        _, unit = rest.pop(0)
        pruned.append(unit)
        removed += unit.size(kernels)
        forced += 1
    masks = units_masks(kernels, pruned)
    apply_masks(model, masks)
    return {"gates_removed_units": len(pruned) - forced, "forced_units": forced,
            "sparsity_encoder_linear": removed / total,
            "expected_sparsity_at_end": float(expected_sparsity(
                {k: np.asarray(v, np.float64) for k, v in log_alphas.items()}, config)),
            "heads_kept": (~head_off).sum(1).tolist(),
            "attention_layers_kept": (gates["attention_layers"] > 0).astype(int).tolist(),
            "ffn_layers_kept": (gates["ffn_layers"] > 0).astype(int).tolist(),
            "neurons_kept": (~neuron_off).sum(1).tolist()}
