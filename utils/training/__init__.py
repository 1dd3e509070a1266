"""The fit loop (`train`: AdamW with warm-up/decay, early stopping, resumable checkpoints, NaN
guard), the task and distillation losses (`losses`), the metrics (`evaluation`) and what differs
between Keras' backends (`backend`: TensorFlow, JAX, PyTorch). It knows
no compression method: a caller brings its own model wrapper, optimizer and callbacks.
May import `utils.common`, `utils.data`, `utils.encoder`."""
