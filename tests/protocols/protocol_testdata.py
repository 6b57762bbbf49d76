"""Settings and search spaces shared by the protocol tests (a uniquely named module, so that
test files can import it without clashing with other packages' conftest modules)."""

from __future__ import annotations

from typing import Any

from planners.space import SearchSpace


def base_settings(**overrides: Any) -> dict[str, Any]:
    """A two-drug combination screen on a 96-well plate with aqueous stocks, dosed straight
    from the stocks (no intermediates): the volume arithmetic without solvent matching, which
    ``tests/protocols/test_solvent.py`` covers; single-agent wells off, which
    ``tests/protocols/test_single_agent.py`` covers."""
    settings: dict[str, Any] = {
        "single_agent_wells": False,
        "solvent": "water",
        "max_serial_dilutions": 0,
        "plate_type": "96",
        "replicates": 3,
        "negative_controls": 6,
        "positive_controls": 6,
        "positive_control": {"reagent": "staurosporine", "concentration_um": 1.0},
        "doses": ["drug_a_um -> drug_a", {"parameter": "partner_um", "reagent_from": "partner"}],
        "stocks": {
            "drug_a": [10, 100, 1000],
            "drug_b": [100, 1000, 10000],
            "drug_c": [100, 1000, 10000],
            "staurosporine": [100],
        },
    }
    settings.update(overrides)
    return settings


def combo_space(**changes: Any) -> SearchSpace:
    params: list[dict[str, Any]] = [
        {"type": "continuous", "name": "drug_a_um", "low": 0.05, "high": 100, "log_scale": True},
        {"type": "categorical", "name": "partner", "levels": ["drug_b", "drug_c"]},
        {"type": "continuous", "name": "partner_um", "low": 0.5, "high": 50, "log_scale": True},
    ]
    for p in params:
        p.update(changes.get(p["name"], {}))
    return SearchSpace.model_validate({"parameters": params})
