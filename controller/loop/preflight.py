"""Everything a campaign file must get right, checked before the ledger is touched.

A file that passes here must not fail after a robot moved because of something the file said:
the protocol and its settings, the planner and its settings, the analyzer, its settings, the
metrics it produces (objectives and constraints must name them), the imaging channels (the
protocol's must exist on the microscope, the analyzer's must be imaged), the drivers and their
settings, and the search space against the pipetting limits. Each failure is a
:class:`CampaignConfigError` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from analyzers import get_analyzer
from analyzers.exceptions import AnalysisError
from controller.loop.exceptions import CampaignError
from controller.rig.registry import InstrumentConfigError, check_instruments, microscope_channels
from controller.spec import CampaignSpec, format_validation_error, shorten
from planners import Planner, get_planner
from planners.exceptions import PlannerError
from plugins import PluginLoadError
from protocols import PlateProtocol, get_protocol
from protocols.exceptions import ProtocolError


class CampaignConfigError(CampaignError):
    """A campaign file asks for something that cannot work; nothing was written or moved.

    Attributes:
        field: the campaign file's field at fault, e.g. ``analyzer.settings``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {shorten(message, 600)}")
        self.field = field


@dataclass
class Checked:
    """The parts a campaign is built from, each validated."""

    protocol: PlateProtocol
    planner: Planner
    analyzer: Callable[..., Any]
    analyzer_settings: BaseModel | None


def _typed(field: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; any error it raises becomes a :class:`CampaignConfigError` on ``field``."""
    try:
        return fn()
    except CampaignConfigError:
        raise
    except ValidationError as err:
        raise CampaignConfigError(field, "; ".join(format_validation_error(err))) from None
    except (
        ProtocolError,
        PlannerError,
        AnalysisError,
        InstrumentConfigError,
        PluginLoadError,
    ) as err:
        raise CampaignConfigError(field, str(err)) from None
    except (TypeError, ValueError, KeyError, OverflowError) as err:  # a plugin's own constructor
        raise CampaignConfigError(field, f"not accepted ({type(err).__name__}: {err})") from None


def build_parts(spec: CampaignSpec) -> Checked:
    """Build the protocol, planner and analyzer the file names, validating their settings."""
    protocol = _typed("protocol", lambda: get_protocol(spec.protocol.name, spec.protocol.settings))
    planner = _typed(
        "planner.settings", lambda: get_planner(spec.planner.name, **spec.planner.settings)
    )
    analyzer = _typed("analyzer.name", lambda: get_analyzer(spec.analyzer.name))
    model = getattr(analyzer, "settings_model", None)
    settings = None
    if model is not None:
        settings = _typed("analyzer.settings", lambda: model.model_validate(spec.analyzer.settings))
    elif spec.analyzer.settings:
        raise CampaignConfigError(
            "analyzer.settings", f"analyzer {spec.analyzer.name!r} takes no settings"
        )
    return Checked(protocol, planner, analyzer, settings)


def _declared(obj: Any, attr: str, settings: BaseModel | None) -> set[str] | None:
    """An analyzer's declared ``metrics`` or ``channels`` (a collection, or a function of its
    settings); None when it declares nothing."""
    value = getattr(obj, attr, None)
    if value is None:
        return None
    if callable(value):
        value = value(settings)
    return set(value)


def check_metrics(spec: CampaignSpec, parts: Checked) -> None:
    """Objectives and outcome constraints must name metrics the analyzer produces."""
    produced = _declared(parts.analyzer, "metrics", parts.analyzer_settings)
    if produced is None:
        return
    for field, metrics in (
        ("objectives", [o.metric for o in spec.objectives]),
        ("outcome_constraints", [c.metric for c in spec.outcome_constraints]),
    ):
        unknown = sorted(set(metrics) - produced)
        if unknown:
            raise CampaignConfigError(
                field,
                f"{unknown} not produced by analyzer {spec.analyzer.name!r}; it produces {sorted(produced)}",
            )


def check_channels(spec: CampaignSpec, parts: Checked, *, dry_run: bool) -> None:
    """The protocol images channels the microscope has; the analyzer needs only imaged channels."""
    imaged = getattr(parts.protocol, "channels", None)
    imaged_set = set(imaged()) if callable(imaged) else None
    if imaged_set is not None:
        available = microscope_channels(spec, dry_run=dry_run)
        missing = sorted(imaged_set - available) if available is not None else []
        if missing:
            raise CampaignConfigError(
                "protocol.settings.imaging.channels",
                f"{missing} not on the microscope; it has {sorted(available or ())}",
            )
    needed = _declared(parts.analyzer, "channels", parts.analyzer_settings)
    if needed is not None and imaged_set is not None and needed - imaged_set:
        raise CampaignConfigError(
            "analyzer.settings",
            f"needs channels {sorted(needed - imaged_set)} the protocol does not image "
            f"(protocol.settings.imaging.channels: {sorted(imaged_set)})",
        )


def check_campaign(
    spec: CampaignSpec,
    *,
    dry_run: bool,
    plate_parameters: Iterable[str] = (),
    parts: Checked | None = None,
) -> Checked:
    """Every check that needs no ledger and moves nothing; returns the validated parts.

    Raises:
        CampaignConfigError: the first problem found, naming its field.
    """
    parts = parts or build_parts(spec)
    _typed("space", lambda: parts.protocol.check_space(spec.space))
    _typed("instruments", lambda: check_instruments(spec, dry_run=dry_run))
    check_metrics(spec, parts)
    check_channels(spec, parts, dry_run=dry_run)
    check = getattr(parts.planner, "check", None)
    if check is not None:
        _typed(
            "planner",
            lambda: check(
                spec.space,
                spec.objectives,
                spec.outcome_constraints,
                plate_parameters=list(plate_parameters),
            ),
        )
    _check_time_course(spec, parts)
    if _typed("protocol", parts.protocol.capacity) < 1:
        raise CampaignConfigError(
            "protocol.settings", "the plate holds no experiment with these settings"
        )
    return parts


def _check_time_course(spec: CampaignSpec, parts: Checked) -> None:
    """A time-course protocol (decisions between images) needs a planner that decides, and a
    deciding planner a time-course protocol it was trained for."""
    time_course = callable(getattr(parts.protocol, "compile_decision", None))
    decides = callable(getattr(parts.planner, "decide_units", None))
    if time_course and not decides:
        raise CampaignConfigError(
            "planner.name",
            f"protocol {spec.protocol.name!r} doses its plates "
            "decision by decision: it needs a deciding planner (rl)",
        )
    if decides and not time_course:
        raise CampaignConfigError(
            "protocol.name",
            f"planner {spec.planner.name!r} decides inside "
            "time-course plates: use a time-course protocol (adaptive_dosing)",
        )
    check_protocol = getattr(parts.planner, "check_protocol", None)
    if time_course and check_protocol is not None:
        _typed("planner.settings.policy", lambda: check_protocol(spec.protocol.settings))
