"""Fields measured in worker processes give exactly what the calling process measures."""

from __future__ import annotations

import numpy as np
import pytest

import analyzers.parallel as parallel
from analyzers.plate import measure_plate
from tests.analyzers.conftest import make_plate

SPEC = {
    **{w: ("negative_control", None, 60, 0.5) for w in ("B02", "C02", "D02")},
    **{w: ("positive_control", None, 8, 0.0) for w in ("B11", "C11")},
    **{w: ("sample", 0, 40, 0.4) for w in ("B04", "C04", "D04")},
}


def test_a_worker_pool_measures_the_same_as_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    frames, layout = make_plate(SPEC, fields=2)
    monkeypatch.setenv("CELLPILOT_ANALYSIS_WORKERS", "1")
    serial = measure_plate(frames, layout)
    monkeypatch.setenv("CELLPILOT_ANALYSIS_WORKERS", "2")
    monkeypatch.setattr(parallel, "MIN_PARALLEL_PIXELS", 0)  # this small plate would stay here
    pooled = measure_plate(frames, layout)
    assert parallel._pool is not None  # the pool did the work
    parallel._discard_pool()  # the workers' memory back before the next test
    assert pooled.fields.keys() == serial.fields.keys()
    for well, fields in serial.fields.items():
        for a, b in zip(pooled.fields[well], fields, strict=True):
            assert np.array_equal(a.area_px, b.area_px)  # the same nuclei
            for name, value in vars(b).items():  # intensities to rounding (summation order)
                if isinstance(value, str):
                    assert getattr(a, name) == value
                else:
                    got = np.asarray(getattr(a, name), dtype=float)
                    want = np.asarray(value, dtype=float)
                    assert np.allclose(got, want, rtol=1e-6, atol=0), (
                        well,
                        name,
                        float(np.max(np.abs(got - want) / np.abs(want))),
                    )
    assert pooled.threshold.value == pytest.approx(serial.threshold.value, rel=1e-6)
    assert sum(f.area_px.size for fs in pooled.fields.values() for f in fs) > 100


def test_workers_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLPILOT_ANALYSIS_WORKERS", "two")
    with pytest.raises(ValueError, match="CELLPILOT_ANALYSIS_WORKERS"):
        parallel.analysis_workers()
    monkeypatch.setenv("CELLPILOT_ANALYSIS_WORKERS", "0")
    assert parallel.analysis_workers() == 1
