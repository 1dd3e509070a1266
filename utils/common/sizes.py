"""The one place that turns byte counts into the units the project prints.

Sizes of files and weights are in MB = 10^6 bytes (`format_mb`): a bundle is "9.5 MB" in the
benchmark, the demo, the model card and the report alike. Resident memory (RSS) is in binary
units and says so: MiB = 2^20 bytes, GiB = 2^30 bytes (`format_mib`, `format_gib`). Results
files store bytes where they can; older ones store RSS as MiB under `*_mb` keys (`MIB` turns
them back into bytes).
"""

MB = 10 ** 6      # file and weight sizes
MIB = 2 ** 20     # resident memory
GIB = 2 ** 30


def megabytes(n_bytes):
    """Bytes as MB (10^6 bytes), a float."""
    return n_bytes / MB


def format_mb(n_bytes, digits=1, unit=True):
    """9_459_502 -> '9.5 MB' (unit=False: '9.5', for a table whose header says MB)."""
    text = f"{megabytes(n_bytes):,.{digits}f}"
    return f"{text} MB" if unit else text


def mebibytes(n_bytes):
    """Bytes as MiB (2^20 bytes), a float: resident memory."""
    return n_bytes / MIB


def format_mib(n_bytes, digits=0, unit=True):
    """Resident memory: 293_601_280 -> '280 MiB'."""
    text = f"{mebibytes(n_bytes):,.{digits}f}"
    return f"{text} MiB" if unit else text


def format_gib(n_bytes, digits=1, unit=True):
    """Resident memory: 5_798_205_849 -> '5.4 GiB'."""
    text = f"{n_bytes / GIB:,.{digits}f}"
    return f"{text} GiB" if unit else text
