"""argparse value types that refuse nonsense at the command line, before hours of work start.

`--epochs 0` or `--fps -1` would otherwise pass through to a trainer or a sampler and fail late,
or quietly do nothing; argparse turns these errors into its usual one-line usage message.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _bounded(kind: type, low: float, inclusive: bool, what: str, high: float | None = None) -> Callable[[str], int | float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
        if value < low or (not inclusive and value == low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    return parse


positive_int = _bounded(int, 1, True, "a positive integer")
non_negative_int = _bounded(int, 0, True, "zero or a positive integer")
positive_float = _bounded(float, 0.0, False, "a positive number")
non_negative_float = _bounded(float, 0.0, True, "zero or a positive number")
# A threshold in [0, 1] (0 alerts on anything: useful to test a camera's wiring).
probability = _bounded(float, 0.0, True, "in [0, 1]", high=1.0)
# A crop side a backbone reads (extractor.input_size's range), named by the flag instead of the config key.
crop_side = _bounded(int, 32, True, "a crop side from 32 to 512 px", high=512)


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return value
