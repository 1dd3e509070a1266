"""The command lines (`python -m utils.face.bench`, ...): one way to build their parser."""
from __future__ import annotations

import argparse


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors (an unknown flag, a missing or invalid argument) are one
    line on stderr and exit 2, as every other error of the command lines, not the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def argument_parser(module, description):
    """The parser of `python -m <module>`, its help text `description` (the module's
    docstring) kept as written."""
    return OneLineErrorParser(prog=f"python -m {module}", description=description,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
