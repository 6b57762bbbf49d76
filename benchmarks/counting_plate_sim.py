"""Counting on the campaign simulator's fields: found / true nuclei by density (issue 11).

The dry-run's microscope (:func:`simulators.microscope.render_field`: two lines, DAPI + GFP,
~4 px nuclei at 2.6 µm/px, a fifth of them clumped with a partner) against the plate
analyzer's segmentation at the campaign's settings (:func:`analyzers.features.measure_field`
with :func:`analyzers.nuclei.segmentation_params` of the default nucleus diameter). Nothing
here is tuned: the segmentation settings were chosen elsewhere; this reports how counts
follow density, since a count bias that grows with density (dense vehicle wells against sparse
treated wells) biases every viability.

    OMP_NUM_THREADS=1 python benchmarks/counting_plate_sim.py --seeds 10
    python benchmarks/counting_plate_sim.py --ledger sqlite:///runs/demo/ledger.db  # a dry-run

With ``--ledger``, a finished dry-run of a ``drug_combo``-shaped campaign instead: every
measured experiment's viabilities against the simulated biology's truth
(:func:`simulators.assays.get_assay`), i.e. what the counting bias does to what the planner
sees.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzers import AnalysisSettings  # noqa: E402
from analyzers.features import (  # noqa: E402
    FieldMeasurement,
    fit_marker_threshold,
    measure_field,
)
from analyzers.nuclei import segmentation_params  # noqa: E402
from instruments.interfaces import Frame  # noqa: E402
from simulators import microscope  # noqa: E402

PER_LINE = (5, 15, 40, 80, 120, 170, 220)  # nuclei of each line per field
# (tumour, normal) per field, as on a plate: vehicle wells are dense, treated wells sparser
MIXES = ((110, 55), (60, 60), (30, 60), (10, 20), (3, 8))


def _measure(
    n_tumour: int, n_normal: int, seed: int, pixel_size_um: float, params: dict
) -> tuple[FieldMeasurement, dict]:
    """One simulated field, measured at the campaign's settings, and its truth."""
    img, truth = microscope.render_field(n_tumour, n_normal, rng=seed, pixel_size_um=pixel_size_um)
    frame = Frame(
        image=img, channels=("DAPI", "GFP"), plate="P", well="B02", field=0,
        pixel_size_um=pixel_size_um, position_um=(0.0, 0.0), timestamp_s=0.0,
    )  # fmt: skip
    return measure_field(frame, **params), truth


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="fields per density")
    ap.add_argument("--pixel-size-um", type=float, default=2.6)
    ap.add_argument("--ledger", help="a dry-run's ledger URL: measured vs true viabilities")
    ap.add_argument("--assay", default="drug_combo", help="the assay the campaign simulates")
    args = ap.parse_args(argv)
    if args.ledger:
        ledger_vs_truth(args.ledger, args.assay)
        return
    params = segmentation_params(AnalysisSettings().nucleus_diameter_um / args.pixel_size_um)
    print(f"{args.pixel_size_um} µm/px, {args.seeds} fields per density (seeds 1000+)")
    print(f"{'nuclei/field':>12} | {'true':>6} | {'found':>6} | {'found/true':>10} | worst field")
    ratios = {}
    for n in PER_LINE:
        found = true = 0
        worst = 1.0
        for seed in range(args.seeds):
            field, truth = _measure(n, n, 1000 + seed, args.pixel_size_um, params)
            got = field.n_nuclei
            t = truth["n_tumour"] + truth["n_normal"]
            found, true = found + got, true + t
            worst = max(worst, got / t, key=lambda r: abs(r - 1.0))
        ratios[n] = found / true
        print(f"{2 * n:>12} | {true:>6} | {found:>6} | {found / true:>10.3f} | {worst:.3f}")
    for dense in (80, 170, 220):
        print(
            f"bias {2 * dense} vs {2 * PER_LINE[0]} nuclei/field: "
            f"{(ratios[dense] - ratios[PER_LINE[0]]) * 100:+.1f} %"
        )
    by_class(args.seeds, args.pixel_size_um, params)


def by_class(seeds: int, pixel_size_um: float, params: dict) -> None:
    """Each line's count (GFP-positive tumour, negative normal), one marker threshold fitted
    over all the fields as on a plate: a line's viability is its count in a treated well over
    its count in the (denser) vehicle wells, so a density-dependent bias of one line moves
    that line's viabilities."""
    measured = []
    for nt, nn in MIXES:
        fields, true_t, true_n = [], 0, 0
        for seed in range(seeds):
            field, truth = _measure(nt, nn, 2000 + seed, pixel_size_um, params)
            fields.append(field)
            true_t, true_n = true_t + truth["n_tumour"], true_n + truth["n_normal"]
        measured.append(((nt, nn), fields, true_t, true_n))
    everything = [f for _, fs, _, _ in measured for f in fs]
    thr = fit_marker_threshold(
        np.concatenate([f.marker_mean for f in everything]),
        [f.marker_noise_sigma for f in everything],
    ).value
    print(f"\nby line (seeds 2000+, one marker threshold {thr:.0f} over all fields)")
    print(f"{'tumour + normal per field':>26} | {'tumour found/true':>17} | normal found/true")
    for (nt, nn), fields, true_t, true_n in measured:
        found_t = sum(int((f.marker_mean > thr).sum()) for f in fields)
        found_n = sum(f.n_nuclei for f in fields) - found_t
        print(f"{f'{nt} + {nn}':>26} | {found_t / true_t:>17.3f} | {found_n / true_n:.3f}")


def ledger_vs_truth(url: str, assay_name: str) -> None:
    """Measured minus true viability of every measured experiment in the ledger."""
    from sqlmodel import Session, select

    from controller.ledger.db import open_ledger_engine
    from controller.ledger.models import Experiment
    from simulators.assays import get_assay

    assay = get_assay(assay_name)
    with Session(open_ledger_engine(url)) as session:
        rows = session.exec(select(Experiment)).all()
    rows = [e for e in rows if "normal_viability" in (e.outcomes or {})]
    if not rows:
        sys.exit(f"no measured experiments in {url}")
    print(f"{len(rows)} measured experiments in {url}; truth: simulators.assays {assay_name!r}")
    truths = [assay.expected(e.params) for e in rows]
    print(f"{'metric':>18} | mean measured - true | SE | worst")
    for metric in ("normal_viability", "tumour_viability", "selectivity"):
        diff = np.array([e.outcomes[metric] - t[metric] for e, t in zip(rows, truths, strict=True)])
        se = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else float("nan")
        worst = diff[np.argmax(np.abs(diff))]
        print(f"{metric:>18} | {diff.mean():+20.3f} | {se:.3f} | {worst:+.3f}")


if __name__ == "__main__":
    main()
