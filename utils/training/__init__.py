"""The fit loop (`train`: AdamW with warm-up/decay, early stopping, resumable checkpoints, NaN
guard), the task and distillation losses (`losses`) and the metrics (`evaluation`). It knows
no compression method: a caller brings its own model wrapper, optimizer and callbacks.
May import `utils.common`, `utils.data`, `utils.encoder`."""
