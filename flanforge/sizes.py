"""Byte sizes as users write them (``80GiB``, ``5GB``) and as flanforge prints them. A leaf module: of the
project it imports only ``flanforge.errors``."""

from __future__ import annotations

import re

from flanforge.errors import ConfigError, did_you_mean

UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]+)")


def parse_bytes(text: str, what: str) -> int:
    """``text`` (a number and one of :data:`UNITS`, e.g. ``80GiB``) in bytes; a ConfigError naming
    ``what`` (the flag or key) and the value otherwise. Units are case-sensitive: ``Gb`` is not ``GB``."""
    match = _SIZE.fullmatch(str(text).strip())
    unit = match.group(2) if match else ""
    if match is None or unit not in UNITS:
        same_letters = [u for u in UNITS if u.lower() == unit.lower()]
        hint = did_you_mean(unit, same_letters or UNITS, cutoff=0.3 if same_letters else 0.5) if unit else ""
        raise ConfigError(f"{what}: {text!r} is not a size such as 80GiB or 5GB{hint} "
                          f"(units: {', '.join(UNITS)})")
    size = int(float(match.group(1)) * UNITS[unit])
    if size < 1:
        raise ConfigError(f"{what}: {text!r} must be at least 1 byte")
    return size


def format_bytes(size: float) -> str:
    """``size`` in the largest binary unit that keeps it >= 1 (``1.50 GiB``)."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if abs(size) >= UNITS[unit]:
            return f"{size / UNITS[unit]:.2f} {unit}"
    return f"{int(size)} B"
