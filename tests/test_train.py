import numpy as np
import pytest

from utils.pruning import block
from utils.encoder import model as model_lib
from utils.training import checkpoint, train

from helpers import toy_dataset


def tiny_model(tokenizer, seed=0):
    import keras
    keras.utils.set_random_seed(seed)
    return model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))


def test_training_lowers_the_loss(tokenizer):
    data = toy_dataset()
    model = tiny_model(tokenizer)
    config = train.TrainConfig(learning_rate=3e-3, epochs=3, batch_size=16, max_length=16,
                               patience=5, warmup_fraction=0.0)
    before = train.evaluate(model, tokenizer, data["validation"], max_length=16)
    state = train.fine_tune(model, tokenizer, data, config, progress=False)
    losses = [r["train_loss"] for r in state["history"]]
    assert losses[-1] < losses[0]
    after = train.evaluate(model, tokenizer, data["validation"], max_length=16)
    assert after["macro_f1"] > max(before["macro_f1"], 0.8)
    assert state["best_epoch"] >= 1 and state["train_seconds"] > 0


def test_resume_refuses_a_different_config(tokenizer, tmp_path):
    data = toy_dataset(n_train=64, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, epochs=2, batch_size=16, max_length=16,
                               patience=5)
    # an interrupted run: only the first epoch finished
    first = train.fine_tune(tiny_model(tokenizer), tokenizer, data,
                            train.TrainConfig(**{**config.__dict__, "epochs": 1}),
                            checkpoint_dir=tmp_path, progress=False)
    assert (tmp_path / "last" / "optimizer.npz").exists()
    assert first["epoch"] == 1
    # config must match to resume
    with pytest.raises(ValueError, match="delete it or pass the same config"):
        train.fine_tune(tiny_model(tokenizer), tokenizer, data, config,
                        checkpoint_dir=tmp_path, progress=False)


def test_resume_restores_weights_and_optimizer(tokenizer, tmp_path):
    data = toy_dataset(n_train=64, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16)
    trained = tiny_model(tokenizer)
    train.fine_tune(trained, tokenizer, data, config, checkpoint_dir=tmp_path, progress=False)
    fresh = tiny_model(tokenizer)     # a new process: the same start model, built anew
    state = train.fine_tune(fresh, tokenizer, data, config, checkpoint_dir=tmp_path,
                            progress=False)
    assert state["epoch"] == 1  # nothing left to train: it resumed, it did not restart
    for a, b in zip(trained.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations.numpy()) == 4  # 64 examples / 16 per batch
    # the per-epoch log beside the checkpoints, with the validation scores of the history
    import pandas as pd
    log = pd.read_csv(tmp_path / "training_log.csv")
    assert list(log.epoch) == [0] and {"loss", "val_macro_f1", "train_seconds"} <= set(log.columns)
    assert log.val_macro_f1[0] == state["history"][0]["val_macro_f1"]


def test_a_checkpoint_of_another_start_model_is_not_resumed(tokenizer, tmp_path, caplog):
    """Same config, another start model (as when an upstream step was re-run and wrote a new
    snapshot): its epochs are not this run's, so training starts over and replaces them."""
    data = toy_dataset(n_train=64, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16)
    train.fine_tune(tiny_model(tokenizer), tokenizer, data, config, checkpoint_dir=tmp_path,
                    progress=False)
    other = tiny_model(tokenizer, seed=1)
    start = [w.copy() for w in other.get_weights()]
    state = train.fine_tune(other, tokenizer, data, config, checkpoint_dir=tmp_path,
                            progress=False)
    assert "ignoring the checkpoint" in caplog.text
    caplog.clear()
    assert int(other.optimizer.iterations.numpy()) == 4     # trained its own epoch
    assert state["source"] == checkpoint.weights_fingerprint(tiny_model(tokenizer, seed=1))
    assert any(not np.array_equal(a, b) for a, b in zip(start, other.get_weights()))
    # and the checkpoint is now the new run's: the same start model resumes from it
    resumed = tiny_model(tokenizer, seed=1)
    again = train.fine_tune(resumed, tokenizer, data, config, checkpoint_dir=tmp_path,
                            progress=False)
    assert again["epoch"] == 1 and "ignoring" not in caplog.text
    for a, b in zip(other.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_nan_loss_stops_with_message(tokenizer):
    data = toy_dataset(n_train=32, n_val=16)
    model = tiny_model(tokenizer)
    kernel = model.trainable_weights[-2]
    kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))
    with pytest.raises(FloatingPointError, match="Lower the learning rate"):
        train.fine_tune(model, tokenizer, data, train.TrainConfig(epochs=1, batch_size=16,
                                                                  max_length=16),
                        progress=False)


@pytest.mark.parametrize("field,value", [("learning_rate", -1.0), ("epochs", 0),
                                         ("warmup_fraction", 1.5), ("weight_decay", -0.1),
                                         ("batch_size", 2.5), ("max_length", 2)])
def test_invalid_train_config(field, value):
    with pytest.raises(ValueError, match=field):
        train.TrainConfig(**{field: value})


def test_warmup_linear_decay_schedule():
    schedule = train.WarmupLinearDecay(1.0, warmup_steps=10, total_steps=110)
    values = [float(schedule(s)) for s in (0, 5, 10, 60, 110, 200)]
    np.testing.assert_allclose(values, [0, 0.5, 1.0, 0.5, 0.0, 0.0], atol=1e-6)


def test_batches_of_any_length_after_equal_first_batches(tokenizer):
    # unshuffled batches go shortest first: two of width 8, then one of width 40.
    # Keras guesses a PyDataset's shapes from its first two batches; fit must accept all.
    from utils.data import batching
    texts = [f"good {i}" for i in range(32)] + ["this one is a much longer tweet " * 4] * 16
    batches, _ = batching.make_batches(tokenizer, texts, [0] * 32 + [1] * 16, max_length=64,
                                       batch_size=16, shuffle=False)
    assert [b[0]["input_ids"].shape[1] for b in batches] == [8, 8, 40]
    model = tiny_model(tokenizer)
    train.compile_for_training(model, train.TrainConfig(epochs=2), len(batches))
    model.fit(train.fit_input(batches), epochs=2, steps_per_epoch=len(batches), verbose=0)
    assert int(model.optimizer.iterations) == 6


def test_progress_logs_a_line_per_quarter_epoch(tokenizer, caplog):
    """Progress goes to the log (the terminal of `make run`), a line per quarter epoch."""
    data = toy_dataset(n_train=64, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=8, max_length=16)
    train.fine_tune(tiny_model(tokenizer), tokenizer, data, config, progress=True)
    lines = [r.getMessage() for r in caplog.records if " batches, loss " in r.getMessage()]
    assert [l.split(":")[1].split()[0] for l in lines] == ["2/8", "4/8", "6/8"]


def test_fit_input_restarts_at_the_current_epoch_on_every_pass(tokenizer):
    """Keras may draw a batch to build the model (under a strategy) before training: every
    pass over the input must start at the same first batch and run through the epochs in
    order, as `batches` itself would (epoch 0, then the re-bucketed epoch 1)."""
    from utils.data import batching
    data = toy_dataset(n_train=48, n_val=8)
    batches, _ = batching.make_batches(tokenizer, data["train"]["text"], data["train"]["label"],
                                       max_length=16, batch_size=16, shuffle=True, seed=3)
    dataset = train.fit_input(batches)
    first = next(iter(dataset))[1].numpy()
    labels = [y.numpy() for _, y in dataset.take(2 * len(batches))]
    np.testing.assert_array_equal(first, labels[0])
    expected = [batches.labels[i] for epoch in (0, 1) for i in batches.epoch_batches(epoch)]
    assert len(labels) == len(expected)
    for got, want in zip(labels, expected):
        np.testing.assert_array_equal(got, want)
    assert not all(np.array_equal(a, b) for a, b in
                   zip(batches.epoch_batches(0), batches.epoch_batches(1)))


def test_a_checkpoint_from_before_a_config_field_was_added_still_resumes(tokenizer, tmp_path):
    """Fields added to TrainConfig / PruningConfig later (e.g. hidden_alpha) take their
    defaults, which reproduce the old behaviour, when an older checkpoint is compared."""
    import json
    from utils.pruning.block import PruningConfig
    data = toy_dataset(n_train=32, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16)
    penalty = PruningConfig(lambda_group=1e-4, lambda_polar=0.0, polarization="none")
    block.penalized_fine_tune(tiny_model(tokenizer), tokenizer, data, config, checkpoint_dir=tmp_path,
                    progress=False, pruning=penalty)
    state_file = tmp_path / "last" / "state.json"
    state = json.loads(state_file.read_text())
    del state["config"]["pruning"]["hidden_alpha"], state["config"]["weight_decay"]
    state_file.write_text(json.dumps(state))
    resumed = block.penalized_fine_tune(tiny_model(tokenizer), tokenizer, data, config,
                              checkpoint_dir=tmp_path, progress=False, pruning=penalty)
    assert resumed["epoch"] == 1          # resumed, nothing left to train
    state["config"]["pruning"]["lambda_group"] = 1e-3       # a real difference still refuses
    state_file.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="delete it or pass the same config"):
        block.penalized_fine_tune(tiny_model(tokenizer), tokenizer, data, config, checkpoint_dir=tmp_path,
                        progress=False, pruning=penalty)


def test_fine_tune_saved_in_a_fresh_process_matches_fine_tune(tokenizer, tmp_path):
    """Notebook 03 runs its long fits this way: the same start model, trained in a spawned
    process and saved, must hold the weights of the same fit run in this process."""
    from utils.common import isolation
    from utils import saved
    data = toy_dataset(n_train=64, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16)
    # dropout on: fine_tune reseeds the model's generators (train.reseed_dropout), so the
    # masks do not depend on what this process built before
    saved.save(model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size)),
               tmp_path / "start")
    here = saved.load_model(tmp_path / "start")
    expected = train.fine_tune(here, tokenizer, data, config, progress=False)
    state = isolation.run_in_fresh_process(block.fine_tune_saved, dict(
        model_dir=tmp_path / "start", out_dir=tmp_path / "trained", tokenizer=tokenizer,
        dataset=data, config=config, progress=False))
    assert state["epoch"] == expected["epoch"] == 1
    assert state["history"][0]["train_loss"] == pytest.approx(expected["history"][0]["train_loss"], rel=1e-5)
    trained = saved.load_model(tmp_path / "trained")
    for a, b in zip(here.get_weights(), trained.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_fit_repeats_exactly_however_the_model_was_built(tokenizer, tmp_path):
    """The same start weights in two models whose dropout generators were seeded from different
    Python random states (as in two fresh processes) give bit-identical weights after the same fit:
    train.reseed_dropout makes the masks a function of the run's seed. Without it the two
    fits drop different units and their weights differ."""
    import random

    from utils import saved
    data = toy_dataset(n_train=64, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16)
    start = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    fits = []
    for python_seed in (1, 2):
        random.seed(python_seed)          # what an unseeded fresh process would draw from
        model = model_lib.build_classifier(start.encoder_config)
        for w, value in zip(model.trainable_weights, start.trainable_weights):
            w.assign(value)               # the same start weights, other dropout generators
        train.fine_tune(model, tokenizer, data, config, progress=False)
        fits.append([np.asarray(w) for w in model.trainable_weights])
    for a, b in zip(*fits):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(a - np.asarray(w)).max() > 0   # and the fit did train
               for a, w in zip(fits[0], start.trainable_weights))
    assert train.reseed_dropout(start, 0) == 8   # 3 per layer, embeddings, classifier
