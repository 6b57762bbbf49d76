"""Smoke test of benchmarks/outliers.py on one small plate: the artefacts go where the
benchmark says, and one emptied vehicle well is flagged and barely moves the viabilities."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def plate():
    sys.path.insert(0, str(BENCH))
    try:
        import outliers

        yield outliers, outliers.measure(3, 200)
    finally:
        sys.path.remove(str(BENCH))


def test_artefacts_are_injected_once_per_group(plate) -> None:
    bench, (sim, measured, twin) = plate
    kinds = sorted(sim.injected.values())
    assert kinds.count("empty") == 2 and kinds.count("bubble") == 2 and kinds.count("debris") == 2
    groups = [sim.layout.by_well()[w].experiment for w in sim.injected]
    assert len(groups) == len(set(groups))
    assert twin is not None and set(sim.clean_vehicle) <= set(sim.injected)


def test_an_emptied_vehicle_well_is_flagged_and_moves_no_viability(plate) -> None:
    bench, (sim, measured, twin) = plate
    from analyzers.settings import AnalysisSettings

    robust = bench.score([(sim, measured, twin)], AnalysisSettings())
    earlier = bench.score([(sim, measured, twin)], bench.EARLIER)
    assert robust["caught_empty"][0] == 1.0
    # what is left is the loss of one of six samples (~σ/6, benchmarks/README.md); the plain
    # mean of the earlier analyzer falls by ~1/6 and every viability rises by ~20 %
    assert robust["vehicle_shift"][0] < 0.05 and earlier["vehicle_shift"][0] > 0.12
    assert robust["clean_flagged"] <= earlier["clean_flagged"]


def test_time_zero_wells_give_gr_values_and_qc_reports_per_line(plate) -> None:
    bench, (sim, measured, twin) = plate
    from analyzers.plate import analyze_measurements

    a = analyze_measurements(measured)
    assert len(a.controls["time_zero"].used) >= 3
    scores = [e.values for e in a.experiments.values()]
    assert all({"tumour_gr", "normal_gr", "selectivity_gr"} <= set(v) for v in scores)
    assert all(-1.0 <= v["tumour_gr"] <= 1.3 for v in scores)
    # a cytotoxic well has fewer tumour cells than at time zero: GR < 0 exactly then
    t0 = a.controls["time_zero"].reference["tumour_count"]
    for r in a.wells.values():
        if "tumour_gr" in r.metrics:
            assert (r.metrics["tumour_gr"] < 0) == (r.metrics["tumour_count"] < t0)
    assert set(a.qc.z_prime) == {"tumour_count", "normal_count", "cell_count"}
    assert set(a.qc.control_cv) == {"tumour_count", "normal_count"}
    assert a.qc.solvent == "dmso" and a.qc.solvent_percent == 0.5
    assert set(a.qc.control_outliers) == {
        w
        for w, k in sim.injected.items()
        if k == "empty" and w in a.controls["negative_control"].wells
    }
