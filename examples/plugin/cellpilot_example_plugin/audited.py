"""A liquid handler that writes every operation of another one to a CSV audit file.

Settings (``instruments.liquid_handler.settings``):

- ``inner``: the driver that really moves liquid (default ``simulated``), with
  ``inner_settings`` passed to it;
- ``audit_file``: the CSV to append to (default ``<data dir>/liquid_audit.csv``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from controller.rig import BuildContext, InstrumentConfigError, driver, find_driver

_KNOWN = {"inner", "inner_settings", "audit_file"}


class AuditedLiquidHandler:
    """Delegates every call to ``inner`` and appends a row per operation to ``path``."""

    def __init__(self, inner: Any, path: Path) -> None:
        self.inner = inner
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            self._write(["operation", "source_or_plate", "well", "reagent", "volume_ul"])

    def _write(self, row: list[Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow(row)

    def aspirate(
        self, source: str, reagent: str, stock_concentration_um: float, volume_ul: float
    ) -> None:
        self.inner.aspirate(source, reagent, stock_concentration_um, volume_ul)
        self._write(["aspirate", source, "", reagent, volume_ul])

    def dispense(self, plate: str, well: str, volume_ul: float) -> None:
        self.inner.dispense(plate, well, volume_ul)
        self._write(["dispense", plate, well, "", volume_ul])

    def mix(self, plate: str, well: str, volume_ul: float, cycles: int) -> None:
        self.inner.mix(plate, well, volume_ul, cycles)
        self._write(["mix", plate, well, "", volume_ul])

    def discard_tip(self) -> None:
        self.inner.discard_tip()
        self._write(["discard_tip", "", "", "", 0])

    def well_volume_ul(self, plate: str, well: str) -> float | None:
        return self.inner.well_volume_ul(plate, well)

    def identify(self) -> dict[str, Any]:
        return {"driver": "audited", "audit_file": str(self.path), "inner": self.inner.identify()}

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> Any:  # optional capabilities of the inner handler
        return getattr(self.inner, name)


def _validate(settings: dict[str, Any], spec: Any, dry_run: bool) -> None:
    unknown = sorted(set(settings) - _KNOWN)
    if unknown:
        raise InstrumentConfigError(
            f"instruments.liquid_handler.settings: unknown settings {unknown}; known: {sorted(_KNOWN)}"
        )
    inner = find_driver("liquid_handler", str(settings.get("inner", "simulated")))
    if inner is None or inner.name == "audited":
        raise InstrumentConfigError(
            f"instruments.liquid_handler.settings.inner: {settings.get('inner')!r} is not a liquid handler driver"
        )


@driver("liquid_handler", "audited", dry_run=True, validate=_validate)
def audited_liquid_handler(settings: dict[str, Any], ctx: BuildContext) -> AuditedLiquidHandler:
    """Build the inner driver (``simulated`` in a dry-run unless it can be emulated) and wrap it."""
    _validate(settings, ctx.spec, ctx.dry_run)
    inner = find_driver("liquid_handler", str(settings.get("inner", "simulated")))
    assert inner is not None
    if ctx.dry_run and not inner.dry_run:
        inner = find_driver("liquid_handler", "simulated")
        assert inner is not None
    path = Path(settings.get("audit_file") or ctx.data_dir / "liquid_audit.csv")
    return AuditedLiquidHandler(inner(dict(settings.get("inner_settings", {})), ctx), path)
