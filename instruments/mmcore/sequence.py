"""One well as a ``useq.MDASequence``: stage positions for its fields, channels, z, autofocus.

The sequence is plain data (useq-schema models): it can be inspected, logged or run by any
pymmcore-plus engine. Axis order ``"pcz"``: all channels (and z planes) of a field are taken
before the stage moves on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import useq


@dataclass(frozen=True)
class ZStack:
    """A z stack around the focus position: ``range_um`` in total, ``step_um`` apart."""

    range_um: float
    step_um: float


@dataclass(frozen=True)
class Autofocus:
    """Hardware autofocus (e.g. a Nikon PFS, a Zeiss Definite Focus) at every field.

    ``device`` is the autofocus device's label; ``motor_offset_um`` the offset of its
    offset motor (None: leave it where it is).
    """

    device: str
    motor_offset_um: float | None = None


def build_well_sequence(
    positions_um: Sequence[tuple[float, float]],
    channels: Sequence[str],
    *,
    channel_group: str,
    exposure_ms: float,
    z_stack: ZStack | None = None,
    autofocus: Autofocus | None = None,
    metadata: dict[str, Any] | None = None,
) -> useq.MDASequence:
    """A sequence imaging every position in every channel.

    Args:
        positions_um: ``(x, y)`` stage positions (µm), one per field; field ``i`` is named
            ``"field{i}"``.
        channels: presets of ``channel_group``, in the order the planes are wanted.
        channel_group: the Micro-Manager config group holding the channel presets.
        exposure_ms: camera exposure for every channel (ms).
        z_stack: optional z stack around each field's focus.
        autofocus: optional hardware autofocus before each field.
        metadata: stored on the sequence (e.g. plate and well).
    """
    kwargs: dict[str, Any] = {
        "stage_positions": [
            useq.Position(x=float(x), y=float(y), name=f"field{i}")
            for i, (x, y) in enumerate(positions_um)
        ],
        "channels": [
            useq.Channel(config=str(c), group=channel_group, exposure=float(exposure_ms))
            for c in channels
        ],
        "axis_order": "pcz",
        "metadata": dict(metadata or {}),
    }
    if z_stack is not None:
        kwargs["z_plan"] = useq.ZRangeAround(range=z_stack.range_um, step=z_stack.step_um)
    if autofocus is not None:
        kwargs["autofocus_plan"] = useq.AxesBasedAF(
            autofocus_device_name=autofocus.device,
            autofocus_motor_offset=autofocus.motor_offset_um,
            axes=("p",),
        )
    return useq.MDASequence(**kwargs)
