"""The command lines (`python -m utils.face.bench`, ...): one way to build their parser."""
from __future__ import annotations

import argparse


def argument_parser(module, description):
    """The parser of `python -m <module>`, its help text `description` (the module's
    docstring) kept as written."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
