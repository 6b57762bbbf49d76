"""The assay-like simulators of the suite (see ``suite_functions.py`` for the split)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from suite_functions import _bump, _hill, _u
from suite_problems import Metrics, Problem, cat, cont, integer

# --------------------------------------------------------------------- mixed, media


def media7_cat3() -> Problem:
    """Basal medium x 6 concentrations; 'custom' is best only when growth factor and
    seeding density are tuned (narrow), 'DMEM' is good almost anywhere."""
    names = ["glucose_mm", "glutamine_mm", "serum_pct", "growth_factor_ng", "ph", "seeding"]
    space = [
        cat("basal", ["DMEM", "RPMI", "custom"]),
        cont("glucose_mm", 5, 25),
        cont("glutamine_mm", 0, 8),
        cont("serum_pct", 1, 20),
        cont("growth_factor_ng", 0.1, 100, log=True),
        cont("ph", 6.8, 7.6),
        cont("seeding", 1e3, 5e4, log=True),
    ]
    spec = {
        "DMEM": (1.0, [0.5, 0.4, 0.6, 0.5, 0.5, 0.45], 0.45),
        "RPMI": (0.9, [0.35, 0.6, 0.4, 0.3, 0.6, 0.55], 0.4),
        "custom": (1.35, [0.5, 0.5, 0.55, 0.85, 0.5, 0.8], [0.4, 0.4, 0.4, 0.16, 0.4, 0.2]),
    }

    def f(p: Mapping[str, Any]) -> Metrics:
        ps = {q.name: q for q in space}
        u = [_u(p[n], ps[n].low, ps[n].high, ps[n].log_scale) for n in names]  # type: ignore[union-attr]
        h, c, w = spec[str(p["basal"])]
        return {"yield": 0.1 + h * _bump(u, c, w)}

    return Problem(
        "media7_cat3",
        "dev",
        "mixed: 3-level medium, best level narrow (10 % noise)",
        space,
        f,
        objective="yield",
        noise={"yield": ("mul", 0.10)},
    )


def media6_cat5() -> Problem:
    """Supplement x 5 concentrations; 'hydrolysate' is best on a narrow diagonal ridge
    (glucose + glutamine balance), the others are broad bumps."""
    names = ["glucose_mm", "glutamine_mm", "serum_pct", "insulin_mg", "osmo"]
    space = [
        cont("glucose_mm", 2, 30),
        cont("glutamine_mm", 0, 10),
        cont("serum_pct", 0, 15),
        cont("insulin_mg", 0.1, 20, log=True),
        cont("osmo", 260, 380),
        cat("supplement", ["none", "ITS", "lipid", "hydrolysate", "feed_b"]),
    ]
    broad = {
        "none": (0.8, [0.5, 0.5, 0.7, 0.5, 0.4]),
        "ITS": (1.0, [0.45, 0.4, 0.3, 0.7, 0.5]),
        "lipid": (0.95, [0.6, 0.5, 0.5, 0.4, 0.6]),
        "feed_b": (0.9, [0.3, 0.7, 0.4, 0.5, 0.3]),
    }

    def f(p: Mapping[str, Any]) -> Metrics:
        ps = {q.name: q for q in space}
        u = [_u(p[n], ps[n].low, ps[n].high, ps[n].log_scale) for n in names]  # type: ignore[union-attr]
        s = str(p["supplement"])
        if s == "hydrolysate":
            ridge = np.exp(
                -0.5 * ((u[0] + u[1] - 1.5) / 0.1) ** 2 - 0.5 * ((u[0] - u[1]) / 0.5) ** 2
            )
            v = 1.3 * ridge * _bump(u[2:], [0.6, 0.75, 0.5], [0.4, 0.2, 0.4])
        else:
            h, c = broad[s]
            v = h * _bump(u, c, 0.42)
        return {"titre": 0.05 + v}

    return Problem(
        "media6_cat5",
        "heldout",
        "mixed: 5-level supplement, best on a narrow ridge",
        space,
        f,
        objective="titre",
        noise={"titre": ("mul", 0.10)},
    )


def catalyst_cat4() -> Problem:
    """Ligand x (temperature, log concentration, time): each level its own surface; the
    best ('L2') sits near an edge, 'L1' has two modes."""
    space = [
        cat("ligand", ["L0", "L1", "L2", "L3"]),
        cont("temp_c", 20, 100),
        cont("conc_mm", 0.01, 10, log=True),
        cont("time_h", 1, 24),
    ]

    def f(p: Mapping[str, Any]) -> Metrics:
        u = [_u(p["temp_c"], 20, 100), _u(p["conc_mm"], 0.01, 10, True), _u(p["time_h"], 1, 24)]
        lig = str(p["ligand"])
        if lig == "L0":
            v = 0.8 * _bump(u, [0.4, 0.5, 0.6], 0.35)
        elif lig == "L1":
            v = np.maximum(
                0.7 * _bump(u, [0.2, 0.3, 0.5], 0.2), 0.9 * _bump(u, [0.75, 0.8, 0.3], 0.15)
            )
        elif lig == "L2":
            v = 1.0 * _bump(u, [0.9, 0.25, 0.7], [0.12, 0.2, 0.3])
        else:
            v = 0.6 * _bump(u, [0.5, 0.5, 0.5], 0.5)
        return {"conversion": 100 * v}

    return Problem(
        "catalyst_cat4",
        "dev",
        "mixed: 4-level ligand, best level near an edge",
        space,
        f,
        objective="conversion",
        noise={"conversion": ("add", 4.0)},
    )


# ------------------------------------------------------------- dose-response, transfection


def _sel(m: Metrics) -> Metrics:
    return {"selectivity": m["normal_viability"] - m["tumour_viability"]}


def dose3_constrained() -> Problem:
    """Three drugs (log µM); tumour and normal lines with their own Hill curves and a
    tumour-only synergy of A and C; maximise selectivity with normal viability >= 0.7."""
    space = [cont(f"drug_{d}_um", 0.001, 30, log=True) for d in "abc"]
    ic = {"t": (0.3, 2.0, 0.8), "n": (3.0, 4.0, 20.0)}
    hs = (1.2, 2.0, 1.5)
    emax = {"t": (0.9, 0.6, 0.8), "n": (0.9, 0.7, 0.95)}

    def f(p: Mapping[str, Any]) -> Metrics:
        c = [np.asarray(p[f"drug_{d}_um"], dtype=float) for d in "abc"]
        out: Metrics = {}
        for line, key in (("t", "tumour_viability"), ("n", "normal_viability")):
            v = 1.0
            for i in range(3):
                v = v * (1 - emax[line][i] * _hill(c[i], ic[line][i], hs[i]))
            if line == "t":
                v = v * (1 - 0.5 * _hill(c[0], 0.5, 1.5) * _hill(c[2], 1.5, 1.5))
            out[key] = v
        return {**out, **_sel(out)}

    return Problem(
        "dose3_constrained",
        "dev",
        "constrained: 3 drugs, normal viability >= 0.7",
        space,
        f,
        objective="selectivity",
        constraints=["normal_viability >= 0.7"],
        noise={"tumour_viability": ("add", 0.04), "normal_viability": ("add", 0.04)},
        derive=_sel,
    )


def dose_time_constrained() -> Problem:
    """Two drugs (log µM) and an integer exposure (x 12 h); maximise tumour kill with
    normal viability >= 0.75 (longer exposure kills more of both lines)."""
    space = [
        cont("drug_a_um", 0.001, 10, log=True),
        cont("drug_b_um", 0.001, 10, log=True),
        integer("exposure_12h", 1, 6),
    ]

    def f(p: Mapping[str, Any]) -> Metrics:
        a, b = np.asarray(p["drug_a_um"], float), np.asarray(p["drug_b_um"], float)
        t = float(p["exposure_12h"]) / 4.0  # 1 = 48 h
        st = (1 - 0.95 * _hill(a, 0.2, 1.3)) * (1 - 0.7 * _hill(b, 0.05, 2.5))
        sn = (1 - 0.9 * _hill(a, 0.8, 1.3)) * (1 - 0.8 * _hill(b, 1.0, 1.2))
        syn = 1 - 0.4 * _hill(a, 0.1, 1.0) * _hill(b, 0.02, 1.0)
        tv, nv = (st * syn) ** t, sn**t
        return {"kill": 1 - tv, "normal_viability": nv}

    return Problem(
        "dose_time_constrained",
        "heldout",
        "constrained + integer: 2 drugs x exposure, normal viability >= 0.75",
        space,
        f,
        objective="kill",
        constraints=["normal_viability >= 0.75"],
        noise={"kill": ("add", 0.03), "normal_viability": ("add", 0.03)},
    )


def transfection() -> Problem:
    """Reagent (4 levels) x DNA (log µg) x reagent:DNA ratio x cell density (integer,
    x 10^4) x complexing time; maximise efficiency with viability >= 0.7."""
    space = [
        cat("reagent", ["lipo_a", "lipo_b", "pei", "polyplex"]),
        cont("dna_ug", 0.1, 4, log=True),
        cont("ratio", 0.5, 6),
        integer("density_1e4", 1, 10),
        cont("complex_min", 5, 60),
    ]
    # Emax, DNA EC50, best ratio, best density, toxic dose (µg x ratio per 10^4 cells)
    spec = {
        "lipo_a": (0.55, 0.4, 2.0, 5, 3.0),
        "lipo_b": (0.7, 0.8, 3.0, 6, 1.6),
        "pei": (0.5, 1.0, 4.0, 4, 2.5),
        "polyplex": (0.9, 1.5, 1.5, 8, 0.55),
    }

    def f(p: Mapping[str, Any]) -> Metrics:
        emax, ec50, rho, dens, tox = spec[str(p["reagent"])]
        dna, ratio = np.asarray(p["dna_ug"], float), np.asarray(p["ratio"], float)
        d, tmin = float(p["density_1e4"]), np.asarray(p["complex_min"], float)
        eff = (
            emax
            * _hill(dna, ec50, 2.0)
            * np.exp(-0.5 * (np.log(ratio / rho) / 0.45) ** 2)
            * np.exp(-0.5 * ((d - dens) / 3.0) ** 2)
            * (1 - np.exp(-tmin / 8))
            * np.exp(-tmin / 150)
        )
        viab = 1.0 / (1.0 + (dna * ratio / (tox * d)) ** 1.5)
        return {"efficiency": eff, "viability": viab}

    return Problem(
        "transfection",
        "heldout",
        "mixed + integer + constrained: reagent, efficiency vs toxicity",
        space,
        f,
        objective="efficiency",
        constraints=["viability >= 0.7"],
        noise={"efficiency": ("add", 0.03), "viability": ("add", 0.03)},
    )


# ----------------------------------------------------------------- integer schedules


def passaging_int() -> Problem:
    """Split ratio and days between passages (integers), serum and glutamine; maximise
    doublings per week (lag grows with the split ratio, over-confluence costs viability)."""
    space = [
        integer("split_ratio", 2, 16),
        integer("days", 2, 7),
        cont("serum_pct", 2, 20),
        cont("glutamine_mm", 0, 6),
    ]

    def f(p: Mapping[str, Any]) -> Metrics:
        split, days = float(p["split_ratio"]), float(p["days"])
        serum, gln = np.asarray(p["serum_pct"], float), np.asarray(p["glutamine_mm"], float)
        r = (
            0.95
            * np.exp(-(((serum - 11) / 8) ** 2))
            * (0.6 + 0.4 * np.exp(-(((gln - 3.5) / 2) ** 2)))
        )
        lag = 0.1 * split**0.7
        n0, k = 1e5 / split, 1.2e5
        n = k / (1 + (k / n0 - 1) * np.exp(-r * max(0.0, days - lag)))
        viab = 1 - 5 * np.maximum(0.0, n / k - 0.9)
        return {"doublings_week": (7 / days) * np.log2(n / n0) * viab}

    return Problem(
        "passaging_int",
        "dev",
        "integer-heavy: split ratio and days, 2 continuous",
        space,
        f,
        objective="doublings_week",
        noise={"doublings_week": ("mul", 0.08)},
    )


def bioreactor_int() -> Problem:
    """Fed-batch: number of feeds, first feed day, temperature-shift day (integers), pH and
    dissolved oxygen; maximise titre (growth against productivity trade-offs)."""
    space = [
        integer("feeds", 0, 8),
        integer("feed_start_day", 1, 6),
        integer("shift_day", 3, 10),
        cont("ph", 6.7, 7.3),
        cont("do_pct", 20, 60),
    ]

    def f(p: Mapping[str, Any]) -> Metrics:
        feeds, start, shift = float(p["feeds"]), float(p["feed_start_day"]), float(p["shift_day"])
        ph, do = np.asarray(p["ph"], float), np.asarray(p["do_pct"], float)
        g = np.exp(-0.5 * ((ph - 7.05) / 0.15) ** 2) * np.exp(-0.5 * ((do - 40) / 15) ** 2)
        vcd = 20 * (1 - np.exp(-0.45 * shift)) * g
        nutrients = 1 - np.exp(-feeds * (1 + 0.15 * (6 - start)) / 3)
        osmo = np.exp(-(max(0.0, feeds - 5) ** 2) / 4)
        starve = np.exp(-max(0.0, shift - (start + feeds)) / 4)
        qp = 0.05 * (1 + 0.6 * np.exp(-(((ph - 6.85) / 0.1) ** 2)))
        return {"titre": vcd * (0.3 + 0.7 * nutrients) * osmo * starve * qp * (14 - shift)}

    return Problem(
        "bioreactor_int",
        "heldout",
        "integer-heavy: feeding and shift schedule",
        space,
        f,
        objective="titre",
        noise={"titre": ("mul", 0.08)},
    )


ASSAYS: list[Callable[[], Problem]] = [
    media7_cat3,
    catalyst_cat4,
    dose3_constrained,
    passaging_int,
    media6_cat5,
    transfection,
    dose_time_constrained,
    bioreactor_int,
]
