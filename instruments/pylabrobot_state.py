"""A durable record of what PyLabRobot's volume tracking believes, with write-ahead intents.

PyLabRobot tracks container volumes in memory only, so after a crash a fresh
``LiquidHandler`` would believe every well holds its initial volume, and crash recovery would
"see" that an interrupted dispense never happened and dispense again. :class:`VolumeJournal`
makes the belief survive the process and stay honest:

- before an operation that may move liquid, the containers it touches are written as an
  *intent* (one appended JSON line, flushed);
- after it returns, their tracked volumes are written and the intent is cleared;
- after a crash between the two, those containers are *uncertain*: their volume is unknown
  (:meth:`VolumeJournal.is_uncertain`), and the handler answers None for them, so the engine
  quarantines the well instead of dispensing twice.

The journal also remembers how many tips were taken from the racks. The file holds one JSON
object per line; the first line is a snapshot written atomically on open (temp file and
``os.replace``), a torn last line is ignored.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class VolumeJournal:
    """Tracked container volumes (µL), uncertain containers and the tip cursor, optionally durable.

    Args:
        path: JSON-lines file to persist to and read from (created if missing); None keeps
            everything in memory (a restarted process then knows nothing).
        fsync: also ``os.fsync`` each appended line (survives power loss, not just a crash).
        snapshot_every: appended lines after which the file is compacted into one snapshot.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        fsync: bool = False,
        snapshot_every: int = 5000,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.fsync = fsync
        self.snapshot_every = max(int(snapshot_every), 1)
        self._appended = 0
        self.volumes: dict[str, float] = {}
        self.uncertain: set[str] = set()
        self.tips_used = 0
        if self.path is not None:
            self._load()
            self._snapshot()

    # ----------------------------------------------------------------------------- queries

    def volume_ul(self, name: str) -> float | None:
        """The last recorded volume of container ``name`` (µL), None if never recorded."""
        return self.volumes.get(name)

    def is_uncertain(self, name: str) -> bool:
        """True when an operation on ``name`` began but was never seen to finish."""
        return name in self.uncertain

    # --------------------------------------------------------------------------- mutations

    def intend(self, names: list[str]) -> None:
        """Record, before moving liquid, that ``names`` are about to change."""
        self.uncertain.update(names)
        self._append({"intent": list(names)})

    def record(self, volumes: dict[str, float], *, tips_used: int | None = None) -> None:
        """Record the volumes after an operation finished (clears their intents)."""
        self.volumes.update({k: float(v) for k, v in volumes.items()})
        self.uncertain.difference_update(volumes)
        entry: dict[str, Any] = {"volumes": {k: float(v) for k, v in volumes.items()}}
        if tips_used is not None:
            self.tips_used = int(tips_used)
            entry["tips_used"] = self.tips_used
        self._append(entry)

    def set_tips_used(self, tips_used: int) -> None:
        self.tips_used = int(tips_used)
        self._append({"tips_used": self.tips_used})

    # ------------------------------------------------------------------------- persistence

    def _apply(self, entry: dict[str, Any]) -> None:
        if "snapshot" in entry:
            snap = entry["snapshot"]
            self.volumes = {k: float(v) for k, v in snap["volumes"].items()}
            self.uncertain = set(snap["uncertain"])
            self.tips_used = int(snap["tips_used"])
            return
        self.uncertain.update(entry.get("intent", ()))
        vols = entry.get("volumes", {})
        self.volumes.update({k: float(v) for k, v in vols.items()})
        self.uncertain.difference_update(vols)
        if "tips_used" in entry:
            self.tips_used = int(entry["tips_used"])

    def _load(self) -> None:
        assert self.path is not None
        if not self.path.exists():
            return
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # torn last line: that write never completed
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break
            self._apply(entry)

    def _snapshot(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        snap = {
            "snapshot": {
                "volumes": self.volumes,
                "uncertain": sorted(self.uncertain),
                "tips_used": self.tips_used,
            }
        }
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(snap, separators=(",", ":")) + "\n")
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _append(self, entry: dict[str, Any]) -> None:
        if self.path is None:
            return
        if self._appended >= self.snapshot_every:
            self._snapshot()  # the state already includes ``entry``
            self._appended = 0
            return
        self._appended += 1
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
            if self.fsync:
                fh.flush()
                os.fsync(fh.fileno())
