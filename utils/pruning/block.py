"""Block-structured pruning trained with a regularised loss (the project's core).

For every prunable kernel W of the encoder (Keras layout: shape (n_in, n_out), y = x @ W):

* K blocks. "row" groups: W is cut into K blocks of columns, and each row of each block
  (one input unit x the block's outputs) is a group -> norms of shape (n_in, K).
  "column" groups: W is cut into K blocks of rows, and each column of each block (the block's
  inputs x one output unit) is a group -> norms of shape (K, n_out). K=1: whole rows/columns.
  Note the layout: a Keras *column* is an output unit (a Hugging Face / PyTorch *row*). FFN
  neurons and attention heads are columns of the query/key/value/FFN-input kernels and rows of
  the attention-output/FFN-output kernels; "row+column" penalises them together with the
  hidden-dimension groups. "inner" (the default) groups only the removable direction: columns of the kernels that expand from the
  hidden size (query/key/value, FFN input) and rows of those that project back (attention
  output, FFN output). Row/column groups in the other direction are hidden dimensions of the
  residual stream: zeroing them hurts every layer that reads them and frees nothing.
* Group lasso: lambda_1 * sum over kernels and groups of ||group||_2 (optionally re-weighted by
  1 / (||group|| + 1e-3), Li et al. 2020).
* Polarisation: lambda_2 * sum of n(1-n) with n = ||group|| / max ||group|| of its kernel, which
  pushes every group towards "off" (0) or "on" (the kernel's largest norm) and makes the norm
  distribution bimodal. The literal proposal form sum theta(1-theta) over raw weights is kept as
  polarization="elementwise"; it equals sum(theta) - sum(theta^2), which is unbounded below and
  rewards growing weights (see tests and notebook 03).
* Threshold (Algorithm 1 of the proposal): groups with norm <= epsilon are zeroed; epsilon is
  absolute or chosen to reach a target sparsity, over all kernels or per kernel.
* Retraining with the masks fixed (`MaskedAdamW`): masked gradients and weights stay exactly 0.

`penalized_fine_tune` composes these into a fit of `utils.training.train.fine_tune`: the
wrapper whose loss holds the penalties and distillation, the masked optimizer, the callbacks.
"""
import dataclasses
import functools

import keras
import numpy as np
from keras import ops

from utils import saved
from utils.encoder import model as model_lib
from utils.training import train
from utils.training.losses import hidden_state_loss, per_replica, task_loss
from utils.training.train import AdamW, optimizer_steps

MODES = ("row", "column", "row+column", "inner")
# kernels whose columns are heads/neurons; the others (attention/output, ffn/output) have them as rows
EXPANDING_KERNELS = ("attention/query", "attention/key", "attention/value", "ffn/input")
POLARIZATIONS = ("normalized", "elementwise", "none")
REWEIGHT_EPS = 1e-3
_SQRT_EPS = 1e-12  # keeps d||g||/dg finite at g = 0


@dataclasses.dataclass
class PruningConfig:
    num_blocks: int = 1              # K
    mode: str = "inner"
    lambda_group: float = 1e-4       # lambda_1
    lambda_polar: float = 1e-4       # lambda_2
    polarization: str = "normalized"
    reweight: bool = False           # re-weighted group lasso (Li et al. 2020)
    reweight_every_steps: int = 200
    lambda_warmup_fraction: float = 0.1   # lambdas ramp linearly from 0 over this share of steps
    include_pooler: bool = False
    distill_alpha: float = 0.0       # weight of the KL term to the dense teacher; 0 = no KD
    temperature: float = 2.0
    hidden_alpha: float = 0.0        # weight of the layer-wise hidden-state MSE to the teacher

    def __post_init__(self):
        if isinstance(self.num_blocks, bool) or not isinstance(self.num_blocks, int) \
                or self.num_blocks < 1:
            raise ValueError(f"PruningConfig.num_blocks (K) = {self.num_blocks!r}: must be a "
                             "positive int")
        if self.mode not in MODES:
            raise ValueError(f"PruningConfig.mode = {self.mode!r}: must be one of {MODES}")
        if self.polarization not in POLARIZATIONS:
            raise ValueError(f"PruningConfig.polarization = {self.polarization!r}: must be one "
                             f"of {POLARIZATIONS}")
        for name in ("lambda_group", "lambda_polar"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"PruningConfig.{name} = {value!r}: must be a finite number "
                                 ">= 0")
        if not 0 <= self.lambda_warmup_fraction <= 1:
            raise ValueError(f"PruningConfig.lambda_warmup_fraction = "
                             f"{self.lambda_warmup_fraction!r}: must be in [0, 1]")
        if not 0 <= self.distill_alpha <= 1:
            raise ValueError(f"PruningConfig.distill_alpha = {self.distill_alpha!r}: must be "
                             "in [0, 1]")
        if not isinstance(self.hidden_alpha, (int, float)) or not np.isfinite(self.hidden_alpha) \
                or self.hidden_alpha < 0:
            raise ValueError(f"PruningConfig.hidden_alpha = {self.hidden_alpha!r}: must be a "
                             "finite number >= 0 (0: no hidden-state distillation)")
        if not self.temperature > 0:
            raise ValueError(f"PruningConfig.temperature = {self.temperature!r}: must be > 0")
        if not isinstance(self.reweight_every_steps, int) or self.reweight_every_steps < 1:
            raise ValueError(f"PruningConfig.reweight_every_steps = "
                             f"{self.reweight_every_steps!r}: must be a positive int")

    def group_kinds(self, name):
        return group_kinds(self.mode, name)


def group_kinds(mode, name):
    """Which groups a kernel called `name` (e.g. "layer_0/ffn/input") has under `mode`."""
    if mode == "row+column":
        return ("row", "column")
    if mode == "inner":
        if name.endswith(EXPANDING_KERNELS):
            return ("column",)
        if name.endswith(("attention/output", "ffn/output")):
            return ("row",)
        return ("row", "column")  # e.g. the pooler: hidden -> hidden
    return (mode,)


def check_divisible(shape, num_blocks, mode, name="kernel"):
    """K must divide the dimension that is cut into blocks."""
    n_in, n_out = shape
    for kind in group_kinds(mode, name):
        dim, dim_name = (n_out, "output") if kind == "row" else (n_in, "input")
        if dim % num_blocks:
            divisors = [k for k in range(1, min(dim, 64) + 1) if dim % k == 0]
            raise ValueError(f"K={num_blocks} does not divide the {dim_name} dimension ({dim}) "
                             f"of {name} {tuple(shape)}, needed for {kind} groups; choose K "
                             f"among {divisors}")


# ------------------------------------------------------------------ group norms and penalties

def group_norms(kernel, num_blocks, kind, xp=ops):
    """L2 norm of every group; "row" -> (n_in, K), "column" -> (K, n_out).

    Works on Keras tensors/variables (xp=keras.ops, differentiable) and numpy (xp=np).
    """
    n_in, n_out = kernel.shape
    if kind == "row":
        blocks = xp.reshape(kernel, (n_in, num_blocks, n_out // num_blocks))
        squares = xp.sum(blocks * blocks, axis=2)
    elif kind == "column":
        blocks = xp.reshape(kernel, (num_blocks, n_in // num_blocks, n_out))
        squares = xp.sum(blocks * blocks, axis=1)
    else:
        raise ValueError(f"group kind {kind!r}: must be 'row' or 'column'")
    return xp.sqrt(squares + _SQRT_EPS) if xp is ops else np.sqrt(squares)


def group_lasso_penalty(kernels, config, group_weights=None):
    """sum over kernels, kinds and groups of w_g * ||g||_2 (w_g = 1 without re-weighting)."""
    total = 0.0
    for name, kernel in kernels.items():
        for kind in config.group_kinds(name):
            norms = group_norms(kernel, config.num_blocks, kind)
            if group_weights is not None:
                norms = norms * group_weights[name][kind]
            total = total + ops.sum(norms)
    return total


def polarization_penalty(kernels, config):
    """The polarisation term; see the module docstring for the two forms."""
    total = 0.0
    if config.polarization == "none":
        return total
    for name, kernel in kernels.items():
        if config.polarization == "elementwise":
            total = total + ops.sum(kernel * (1.0 - kernel))
            continue
        for kind in config.group_kinds(name):
            norms = group_norms(kernel, config.num_blocks, kind)
            # The scale is a reference point, not something to optimise: without the
            # stop-gradient the cheapest way to lower n(1-n) would be to grow the largest group.
            scaled = norms / ops.stop_gradient(ops.max(norms))
            total = total + ops.sum(scaled * (1.0 - scaled))
    return total


def reweighting_factors(kernels, config):
    """1 / (||g|| + 1e-3) for every group (numpy), recomputed every few hundred steps."""
    return {name: {kind: 1.0 / (group_norms(np.asarray(k), config.num_blocks, kind, xp=np)
                                + REWEIGHT_EPS)
                   for kind in config.group_kinds(name)}
            for name, k in kernels.items()}


# ------------------------------------------------------------------ regularised training

class PenalizedClassifier(keras.Model):
    """Wraps a classifier so that `fit` minimises task loss + ramp * (l1 * GL + l2 * P).

    The task loss is cross-entropy, or with distillation (1 - a) * CE + a * T^2 * KL(teacher ||
    student) on temperature-softened logits; teacher logits arrive with the labels as
    y = {"label", "teacher"}. With config.hidden_alpha > 0, hidden_alpha * `hidden_state_loss`
    to `teacher` (the dense model, run in the step, frozen) is added: pruning keeps the hidden
    size and the layers, so student layer l is distilled towards teacher layer l (CoFi's
    layer distillation with the identity layer map and no learned transformation).
    Each term is reported in the training logs.
    """

    def __init__(self, classifier, config, total_steps, teacher=None, **kwargs):
        super().__init__(**kwargs)
        if config.hidden_alpha > 0:
            if teacher is None:
                raise ValueError(f"PruningConfig.hidden_alpha = {config.hidden_alpha}: "
                                 "hidden-state distillation needs teacher= (the dense model)")
            widths = (teacher.encoder_config.num_layers, teacher.encoder_config.hidden_size)
            if widths != (classifier.encoder_config.num_layers,
                          classifier.encoder_config.hidden_size):
                raise ValueError(f"teacher has {widths[0]} layers of width {widths[1]}, the "
                                 f"student {classifier.encoder_config.num_layers} of "
                                 f"{classifier.encoder_config.hidden_size}: layer l is "
                                 f"distilled towards layer l, so they must match")
            teacher.trainable = False    # frozen, and left out of the optimizer's variables
        self.teacher = teacher if config.hidden_alpha > 0 else None
        self.hidden_term = None          # this step's hidden-state loss, set by call()
        self.classifier = classifier
        self.encoder_config = classifier.encoder_config
        self.pruning_config = config
        self.kernels = model_lib.prunable_kernels(classifier, config.include_pooler)
        for name, kernel in self.kernels.items():
            check_divisible(kernel.shape, config.num_blocks, config.mode, name)
        self.warmup_steps = max(1, round(config.lambda_warmup_fraction * total_steps))
        # The training steps taken, counted by the loss itself for the lambdas' ramp: JAX's
        # stateless training step holds the optimizer's state apart from the model's, so
        # compute_loss cannot read optimizer.iterations there. `fit` starts the count at the
        # optimizer's (a resumed run goes on with its ramp). Unlike optimizer.iterations it
        # also counts a step a float16 LossScaleOptimizer skips (non-finite gradients).
        self.penalty_steps = keras.Variable(0.0, trainable=False, dtype="float32",
                                            name="penalty_steps",
                                            aggregation="only_first_replica")
        self.group_weights = None
        if config.reweight:
            self.group_weights = {
                name: {kind: keras.Variable(w, trainable=False, name=f"rw_{i}_{kind}")
                       for kind, w in factors.items()}
                for i, (name, factors) in enumerate(
                    reweighting_factors(self.kernels, config).items())}
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("task_loss", "group_lasso", "polarization",
                                      "hidden_distillation")}

    def call(self, inputs, training=False):
        if self.teacher is None or not training:
            return self.classifier(inputs, training=training)
        # the classifier's own layers, run so that its hidden states are at hand for the loss
        hidden = model_lib.encode(self.classifier, inputs, output_hidden_states=True,
                                  training=training)
        teacher = model_lib.encode(self.teacher, inputs, output_hidden_states=True)
        self.hidden_term = hidden_state_loss(
            hidden[1:], [ops.stop_gradient(t) for t in teacher[1:]], inputs["attention_mask"])
        pooled = self.classifier.get_layer("pooler")(hidden[-1])
        pooled = self.classifier.get_layer("classifier_dropout")(pooled, training=training)
        return self.classifier.get_layer("classifier")(pooled)

    @property
    def metrics(self):
        return super().metrics + list(self.trackers.values())

    def fit(self, *args, **kwargs):
        self.penalty_steps.assign(float(optimizer_steps(self.optimizer)))
        return super().fit(*args, **kwargs)

    def lambda_ramp(self, training=True):
        """The lambdas' factor at this step, 0 -> 1 over the warm-up; a training step counts
        itself."""
        # a copy: the variable itself would be read after the assignment below (TensorFlow's
        # graph, PyTorch's in-place update)
        step = ops.copy(self.penalty_steps)
        ramp = ops.minimum(1.0, step / self.warmup_steps)
        if training:
            self.penalty_steps.assign(step + 1.0)
        return ramp

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        config = self.pruning_config
        task = task_loss(y, y_pred, config.distill_alpha, config.temperature)
        group_lasso = group_lasso_penalty(self.kernels, config, self.group_weights)
        polarization = polarization_penalty(self.kernels, config)
        loss = task + self.lambda_ramp(training) * (config.lambda_group * group_lasso
                                                    + config.lambda_polar * polarization)
        hidden = ops.zeros(()) if self.hidden_term is None else self.hidden_term
        if self.hidden_term is not None:
            loss = loss + config.hidden_alpha * hidden
        for name, value in (("task_loss", task), ("group_lasso", group_lasso),
                            ("polarization", polarization), ("hidden_distillation", hidden)):
            self.trackers[name].update_state(value)
        return per_replica(loss)

    def update_group_weights(self):
        if self.group_weights is None:
            return
        for name, factors in reweighting_factors(self.kernels, self.pruning_config).items():
            for kind, value in factors.items():
                self.group_weights[name][kind].assign(value)


class ReweightCallback(keras.callbacks.Callback):
    """Recompute the re-weighted group-lasso factors every `every` steps."""

    def __init__(self, every):
        super().__init__()
        self.every = every

    def on_train_batch_end(self, batch, logs=None):
        if optimizer_steps(self.model.optimizer) % self.every == 0:
            self.model.update_group_weights()


class LossTermLogger(keras.callbacks.Callback):
    """Record the running means of the loss terms every `every` steps (default: 20 times an
    epoch), for the plots."""

    def __init__(self, every=None):
        super().__init__()
        self.every = every
        self.records = []

    def on_train_begin(self, logs=None):
        if self.every is None:
            self.every = max(1, self.params["steps"] // 20)

    def on_train_batch_end(self, batch, logs=None):
        step = optimizer_steps(self.model.optimizer)
        if step % self.every == 0:
            self.records.append({"step": step, **{k: float(logs[k]) for k in
                                                   ("loss", "task_loss", "group_lasso",
                                                    "polarization", "hidden_distillation")
                                                   if k in logs}})


# ------------------------------------------------------------------ thresholding

def group_masks(kernel, num_blocks, mode, epsilon, name=""):
    """0/1 mask zeroing every group of `kernel` (numpy) whose L2 norm is <= epsilon."""
    kernel = np.asarray(kernel)
    n_in, n_out = kernel.shape
    mask = np.ones(kernel.shape, dtype=np.float32)
    for kind in group_kinds(mode, name):
        off = group_norms(kernel, num_blocks, kind, xp=np) <= epsilon
        if kind == "row":   # off: (n_in, K) -> expand each block over its n_out/K columns
            mask *= ~np.repeat(off, n_out // num_blocks, axis=1)
        else:               # off: (K, n_out) -> expand over n_in/K rows
            mask *= ~np.repeat(off, n_in // num_blocks, axis=0)
    return mask


def threshold_masks(kernels, num_blocks, mode, epsilon=None, target_sparsity=None,
                    scope="global"):
    """Masks for every kernel from an absolute epsilon or a target sparsity.

    With target_sparsity, epsilon is the smallest group norm at which the zeroed share of
    weights reaches the target: over all kernels together (scope="global") or for each kernel
    (scope="per_matrix"). Returns (masks, epsilons) where epsilons maps kernel -> epsilon used.
    """
    if (epsilon is None) == (target_sparsity is None):
        raise ValueError("give exactly one of epsilon (absolute threshold) or target_sparsity")
    if epsilon is not None and not epsilon >= 0:
        raise ValueError(f"epsilon = {epsilon!r}: the threshold must be >= 0")
    if target_sparsity is not None and not 0 <= target_sparsity < 1:
        raise ValueError(f"target_sparsity = {target_sparsity!r}: must be in [0, 1)")
    if scope not in ("global", "per_matrix"):
        raise ValueError(f"scope = {scope!r}: must be 'global' or 'per_matrix'")
    kernels = {name: np.asarray(k) for name, k in kernels.items()}
    for name, k in kernels.items():
        check_divisible(k.shape, num_blocks, mode, name)
    if epsilon is not None:
        return ({n: group_masks(k, num_blocks, mode, epsilon, n) for n, k in kernels.items()},
                {n: float(epsilon) for n in kernels})
    if scope == "per_matrix":
        masks, epsilons = {}, {}
        for name, k in kernels.items():
            eps = _epsilon_for_sparsity({name: k}, num_blocks, mode, target_sparsity)
            masks[name], epsilons[name] = group_masks(k, num_blocks, mode, eps, name), eps
        return masks, epsilons
    eps = _epsilon_for_sparsity(kernels, num_blocks, mode, target_sparsity)
    return ({n: group_masks(k, num_blocks, mode, eps, n) for n, k in kernels.items()},
            {n: eps for n in kernels})


def _epsilon_for_sparsity(kernels, num_blocks, mode, target):
    """Smallest candidate epsilon (a group norm, or -1 for none) whose masks reach `target`.

    Sparsity is monotone in epsilon, so bisect over the sorted distinct group norms; with
    row+column groups overlapping, counting the real masks is simpler than predicting them.
    """
    candidates = np.unique(np.concatenate(
        [group_norms(k, num_blocks, kind, xp=np).ravel() for name, k in kernels.items()
         for kind in group_kinds(mode, name)]))
    total = sum(k.size for k in kernels.values())

    def sparsity(eps):
        return sum(int((group_masks(k, num_blocks, mode, eps, n) == 0).sum())
                   for n, k in kernels.items()) / total
    if target <= 0:
        return -1.0
    lo, hi = 0, len(candidates) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if sparsity(candidates[mid]) >= target:
            hi = mid
        else:
            lo = mid + 1
    return float(candidates[lo])


def apply_masks(model, masks):
    """Zero the masked weights of `model` in place."""
    kernels = model_lib.prunable_kernels(model)
    for name, mask in masks.items():
        kernels[name].assign(np.asarray(kernels[name]) * mask)


def current_masks(model, include_pooler=False):
    """Masks of the weights that are exactly zero now (after thresholding + retraining)."""
    return {name: (np.asarray(k) != 0).astype(np.float32)
            for name, k in model_lib.prunable_kernels(model, include_pooler).items()}


class MaskedAdamW(AdamW):
    """AdamW whose masked gradients and weights are exactly zero: pruned groups stay pruned.

    The gradient is masked before the update, so the Adam moments of pruned weights stay 0
    and only decoupled weight decay (a multiplication, 0 stays 0) touches them; the weights
    are masked again after the update, as a guarantee.
    """

    def __init__(self, masks_by_path=None, **kwargs):
        super().__init__(**kwargs)
        self.masks_by_path = masks_by_path or {}

    def apply(self, grads, trainable_variables=None):
        variables = trainable_variables if trainable_variables is not None \
            else self._trainable_variables
        variables = list(variables)
        grads = [g if g is None or v.path not in self.masks_by_path
                 else g * self.masks_by_path[v.path] for g, v in zip(grads, variables)]
        super().apply(grads, trainable_variables)
        for v in variables:
            if v.path in self.masks_by_path:
                v.assign(v * self.masks_by_path[v.path])


def masks_by_variable_path(model, masks):
    kernels = model_lib.prunable_kernels(model)
    return {kernels[name].path: ops.convert_to_tensor(mask, "float32")
            for name, mask in masks.items()}


# ------------------------------------------------------------------ what got pruned

def sparsity_summary(model, include_pooler=False):
    """Sparsity of the encoder's linear weights and of the whole model, and which heads and
    FFN neurons ended up entirely empty (removable by compaction)."""
    config = model.encoder_config
    kernels = {n: np.asarray(k) for n, k in model_lib.prunable_kernels(model, include_pooler).items()}
    linear_zeros = sum(int((k == 0).sum()) for k in kernels.values())
    linear_total = sum(k.size for k in kernels.values())
    all_weights = [np.asarray(w) for w in model.weights]
    total_zeros = sum(int((w == 0).sum()) for w in all_weights)
    total = sum(w.size for w in all_weights)
    heads, neurons = removable_heads_and_neurons(kernels, config)
    per_matrix = {n: float((k == 0).mean()) for n, k in kernels.items()}
    return {"sparsity_encoder_linear": linear_zeros / linear_total,
            "sparsity_total": total_zeros / total,
            "encoder_linear_weights": linear_total, "total_weights": total,
            "fully_removable_heads": int(sum(len(h) for h in heads.values())),
            "fully_removable_neurons": int(sum(len(n) for n in neurons.values())),
            "removable_heads": heads, "removable_neurons": neurons,
            "per_matrix_sparsity": per_matrix}


def removable_heads_and_neurons(kernels, config):
    """Heads whose value columns or output rows are all zero, and FFN neurons whose input
    column or output row is all zero, per layer: their contribution is at most a constant
    (a bias), which compaction folds into the output bias."""
    heads, neurons = {}, {}
    size = config.head_size
    for i in range(config.num_layers):
        value, out = (kernels.get(f"layer_{i}/attention/{m}") for m in ("value", "output"))
        if value is not None:
            n_heads = value.shape[1] // size
            heads[i] = [h for h in range(n_heads)
                        if not value[:, h * size:(h + 1) * size].any()
                        or not out[h * size:(h + 1) * size, :].any()]
        ffn_in, ffn_out = (kernels.get(f"layer_{i}/ffn/{m}") for m in ("input", "output"))
        if ffn_in is not None:
            neurons[i] = np.flatnonzero(~ffn_in.any(axis=0) | ~ffn_out.any(axis=1)).tolist()
    return heads, neurons


def all_group_norms(model, config):
    """Every group norm of the model's prunable kernels, pooled by group kind (numpy)."""
    norms = {}
    for name, kernel in model_lib.prunable_kernels(model, config.include_pooler).items():
        for kind in config.group_kinds(name):
            values = group_norms(np.asarray(kernel), config.num_blocks, kind, xp=np).ravel()
            norms.setdefault(kind, []).append(values)
    return {kind: np.concatenate(parts) for kind, parts in norms.items()}


# ------------------------------------------------------------------ the pruning fit

def penalized_fine_tune(model, tokenizer, dataset, config=None, pruning=None, masks=None,
                        teacher_logits=None, teacher=None, callbacks=(), **options):
    """`train.fine_tune` of `model` with block pruning's parts: `pruning` (a PruningConfig)
    adds its group-lasso and polarisation terms to the loss, and distillation towards
    `teacher_logits` (one row per training example) and, with pruning.hidden_alpha > 0, the
    hidden states of `teacher` (the dense model); `masks` ({kernel name: 0/1 array}) are
    applied and held: masked weights and their gradients stay exactly 0.
    options: fine_tune's (checkpoint_dir, progress). Returns fine_tune's state, with the
    loss-term log under "loss_terms" when pruning."""
    if pruning is not None and pruning.distill_alpha > 0 and teacher_logits is None:
        raise ValueError("PruningConfig.distill_alpha > 0 needs teacher_logits (the dense "
                         "model's logits on the training split)")
    all_callbacks = list(callbacks)
    loss_log = None
    if pruning is not None:
        loss_log = LossTermLogger()
        all_callbacks.append(loss_log)
        if pruning.reweight:
            all_callbacks.append(ReweightCallback(pruning.reweight_every_steps))

    def fit_model(classifier, total_steps):   # inside the classifier's strategy scope
        trained = classifier if pruning is None else \
            PenalizedClassifier(classifier, pruning, total_steps=total_steps, teacher=teacher)
        if masks is not None:
            apply_masks(classifier, masks)
        return trained
    make_optimizer = None if masks is None else \
        functools.partial(MaskedAdamW, masks_by_variable_path(model, masks))
    state = train.fine_tune(model, tokenizer, dataset, config, callbacks=all_callbacks,
                            fit_model=fit_model if pruning is not None or masks is not None
                            else None, make_optimizer=make_optimizer,
                            teacher_logits=teacher_logits if pruning is not None else None,
                            run_config={"pruning": pruning, "masked": masks is not None},
                            **options)
    if loss_log is not None:
        state["loss_terms"] = loss_log.records
    return state


def fine_tune_saved(model_dir, out_dir, tokenizer, dataset, config=None, **options):
    """`penalized_fine_tune` of the model saved in `model_dir`, saving the result to `out_dir`;
    the form `isolation.run_in_fresh_process` can run, so a long XLA fit's compiled programs
    leave with its process (notebook 03). Returns the training state."""
    model = saved.load_model(model_dir)
    state = penalized_fine_tune(model, tokenizer, dataset, config, **options)
    saved.save(model, out_dir)
    return state

