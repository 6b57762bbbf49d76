"""The ``cellpilot`` typer application: every sub-command, mounted from its own module.

| module | commands |
|---|---|
| :mod:`controller.cli.campaign` | ``run``, ``status``, ``report``, ``schema``, ``verify`` |
| :mod:`controller.cli.operator` | ``proposals``, ``approve``, ``reject``, ``edit``, ``pause``, ``resume``, ``abort`` |
| :mod:`controller.cli.plates` | ``plates``, ``plate accept|exclude|rerun`` (the QC gate) |
| :mod:`controller.cli.schedule` | ``scheduler``, ``jobs`` (and ``run --at``) |
| :mod:`controller.cli.worker` | ``submit``, ``worker`` (campaigns from a shared ledger) |
| :mod:`controller.cli.devices` | ``devices check`` |
| :mod:`controller.cli.pump` | ``pump init|valve|aspirate|dispense|status`` |
| :mod:`controller.cli.console` | ``serve``, ``users ...`` |
| :mod:`controller.cli.ledger` | ``ledger mask-secrets`` |
| :mod:`controller.cli.reanalyze` | ``reanalyze``, ``analysis list|use`` (analysis versions) |
| :mod:`controller.cli.analyze` | ``analyze`` (count nuclei in image files) |

Mistakes in a campaign file or a device fault are reported in a paragraph, never a traceback.
Exit codes: 0 done, 2 bad input (or refused: no account on a shared ledger), 3 campaign paused
(fault or signal), 4 ``verify`` found tampering (or ``reanalyze`` an altered image), 5 someone else decided the proposal first,
6 ``verify`` could not check every seal (a key this machine lacks), 1 unexpected error.
"""

from __future__ import annotations

import typer

from controller.cli import (
    analyze,
    campaign,
    console,
    devices,
    ledger,
    operator,
    plates,
    pump,
    reanalyze,
    schedule,
    worker,
)

# No local variables in tracebacks: they would print ledger URLs with their passwords.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="cellpilot: closed-loop autonomous lab controller",
)

campaign.register(app)
operator.register(app)
plates.register(app)
schedule.register(app)
worker.register(app)
devices.register(app)
pump.register(app)
console.register(app)
ledger.register(app)
reanalyze.register(app)
analyze.register(app)


def main() -> None:
    app()
