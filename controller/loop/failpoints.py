"""Failpoints: crash the process on purpose at a named point, for kill-and-resume tests.

Set ``CELLPILOT_FAILPOINT=name:N`` (or ``name/kind:N``) and the process SIGKILLs itself the
N-th time it passes that point. Points:

- ``step_started``: a step is journaled ``started``, the instrument not yet called;
- ``step_executed``: the instrument finished, ``done`` not yet journaled;
- ``round_proposed``: proposals committed, nothing approved;
- ``before_analysis_commit``: measurements computed, not committed.

``kind`` narrows a step point to one step kind (``step_started/dispense:12``). Unset in
production, where :func:`hit` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_SPEC = os.environ.get("CELLPILOT_FAILPOINT", "")
_counts: Counter[str] = Counter()


def _parse(spec: str) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, n = spec.rpartition(":")
    return (name, int(n)) if name and n.isdigit() else None


_TARGET = _parse(_SPEC)


def hit(name: str, kind: str | None = None) -> None:
    """Count a pass through ``name``; SIGKILL this process when the configured target is reached."""
    if _TARGET is None:
        return
    target, n = _TARGET
    for key in (name, f"{name}/{kind}" if kind else None):
        if key == target:
            _counts[key] += 1
            if _counts[key] == n:
                os.kill(os.getpid(), signal.SIGKILL)
