"""Single-agent wells of a combination plate: each drug alone at the doses its combinations use.

Synergy scores compare a combination with what its drugs do alone *at the same doses*. Without
single-agent wells those responses come from curves fitted to wells where a partner is merely
low; with them, each plate measures them directly, beside its combinations, under the same
seeding, solvent share and incubation. For every experiment of the plate that doses two or
more reagents, each of its reagents gets ``single_agent_replicates`` wells at that reagent's
dose alone (a dose shared by several experiments is placed once). They are dosed like any
other well: the same working solutions, the same vehicle top-up to the same solvent share.

``single_agent_wells`` (default: on when the protocol maps two or more doses) switches them
on; :meth:`protocols.dose_response.DoseResponse.capacity` reserves their wells, so a full
plate of combinations still fits.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocols.dose_response_settings import DoseResponseSettings
from protocols.exceptions import PlateFull

__all__ = ["single_agent_doses", "wells_per_experiment", "check_fit"]


def single_agent_doses(
    settings: DoseResponseSettings, doses: Sequence[dict[str, float]]
) -> list[dict[str, float]]:
    """The single-agent conditions one plate needs, in a stable order.

    Args:
        doses: per experiment of the plate, reagent → final µM (as ``resolve_doses``).

    Returns:
        ``[{reagent: µM}, ...]``, one per distinct reagent and dose dosed in a combination
        (an experiment with two or more reagents above 0 µM); empty when single-agent wells
        are off.
    """
    if not settings.single_agents:
        return []
    seen: dict[tuple[str, float], dict[str, float]] = {}
    for d in doses:
        dosed = {r: v for r, v in d.items() if v > 0}
        if len(dosed) < 2:
            continue
        for r, v in sorted(dosed.items()):
            seen.setdefault((r, float(v)), {r: float(v)})
    return [seen[k] for k in sorted(seen)]


def wells_per_experiment(settings: DoseResponseSettings) -> int:
    """Wells one experiment may need at most: its replicates and, with single-agent wells, one
    set of single-agent wells per mapped dose."""
    extra = len(settings.doses) * settings.single_agent_replicates if settings.single_agents else 0
    return settings.replicates + extra


def check_fit(
    settings: DoseResponseSettings, n_wells: int, n_singles: int, available: int, detail: str
) -> None:
    """Raise :class:`PlateFull` naming the single-agent settings when their wells are what
    overflows the plate.

    Args:
        n_wells: wells the plate needs, single-agent wells included.
        n_singles: distinct single-agent conditions (each ``single_agent_replicates`` wells).
        available: usable wells.
        detail: what the other wells are, for the message.
    """
    if n_wells <= available:
        return
    sa = n_singles * settings.single_agent_replicates
    if sa and n_wells - sa <= available:
        raise PlateFull(
            n_wells,
            available,
            f"{detail} + {sa} single-agent wells ({n_singles} doses x single_agent_replicates "
            f"{settings.single_agent_replicates}) do not fit: lower single_agent_replicates, "
            "propose fewer experiments per plate, or set single_agent_wells: false",
        )
    raise PlateFull(n_wells, available, detail)
