"""The tweets: loading, repair (`mojibake`), cleaning and splitting (`corpus`), and the
tokenised, length-bucketed batches every model reads (`batching`). May import `utils.common`."""
