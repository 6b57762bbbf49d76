"""Campaign files: YAML validated by pydantic models, with errors that name the field.

A campaign file says what to optimise (search space, objectives, constraints), how to plan
(planner and batch size), what to do in the lab (protocol, instruments), how much (budget), who
approves (approval), and where to record it (ledger). ``cellpilot schema`` exports the JSON
Schema so editors can complete campaign files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from planners.space import Objective, OutcomeConstraint, SearchSpace


class CampaignFileError(Exception):
    """A campaign file cannot be used. ``str(err)`` is a one-paragraph message for the user."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = [shorten(p) for p in problems]
        shown = self.problems[:10] + (
            [f"and {len(problems) - 10} more"] if len(problems) > 10 else []
        )
        super().__init__(f"campaign file {shorten(source)} is invalid: " + "; ".join(shown) + ".")


def shorten(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters (a value pasted into a file can be megabytes)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 20] + f"… ({len(text)} characters)"


#: Largest seed: seeds reach numpy and torch generators, which take 64-bit values; the
#: runner derives per-round seeds as ``seed * 1000 + round``.
MAX_SEED = 2**32 - 1
#: Largest campaign file read (a campaign file is a few kB; anything this big is a mistake).
MAX_FILE_BYTES = 1_000_000


def _reject_bool_numbers(cls: type[BaseModel], data: object) -> object:
    """``true``/``false`` where a number belongs is a mistake, not 1 or 0 (pydantic would coerce)."""
    if isinstance(data, dict):
        for name, field in cls.model_fields.items():
            value = data.get(field.alias or name)
            kinds = getattr(field.annotation, "__args__", (field.annotation,))
            if (
                isinstance(value, bool)
                and bool not in kinds
                and any(k in (int, float) for k in kinds)
            ):
                raise ValueError(f"{name}: {str(value).lower()} is not a number")
    return data


class _Spec(BaseModel):
    # No NaN or infinity: every number in a campaign file must be a real value.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: object) -> object:
        return _reject_bool_numbers(cls, data)


class PlannerSpec(_Spec):
    name: str = Field(default="bayesian", description="registered planner: bayesian, sobol, random")
    batch_size: int | Literal["auto"] = Field(
        default="auto", description="experiments per round; 'auto' fills the plate"
    )

    @model_validator(mode="after")
    def _batch_positive(self) -> PlannerSpec:
        if self.batch_size != "auto" and not 1 <= self.batch_size <= 10_000:
            raise ValueError(f"batch_size must be 'auto' or 1 to 10000, not {self.batch_size}")
        return self

    settings: dict[str, Any] = Field(
        default_factory=dict, description="planner options, e.g. {profile: fast}"
    )
    plate_parameters: list[str] = Field(
        default_factory=list,
        description="parameters shared by the whole plate (one value per batch), e.g. incubation_h",
    )
    preference: dict[str, float] | None = Field(
        default=None,
        description="several objectives: weight per metric for choosing the recommended point",
    )


class TransferSpec(_Spec):
    """Earlier campaigns (same assay, another cell line or lot) whose data the planner may use."""

    prior_campaigns: list[str] = Field(
        default_factory=list, description="names of campaigns in the same ledger"
    )


class ProtocolSpec(_Spec):
    name: str = Field(default="dose_response", description="registered protocol")
    settings: dict[str, Any] = Field(default_factory=dict, description="the protocol's settings")


class AnalyzerSpec(_Spec):
    name: str = Field(default="nuclei_coculture", description="registered analyzer")
    settings: dict[str, Any] = Field(default_factory=dict)


class BudgetSpec(_Spec):
    rounds: int | None = Field(default=None, ge=1, le=100_000, description="plates to run")
    experiments: int | None = Field(
        default=None, ge=1, le=10_000_000, description="valid experiments to measure"
    )
    deadline_h: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="campaign clock hours after start; no new round after it",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetSpec:
        if self.rounds is None and self.experiments is None and self.deadline_h is None:
            raise ValueError("give at least one of rounds, experiments, deadline_h")
        return self


class ApprovalPolicySpec(_Spec):
    """A standing approval an operator signs before leaving (``approval.mode: policy``).

    Proposals inside the envelope are approved automatically; one outside waits for a person
    (``outside: wait``, with an alert), is clipped into the bounds (``clip``) or rejected.
    """

    signed_by: str = Field(description="the operator who signs the standing approval")
    parameter_bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="parameter -> [low, high] approved without asking"
    )
    max_plates: int | None = Field(default=None, ge=1, description="plates approved without asking")
    max_reagent_ul: dict[str, float] = Field(
        default_factory=dict, description="reagent -> µL the whole campaign may use"
    )
    outside: Literal["wait", "clip", "reject"] = "wait"

    @model_validator(mode="after")
    def _bounds_ordered(self) -> ApprovalPolicySpec:
        for name, (lo, hi) in self.parameter_bounds.items():
            if lo > hi:
                raise ValueError(f"parameter_bounds.{name}: low {lo} is above high {hi}")
        return self


class ApprovalSpec(_Spec):
    """The approval gate: ``auto`` approves everything, ``manual`` waits for a person,
    ``policy`` approves inside a signed envelope and escalates the rest."""

    mode: Literal["auto", "manual", "policy"] = "auto"
    policy: ApprovalPolicySpec | None = None
    timeout_h: float | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="wall-clock hours to wait for a person before on_timeout",
    )
    on_timeout: Literal["pause", "skip_round", "fallback_best"] = Field(
        default="pause",
        description="pause the campaign, skip the round, or run the best-known safe condition",
    )
    poll_s: float = Field(
        default=2.0, gt=0, le=60, description="how often the gate looks for decisions"
    )

    @model_validator(mode="after")
    def _policy_given(self) -> ApprovalSpec:
        if self.mode == "policy" and self.policy is None:
            raise ValueError("mode 'policy' needs a policy (signed_by, parameter_bounds, ...)")
        return self


class AlertsSpec(_Spec):
    """Where to tell people that the campaign needs them (Slack-compatible JSON webhook)."""

    webhook_url: str | None = Field(default=None, description="POSTed {text, campaign, event, ...}")
    timeout_s: float = Field(default=5.0, gt=0, le=300)


class InstrumentSpec(_Spec):
    driver: str = Field(default="simulated", description="simulated | cavro | pylabrobot | mmcore")
    settings: dict[str, Any] = Field(default_factory=dict)


class InstrumentsSpec(_Spec):
    liquid_handler: InstrumentSpec = Field(default_factory=InstrumentSpec)
    microscope: InstrumentSpec = Field(default_factory=InstrumentSpec)
    plate_mover: InstrumentSpec | None = Field(
        default=None,
        description="a robot arm with a plate hotel that carries plates between the handler, "
        "the incubator and the microscope, each move taking its transfer time (driver "
        "simulated: settings transfer_s, transfer_times_s, hotel_slots); none: plates are "
        "carried by hand and moves take no campaign time",
    )


class SimulationSpec(_Spec):
    """The virtual lab used by simulated instruments (dry-runs)."""

    assay: str | None = Field(
        default=None, description="ground-truth assay for the report's baselines"
    )
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    reports_volumes: bool = Field(
        default=True, description="False: the simulated handler cannot measure wells (no LLD)"
    )
    failed_well_rate: float = Field(default=0.01, ge=0, le=0.5)
    seeded_cells_per_line: float = Field(
        default=1000,
        gt=0,
        le=1_000_000,
        description="cells of each line seeded per well; ~1000 keeps vehicle wells at ~170 nuclei "
        "per field, where counting is accurate (denser fields undercount overlapping nuclei)",
    )
    image_size_px: int = Field(default=256, ge=64, le=2048)


class QCSpec(_Spec):
    """What happens to a plate that fails QC (Z' below the analyzer's threshold, control CV too
    high, too many flagged wells): it never feeds the planner silently."""

    on_fail: Literal["hold", "exclude", "requeue"] = Field(
        default="hold",
        description="hold: the plate waits for an operator (accept, exclude or re-run it; the "
        "campaign goes on with other plates); exclude: its results are kept for the record but "
        "not planned from; requeue: its experiments run again on a later plate",
    )


class WorkcellSpec(_Spec):
    """The workcell's capacities: how many plates may be in flight at once.

    With ``max_plates_in_flight: 1`` (the default) a campaign runs one plate at a time. With
    more, the next plate is proposed (the plates in flight passed to the planner as pending),
    approved, pipetted and put in the incubator while earlier plates incubate; plates are read
    when their incubation ends.
    """

    max_plates_in_flight: int = Field(
        default=1, ge=1, le=200, description="plates between proposal and analysis"
    )
    incubator_slots: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="plates the incubator holds; default max_plates_in_flight",
    )
    read_tolerance_h: float = Field(
        default=1.0,
        ge=0,
        le=48,
        description="a read later than this after the incubation ends is recorded as late",
    )


class LedgerSpec(_Spec):
    url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///runs/cellpilot.db"
    )
    data_dir: str | None = Field(default=None, description="raw data folder; default runs/<name>")


class CampaignSpec(_Spec):
    """A whole campaign file."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$", max_length=100, description="unique campaign name"
    )
    description: str = Field(default="", max_length=20_000)
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="seeds every random choice")
    space: SearchSpace
    objectives: list[Objective] = Field(min_length=1)
    outcome_constraints: list[OutcomeConstraint] = Field(default_factory=list)
    planner: PlannerSpec = Field(default_factory=PlannerSpec)
    transfer: TransferSpec = Field(default_factory=TransferSpec)
    protocol: ProtocolSpec = Field(default_factory=ProtocolSpec)
    analyzer: AnalyzerSpec = Field(default_factory=AnalyzerSpec)
    budget: BudgetSpec
    approval: ApprovalSpec = Field(default_factory=ApprovalSpec)
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    instruments: InstrumentsSpec = Field(default_factory=InstrumentsSpec)
    simulation: SimulationSpec = Field(default_factory=SimulationSpec)
    workcell: WorkcellSpec = Field(default_factory=WorkcellSpec)
    qc: QCSpec = Field(default_factory=QCSpec)
    ledger: LedgerSpec = Field(default_factory=LedgerSpec)

    @model_validator(mode="after")
    def _metrics_unique(self) -> CampaignSpec:
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError("objectives name the same metric twice")
        unknown = set(self.planner.plate_parameters) - set(self.space.names)
        if unknown:
            raise ValueError(f"planner.plate_parameters names {sorted(unknown)}, not in the space")
        if self.planner.preference and set(self.planner.preference) - set(metrics):
            raise ValueError("planner.preference must weight objective metrics only")
        if self.name in self.transfer.prior_campaigns:
            raise ValueError("transfer.prior_campaigns cannot name the campaign itself")
        return self

    def spec_hash(self) -> str:
        """Hash of what defines the experiment (not the budget, approval or alerts, which may change)."""
        d = self.model_dump(
            mode="json",
            exclude={"budget", "ledger", "description", "approval", "alerts", "workcell", "qc"},
        )
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("continuous", "integer", "categorical", "function-after", "function-before"):
            continue  # discriminator tags and validator wrappers
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        elif e["type"] == "missing":
            msg = "is required"
        problems.append(f"{_loc(tuple(e['loc']))}: {msg}")
    return problems


MAX_NESTING = 40


def _too_deep(data: Any, limit: int = MAX_NESTING) -> bool:
    stack = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def parse_campaign(data: Any, source: str = "<data>") -> CampaignSpec:
    """Validate already-loaded campaign data; raise :class:`CampaignFileError`."""
    if not isinstance(data, dict):
        raise CampaignFileError(source, ["the file must be a YAML mapping of fields"])
    if _too_deep(data):
        raise CampaignFileError(source, [f"nests deeper than {MAX_NESTING} levels"])
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as err:
        raise CampaignFileError(source, format_validation_error(err)) from None


def load_campaign(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign YAML file (a regular file of UTF-8 text, at most 1 MB)."""
    p = Path(path)
    try:
        if not p.is_file():  # a FIFO or a device would block or never end
            problem = "does not exist" if not p.exists() else "is not a regular file"
            raise CampaignFileError(str(p), [problem])
        if p.stat().st_size > MAX_FILE_BYTES:
            raise CampaignFileError(str(p), [f"is larger than {MAX_FILE_BYTES // 1000} kB"])
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise CampaignFileError(str(p), [f"cannot be read ({e.strerror})"]) from None
    except UnicodeDecodeError as e:
        raise CampaignFileError(str(p), [f"is not UTF-8 text (byte {e.start})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CampaignFileError(
            str(p), [f"is not valid YAML{where}: {getattr(e, 'problem', e)}"]
        ) from None
    except RecursionError:
        raise CampaignFileError(str(p), ["nests too deeply to be a campaign file"]) from None
    try:
        return parse_campaign(data, str(p))
    except RecursionError:
        raise CampaignFileError(str(p), ["nests too deeply to be a campaign file"]) from None


def campaign_json_schema() -> dict[str, Any]:
    """JSON Schema of campaign files, with the registered protocols' settings filled in."""
    from protocols import protocol_class, registered_protocols

    schema = CampaignSpec.model_json_schema()
    variants = []
    for name in registered_protocols():
        sub = protocol_class(name).settings_model.model_json_schema()
        schema["$defs"].update(sub.pop("$defs", {}))
        sub["title"] = f"settings of protocol {name!r}"
        variants.append(sub)
    schema["$defs"]["ProtocolSpec"]["properties"]["settings"] = {
        "description": "settings of the named protocol",
        "anyOf": variants,
    }
    return schema
