"""What a liquid on the deck is: solvents, and the labels that name reservoirs by their contents.

A reservoir (a trough, a tube on a pump line, a well of a stock plate) is named by a *label*
that says what it holds, the way a lab labels its tubes. Protocols write the labels; a rig's
settings map them to deck positions or pump lines; the simulated lab reads the solvent part,
because the label is all the robot is told about the liquid it aspirates. Grammar::

    drug_a@10000uM                 a stock, no organic solvent named (aqueous, or legacy)
    drug_a@200uM+2%dmso            drug_a at 200 µM in medium holding 2 % v/v DMSO
    medium+2%dmso                  the vehicle: medium holding 2 % v/v DMSO
    medium                         plain medium

Only the ``+<percent>%<solvent>`` suffix is parsed here; everything before it is the
protocol's own name for the liquid.
"""

from __future__ import annotations

import re
from typing import Literal

#: solvents a stock may be dissolved in; the organic ones are toxic to cells and must be matched
Solvent = Literal["dmso", "ethanol", "water", "medium", "pbs"]
ORGANIC_SOLVENTS: tuple[str, ...] = ("dmso", "ethanol")
AQUEOUS_SOLVENTS: tuple[str, ...] = ("water", "medium", "pbs")

_SUFFIX_RE = re.compile(r"\+(?P<pct>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)%(?P<solvent>[a-z]+)$")


def is_organic(solvent: str | None) -> bool:
    """True for solvents that cells do not tolerate at more than a few tenths of a percent."""
    return solvent in ORGANIC_SOLVENTS


def format_percent(percent: float) -> str:
    """A percentage as labels write it: 6 significant digits, no trailing zeros (``2``, ``0.5``)."""
    return f"{percent:.6g}"


def with_solvent(base: str, solvent: str | None, percent: float) -> str:
    """The label of ``base`` (e.g. ``drug_a@200uM`` or ``medium``) holding ``percent`` % v/v of
    an organic ``solvent``; ``base`` unchanged when there is none."""
    if not is_organic(solvent) or percent <= 0:
        return base
    return f"{base}+{format_percent(percent)}%{solvent}"


def label_solvent(label: str) -> tuple[str, float] | None:
    """``(solvent, percent v/v)`` named by a label's suffix, or None when it names none.

    A bare organic solvent name (``dmso``) is the pure solvent, 100 %.
    """
    if label in ORGANIC_SOLVENTS:
        return label, 100.0
    m = _SUFFIX_RE.search(label)
    if m is None or m.group("solvent") not in ORGANIC_SOLVENTS:
        return None
    return m.group("solvent"), float(m.group("pct"))
