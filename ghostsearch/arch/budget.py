"""Parsing of FLOPs budgets as users write them (`200MFLOPs`, `0.2GFLOPs`, `150MMACs`, `200e6`)."""

from __future__ import annotations

import math
import re

from ..errors import ConfigError

_PREFIX = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
# In the paper's convention a FLOP is one multiply-add, so FLOPs, MACs and MAdds are one unit.
_UNITS = ("FLOPS", "FLOP", "MACS", "MAC", "MADDS", "MADD", "MULTADDS", "MULTADD", "")
_BUDGET_RE = re.compile(
    r"^\s*(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(?P<prefix>[KMGT]?)\s*(?P<unit>[A-Z]*)\s*$",
    re.IGNORECASE,
)
_EXAMPLES = "e.g. 200MFLOPs, 0.2GFLOPs, 150MMACs or 200e6"


def parse_budget(text: str | int | float) -> int:
    """A FLOPs budget in multiply-adds (the paper's convention), as an integer.

    Raises:
        ConfigError: one line saying what is wrong, for `abc`, `0`, `-5M`, `200MB` and the like.
    """
    if isinstance(text, bool):
        raise ConfigError(f"budget {text!r}: not a number of FLOPs ({_EXAMPLES})")
    if isinstance(text, (int, float)):
        value = float(text)
        shown = repr(text)
    else:
        m = _BUDGET_RE.match(str(text))
        shown = repr(text)
        if not m:
            raise ConfigError(f"budget {shown}: not a number of FLOPs ({_EXAMPLES})")
        unit = m["unit"].upper()
        prefix = m["prefix"].upper()
        if unit not in _UNITS:
            unit_shown = m["prefix"] + m["unit"]
            raise ConfigError(
                f"budget {shown}: unit {unit_shown!r} is not FLOPs or MACs ({_EXAMPLES})"
            )
        value = float(m["num"]) * _PREFIX[prefix]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"budget {shown}: must be a positive number of FLOPs ({_EXAMPLES})")
    if value < 1:
        raise ConfigError(f"budget {shown}: under one FLOP; did you forget a unit? ({_EXAMPLES})")
    return int(round(value))


def format_flops(flops: float) -> str:
    """`141.15M`-style short form for tables and logs."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(flops) >= scale:
            return f"{flops / scale:.2f}{prefix}"
    return f"{flops:.0f}"
