"""Progress and diagnostics through Python's `logging`, under the logger "utils".

Where the lines go: to the file named by the environment variable UTILS_LOG_FILE when it is
set (the pipeline sets it for every step and shows the file in the terminal of `make run`, so
progress never lands in a saved notebook), else to stderr (a notebook run by hand, a test, a
command line). `import utils` calls `setup()`."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time

LOG_FILE_VARIABLE = "UTILS_LOG_FILE"
FORMAT = "[%(asctime)s %(name)s] %(message)s"


def setup():
    """Give the "utils" logger its one handler (once per process), at level INFO."""
    logger = logging.getLogger("utils")
    if logger.handlers:
        return logger
    path = os.environ.get(LOG_FILE_VARIABLE)
    handler = (logging.FileHandler(path, encoding="utf-8") if path
               else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter(FORMAT, "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # under the pipeline the file is the one place: a handler some library put on the root
    # logger would copy every line into the notebook
    logger.propagate = not path
    # TensorFlow's Python logger: its INFO lines (a TFLite conversion's temporary asset paths)
    # and retracing warnings (one traced function per loaded model, by design) are noise in a
    # notebook; its errors still show
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return logger


@contextlib.contextmanager
def native_stderr_silenced():
    """File descriptor 2 pointed at /dev/null for the duration of the block, for the lines the
    C++ cores of TensorFlow and TFLite write there when they load (absl's "All log messages
    before absl::InitializeLog() is called...", the oneDNN and CUDA notices, "Created
    TensorFlow Lite XNNPACK delegate"). TensorFlow 2.21 writes them whatever
    TF_CPP_MIN_LOG_LEVEL says, and a notebook page (JupyterLab, Voila) shows them as a warning
    box. Python's exceptions and `sys.stderr` writes are not affected, only native writes."""
    sys.stderr.flush()
    kept = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(kept, 2)
        os.close(kept)
        os.close(devnull)


class Progress:
    """Progress of a long loop as a few log lines (at most one per tenth of `total`, and the
    last), never a progress bar: `update(n, **values)` after each step, values shown beside
    the count."""

    def __init__(self, total, description, logger=None, enabled=True, lines=10):
        self.total, self.description = int(total), description
        self.logger = logger or logging.getLogger("utils")
        self.enabled = enabled
        self.every = max(1, -(-self.total // max(1, lines)))
        self.done = 0
        self.start = time.perf_counter()

    def update(self, n=1, **values):
        before, self.done = self.done, self.done + n
        if self.enabled and (self.done // self.every > before // self.every
                             or self.done == self.total):
            shown = "".join(f", {k} {v}" for k, v in values.items())
            self.logger.info("%s: %d/%d%s, %.1f min", self.description, self.done, self.total,
                             shown, (time.perf_counter() - self.start) / 60)


def progress(items, description, logger=None, enabled=True):
    """`items` one by one, logging `Progress` as they are consumed."""
    items = list(items)
    bar = Progress(len(items), description, logger, enabled)
    for item in items:
        yield item
        bar.update()
