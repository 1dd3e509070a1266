"""The bottom layer: crash-safe file writing and run provenance (`io`), logging (`logs`),
running a function in a fresh process (`isolation`). Imports nothing else of `utils`."""
