"""Nucleus counting on simulated fields at realistic resolution, sparse to confluent (issue 11).

Fields come from :func:`simulators.nuclei_scene.render_scene` with every realistic effect
(chromatin texture and nucleoli, irregular outlines, colonies, mitoses, apoptotic nuclei,
debris, per-nucleus and per-field uneven staining, random defocus and brightness), at three
pixel sizes: 0.325 µm/px (20x unbinned, nuclei ~34 px), 0.65 µm/px (10x, ~17 px) and
1.3 µm/px (binned, ~8.5 px). Densities are nuclear coverages of the field from sparse (3 %)
to confluent (55 %); as in a dose series, sparse fields hold more dead cells: apoptotic
nuclei and debris per live nucleus fall from ~0.3 in the sparsest to 0.05 in the densest.

Truth is what an analyzer should count (live nuclei; a mitotic pair counts 2; apoptotic
nuclei and debris do not). Per pixel size, density and method it prints the pooled and
median count error, the worst field's error, object F1 at IoU 0.5 and the dense-vs-sparse
bias (median count error at the densest minus at the sparsest density).

Seeds: the **development** split uses field seeds 1000-1999 (everything in
``analyzers/seeded.py`` that was chosen on the simulator was chosen on it); the **held-out**
split uses seeds 2000-2999 and is only reported.

    OMP_NUM_THREADS=1 python benchmarks/analysis_sim.py --split development --fields 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from analysis_real import match, skimage_baseline  # noqa: E402

from analyzers import count_nuclei  # noqa: E402
from simulators.nuclei_scene import SceneOptions, coverage_count, render_scene  # noqa: E402

PIXEL_SIZES = {0.325: (512, 512), 0.65: (384, 384), 1.3: (256, 256)}
COVERAGES = (0.03, 0.12, 0.25, 0.4, 0.55)
SPLITS = {"development": 1000, "held-out": 2000}
DIAMETER_UM = 11.0
MIN_NUCLEI = 100  # sparse densities get more fields: a field of 10 nuclei moves 10 % a nucleus

METHODS = {
    "seeded (size given)": lambda im, px: (
        count_nuclei(im, pixel_size_um=px, nucleus_diameter_um=DIAMETER_UM, method="seeded").labels
    ),
    "seeded (size measured)": lambda im, px: count_nuclei(im, method="seeded").labels,
    "texture-aware (size given)": lambda im, px: (
        count_nuclei(
            im,
            pixel_size_um=px,
            nucleus_diameter_um=DIAMETER_UM,
            texture_aware=True,
            method="seeded",
        ).labels
    ),  # fmt: skip
    "texture-aware (size measured)": lambda im, px: (
        count_nuclei(im, texture_aware=True, method="seeded").labels
    ),
    "learned (size given)": lambda im, px: (
        count_nuclei(im, pixel_size_um=px, nucleus_diameter_um=DIAMETER_UM, method="learned").labels
    ),
    "learned (size measured)": lambda im, px: count_nuclei(im, method="learned").labels,
    "skimage baseline": lambda im, px: skimage_baseline(im, DIAMETER_UM / px),
}


def field_options(
    coverage: float, rng: np.random.Generator, scenario: str = "dose"
) -> SceneOptions:
    """Realistic, randomly varied effects for one field. ``scenario`` "dose": dead cells and
    debris commoner when sparse (a dose series); "even": 0.05 per live nucleus everywhere."""
    dead = 0.05 + 0.25 * max(0.0, 1.0 - coverage / max(COVERAGES)) * (scenario == "dose")
    return SceneOptions(
        texture=float(rng.uniform(0.5, 1.5)),
        nucleoli=float(rng.uniform(0.5, 2.5)),
        colony_fraction=float(rng.uniform(0.2, 0.8)),
        apoptotic_per_live=dead,
        debris_per_live=dead,
        stain_cv=float(rng.uniform(0.15, 0.35)),
        field_gradient=float(rng.uniform(0.0, 0.4)),
        defocus_sigma=float(rng.choice([0.0, 0.0, 0.04, 0.08])),
        peak_e=float(np.exp(rng.uniform(np.log(400), np.log(3000)))),
    )


def run(split: str, fields: int, methods: list[str], scenario: str = "dose") -> dict[str, Any]:
    """Every field of a split; returns per-(pixel size, coverage, method) records."""
    records: list[dict[str, Any]] = []
    for px, size in PIXEL_SIZES.items():
        d = DIAMETER_UM / px
        for ci, cov in enumerate(COVERAGES):
            n_live = coverage_count(cov, size, d)
            for f in range(max(fields, -(-MIN_NUCLEI // max(n_live, 1)))):
                seed = SPLITS[split] + 100 * ci + 10 * f + int(px * 1000) % 7
                rng = np.random.default_rng(seed)
                opts = field_options(cov, rng, scenario)
                image, truth = render_scene(
                    n_live, image_size=size, pixel_size_um=px,
                    options=opts, rng=rng,
                )  # fmt: skip
                for m in methods:
                    t0 = time.perf_counter()
                    pred = np.asarray(METHODS[m](image, px), np.int64)
                    dt = time.perf_counter() - t0
                    pred = np.unique(pred, return_inverse=True)[1].reshape(pred.shape)
                    tp, fp, fn, _ = match(truth.labels, pred)
                    dead_hits = match(truth.other_labels, pred)[0]
                    n = truth.n_counted
                    records.append(
                        {
                            "pixel_size_um": px, "coverage": cov, "method": m, "seed": seed,
                            "truth": n, "found": int(pred.max()),
                            "count_error": (int(pred.max()) - n) / max(n, 1),
                            "tp": tp, "fp": fp, "fn": fn, "dead_counted": dead_hits,
                            "seconds": dt, **truth.summary(),
                        }
                    )  # fmt: skip
    return {"split": split, "records": records}


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (pixel size, coverage, method), plus the dense-vs-sparse bias."""
    rows = []
    keys = sorted({(r["pixel_size_um"], r["method"]) for r in records})
    for px, m in keys:
        by_cov = {}
        for cov in COVERAGES:
            rs = [
                r
                for r in records
                if (r["pixel_size_um"], r["method"], r["coverage"]) == (px, m, cov)
            ]
            if not rs:
                continue
            errs = [r["count_error"] for r in rs]
            tp, fp, fn = (sum(r[k] for r in rs) for k in ("tp", "fp", "fn"))
            truth, found = sum(r["truth"] for r in rs), sum(r["found"] for r in rs)
            by_cov[cov] = {
                "pixel_size_um": px, "method": m, "coverage": cov, "fields": len(rs),
                "truth": truth, "found": found, "pooled_error": (found - truth) / max(truth, 1),
                "median_error": float(np.median(errs)), "worst_error": float(max(errs, key=abs)),
                "f1": 2 * tp / max(2 * tp + fp + fn, 1),
                "dead_counted": sum(r["dead_counted"] for r in rs),
                "dead": sum(r["n_apoptotic"] + r["n_debris"] for r in rs),
            }  # fmt: skip
        bias = by_cov[max(by_cov)]["median_error"] - by_cov[min(by_cov)]["median_error"]
        for row in by_cov.values():
            row["dense_minus_sparse"] = bias
            rows.append(row)
    return rows


def table(split: str, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{split}:",
        "| µm/px | method | coverage | fields | nuclei | found | pooled err | median err "
        "| worst field | F1 | dead counted | dense − sparse |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        lines.append(
            f"| {r['pixel_size_um']} | {r['method']} | {r['coverage']:.0%} | {r['fields']} "
            f"| {r['truth']} | {r['found']} | {r['pooled_error']:+.1%} | {r['median_error']:+.1%} "
            f"| {r['worst_error']:+.1%} | {r['f1']:.3f} | {r['dead_counted']}/{r['dead']} "
            f"| {r['dense_minus_sparse']:+.1%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=list(SPLITS), nargs="+", default=["development"])
    ap.add_argument(
        "--fields",
        type=int,
        default=3,
        help="fields per pixel size and density (more where sparse: >= 100 nuclei)",
    )
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument(
        "--scenario", choices=("dose", "even"), default="dose",
        help="dose: dead cells and debris 0.3 per live nucleus when sparse, 0.05 when dense; "
        "even: 0.05 everywhere (segmentation alone)",
    )  # fmt: skip
    ap.add_argument("--json", type=Path, help="write every field's record here")
    args = ap.parse_args(argv)
    out = {}
    for split in args.split:
        t0 = time.perf_counter()
        res = run(split, args.fields, args.methods, args.scenario)
        rows = summarise(res["records"])
        print(table(split, rows))
        print(f"({split}, scenario {args.scenario}: {time.perf_counter() - t0:.0f} s, "
              f"{time.strftime('%Y-%m-%d')})\n")  # fmt: skip
        out[split] = {"rows": rows, "records": res["records"]}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
