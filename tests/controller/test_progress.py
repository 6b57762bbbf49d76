"""The terminal progress view with several plates in flight: one bar per plate."""

from __future__ import annotations

import io

from rich.console import Console

from controller.cli.progress import ProgressView
from controller.loop.events import EventKind


def test_each_plate_in_flight_has_its_own_bar() -> None:
    console = Console(file=io.StringIO(), force_terminal=False, width=120)
    view = ProgressView(console, spec=None)
    for rid, plate, steps in ((11, "P001", 5), (12, "P002", 4)):
        view._on_event(EventKind.ROUND_COMPILED, {"round": rid - 10, "steps": steps,
                                                  "plate": plate, "round_id": rid})  # fmt: skip
    for rid, n in ((11, 3), (12, 4), (11, 2)):  # plate 1's steps, then plate 2's, interleaved
        for seq in range(n):
            view._on_event(EventKind.STEP_DONE, {"round_id": rid, "seq": seq, "kind": "dispense"})
    bars = {t.description: (t.completed, t.total) for t in view.progress.tasks}
    assert bars == {"plate P001": (5, 5), "plate P002": (4, 4)}
    view._on_event(EventKind.STEP_DONE, {"round_id": 99, "seq": 0, "kind": "acquire"})  # unknown
    view._on_event(EventKind.ROUND_ANALYZED, {"plate": "P001", "measured": 2, "plate_ok": True})
    assert [t.description for t in view.progress.tasks] == ["plate P002"]
