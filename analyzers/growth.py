"""Growth-rate-normalised metrics (GR values; Hafner, Niepel, Chung & Sorger, Nat. Methods 2016).

A relative count (viability) ``x / x_ctrl`` depends on how fast a line divides during the assay:
the same drug that halts division looks far stronger on a line that doubles every day than on
one that doubles every three. GR values remove that by comparing growth *rates*:

    GR = 2 ** ( log2(x / x0) / log2(x_ctrl / x0) ) − 1

with ``x0`` the count at time zero (when the drug was added), ``x`` the treated count and
``x_ctrl`` the vehicle-control count at the end. GR = 1: no effect; 0: complete cytostasis (the
cells stopped dividing); < 0: cytotoxic (fewer cells than at time zero); −1: every cell died.
The ``dose_response`` protocol's ``time_zero_wells`` give ``x0``: wells of the same plate
imaged right before dosing.
"""

from __future__ import annotations

import math

__all__ = ["gr_value"]


def gr_value(count: float, time_zero: float, control: float) -> float | None:
    """GR value of one well from per-field (or per-well) counts of one cell line.

    Args:
        count: treated count at the end of the assay.
        time_zero: the count at time zero (same units).
        control: the vehicle-control count at the end (same units).

    Returns:
        GR in ``[−1, ∞)`` (≈ ``[−1, 1]``), or None when it is undefined: no cells at time
        zero, or controls that did not grow (``control ≤ time_zero``).
    """
    if time_zero <= 0 or control <= time_zero:
        return None
    if count <= 0:
        return -1.0
    return float(2.0 ** (math.log2(count / time_zero) / math.log2(control / time_zero)) - 1.0)
