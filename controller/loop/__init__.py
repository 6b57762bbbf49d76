"""The loop: what happens to a campaign, round by round, and who may steer it.

| module | owns |
|---|---|
| :mod:`controller.loop.runner` | the campaign's state machine (propose → approve → compile → execute → analyse), pause/resume/abort, budget |
| :mod:`controller.loop.proposing` | asking the planner for a round's proposals (history, pending, re-queued, rejected) |
| :mod:`controller.loop.gate` | the approval gate (auto, manual, signed policy, timeouts) |
| :mod:`controller.loop.operator` | operator decisions (conditional: one winner) and control requests, shared by the CLI and the console |
| :mod:`controller.loop.engine` | running a round's steps on instruments, journaled before and after; recovery of uncertain steps |
| :mod:`controller.loop.analysis` | turning a round's stored images into measurements |
| :mod:`controller.loop.events` | the event kinds, appending to the sealed event log (:mod:`controller.ledger.chain`), the in-process bus |
| :mod:`controller.loop.alerts` | webhook alerts subscribed to the bus |
| :mod:`controller.loop.clocks` | the wall clock (dry-runs inject a simulated one) |
| :mod:`controller.loop.scheduling` | wall-clock start times (APScheduler, jobs in the ledger's database) |
| :mod:`controller.loop.failpoints` | named crash points for the kill-and-resume tests |
"""
