"""One way to fingerprint what a run depends on: a hex digest of strings, bytes and arrays
(`digest`), and of a file's bytes (`file_sha256`). Checkpoints name the weights they started
from, vocabulary maps the tokens they keep, bundles every file, sweeps every mask."""
from __future__ import annotations

import hashlib

import numpy as np


def digest(parts, algorithm="sha256"):
    """Hex digest of `parts` in order: a str is its UTF-8 bytes, an array its raw bytes (C
    order; its shape and dtype only where the caller puts them in a str part)."""
    hasher = hashlib.new(algorithm)
    for part in parts:
        if isinstance(part, str):
            part = part.encode("utf-8")
        elif isinstance(part, np.ndarray):
            part = np.ascontiguousarray(part).tobytes()
        hasher.update(part)
    return hasher.hexdigest()


def file_sha256(path):
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()
