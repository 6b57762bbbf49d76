"""The workcell's timeline: which plate used which instrument when (a Gantt chart)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

COLOURS = {
    "liquid_handler": "#1b9e77",
    "incubator": "#d9d9d9",
    "microscope": "#7570b3",
    "plate_mover": "#e6ab02",
}
LABELS = {
    "liquid_handler": "liquid handler",
    "incubator": "incubator",
    "microscope": "microscope",
    "plate_mover": "arm (transfer)",
}


def timeline_figure(timeline: Sequence[dict[str, Any]], now_h: float | None = None) -> Figure:
    """A Gantt chart: one row per plate, a bar per instrument segment (hours on the campaign clock)."""
    plates = list(dict.fromkeys(seg["plate"] for seg in timeline))
    fig = Figure(figsize=(8, 0.5 + 0.35 * max(len(plates), 1)))
    ax = fig.add_subplot()
    # transfers first, drawn back from their end: the instrument bars they lead into stay visible
    ordered = sorted(timeline, key=lambda seg: seg["resource"] != "plate_mover")
    for seg in ordered:
        y = plates.index(seg["plate"])
        end = (
            seg["end_h"]
            if seg["end_h"] is not None
            else (now_h if now_h is not None else seg["start_h"])
        )
        width = max(
            end - seg["start_h"], 0.15
        )  # pipetting and imaging take minutes: keep them visible
        left = end - width if seg["resource"] == "plate_mover" else seg["start_h"]
        ax.barh(
            y,
            width,
            left=left,
            height=0.6,
            color=COLOURS.get(seg["resource"], "#999"),
            edgecolor="none",
            label=LABELS.get(seg["resource"], seg["resource"]),
        )
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=False))
    ax.legend(
        unique.values(), unique.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0)
    )
    ax.set_yticks(range(len(plates)), plates, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("campaign clock (h)")
    ax.set_title("workcell timeline")
    fig.tight_layout()
    return fig


def timeline_png(timeline: Sequence[dict[str, Any]], now_h: float | None = None) -> bytes:
    """The chart as PNG bytes (the console serves it)."""
    import io

    buf = io.BytesIO()
    timeline_figure(timeline, now_h).savefig(buf, format="png", dpi=90)
    return buf.getvalue()
