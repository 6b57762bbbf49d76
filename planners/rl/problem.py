"""The problem an adaptive-dosing policy is trained for, and how an outcome is scored.

A :class:`DosingProblem` bundles what the agent must agree on with the lab: the protocol's
settings (dose steps, interval, number of decisions, exchange volumes, wells per decision
unit), the distribution of cultures it is trained on, the imaging noise, and the objective.
It is stored in every policy's sidecar, so a campaign can be checked against it.

The objective, per culture at the end of the time-course (ground-truth viabilities: treated
cells over the same culture's untreated cells)::

    score     = (1 - tumour_viability) - drug_cost_per_um * total dose added (µM, all drugs)
    feasible  = normal_viability >= normal_viability_min
    penalised = score - violation_penalty * max(0, normal_viability_min - normal_viability)

The agent is trained to maximise ``penalised``; benchmarks report ``score``, feasibility and
both means.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocols.adaptive_dosing import AdaptiveDosing, AdaptiveDosingSettings
from simulators.timecourse import CulturePrior, ImagingNoise, TimecourseModel


def default_protocol_settings(**overrides: Any) -> AdaptiveDosingSettings:
    """The default time-course: 8 decisions 12 h apart, drug_a and drug_b in three steps each,
    groups of 3 replicate wells, 6 negative and 4 positive (staurosporine) controls."""
    settings: dict[str, Any] = {
        "dose_steps_um": {"drug_a": [0.5, 1.0, 2.0], "drug_b": [0.25, 0.5, 1.0]},
        "stocks": {"drug_a": [30.0, 300.0], "drug_b": [30.0, 300.0], "staurosporine": [100.0]},
        "master_stock_um": {"drug_a": 10000.0, "drug_b": 10000.0, "staurosporine": 10000.0},
        "positive_control": {"reagent": "staurosporine", "concentration_um": 1.0},
    }
    settings.update(overrides)
    return AdaptiveDosingSettings.model_validate(settings)


class DosingObjective(BaseModel):
    """What a good time-course is (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    normal_viability_min: float = Field(default=0.6, ge=0, le=1)
    drug_cost_per_um: float = Field(default=0.005, ge=0, description="score per µM added")
    violation_penalty: float = Field(default=10.0, ge=0, description="per unit of viability")

    def evaluate(
        self, tumour_viability: np.ndarray, normal_viability: np.ndarray, drug_um: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Score outcomes (arrays broadcast together).

        Returns:
            ``score``, ``feasible`` (bool), ``penalised``, and the inputs
            (``tumour_viability``, ``normal_viability``, ``drug_um``).
        """
        tv, nv = np.asarray(tumour_viability, float), np.asarray(normal_viability, float)
        drug = np.asarray(drug_um, float)
        score = (1.0 - tv) - self.drug_cost_per_um * drug
        gap = np.maximum(self.normal_viability_min - nv, 0.0)
        return {
            "score": score,
            "feasible": nv >= self.normal_viability_min,
            "penalised": score - self.violation_penalty * gap,
            "tumour_viability": tv,
            "normal_viability": nv,
            "drug_um": drug,
        }


class DosingProblem(BaseModel):
    """Protocol, culture distribution, imaging noise and objective of an adaptive-dosing task.

    ``imaging_noise.fields_per_well`` is taken from the protocol's imaging settings.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: AdaptiveDosingSettings = Field(default_factory=default_protocol_settings)
    prior: CulturePrior = Field(default_factory=CulturePrior)
    imaging_noise: ImagingNoise = Field(default_factory=ImagingNoise)
    objective: DosingObjective = Field(default_factory=DosingObjective)
    seeded_cells: tuple[float, float] = Field(
        default=(2000.0, 2000.0), description="(tumour, normal) cells per well at baseline"
    )
    dt_h: float = Field(default=1.0, gt=0, description="simulation step, h")

    @model_validator(mode="after")
    def _same_drugs(self) -> DosingProblem:
        if self.prior.drugs != self.drugs:
            raise ValueError(
                f"prior.half_life_h names drugs {list(self.prior.drugs)} but the "
                f"protocol's dose_steps_um names {list(self.drugs)} (same order)"
            )
        return self

    @property
    def drugs(self) -> tuple[str, ...]:
        """Drugs a decision may add, in the protocol's order."""
        return tuple(self.protocol.dose_steps_um)

    @property
    def wells_per_unit(self) -> int:
        """Wells pooled into one observation: the replicates of a group, or 1 per well."""
        return self.protocol.replicates if self.protocol.decision_unit == "group" else 1

    def build_protocol(self) -> AdaptiveDosing:
        """The protocol object (its liquid arithmetic and checks)."""
        return AdaptiveDosing(self.protocol)

    def model(self) -> TimecourseModel:
        """The simulator's dynamics for this problem's drugs and seeding."""
        return TimecourseModel(drugs=self.drugs, seeded_cells=self.seeded_cells, dt_h=self.dt_h)

    def noise(self) -> ImagingNoise:
        """Imaging noise with the protocol's fields per well."""
        return self.imaging_noise.model_copy(
            update={"fields_per_well": self.protocol.imaging.fields_per_well}
        )

    def dose_levels(self) -> list[np.ndarray]:
        """Per drug, 0 and its dose steps ascending (µM): the agent's discrete choices."""
        return [np.array([0.0, *sorted(self.protocol.dose_steps_um[d])]) for d in self.drugs]
