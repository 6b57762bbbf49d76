"""The report's GR table: GR50, GRmax, GEC50 and GRinf with intervals beside the IC50."""

from __future__ import annotations

import re

import numpy as np

from analyzers.dose_response import fit_logistic, logistic
from analyzers.growth import fit_gr
from controller.report.dose import DrugCurve, gr_table


def test_gr_metrics_are_tabled_beside_the_ic50() -> None:
    rng = np.random.default_rng(0)
    doses = list(np.repeat(np.logspace(-2, 1, 7), 2))
    viab = logistic(np.array(doses), 1.0, 0.05, 0.5, 1.2) + rng.normal(0, 0.03, len(doses))
    gr = logistic(np.array(doses), 1.0, -0.5, 0.4, 1.2) + rng.normal(0, 0.03, len(doses))
    curve = DrugCurve(
        "drug_a", "tumour", fit_logistic(doses, viab, top=1.0), doses, list(viab), [], {},
        True, single_agent_wells=len(doses), gr=fit_gr(doses, gr, n_boot=40),
    )  # fmt: skip
    html = "".join(gr_table({("drug_a", "tumour"): curve}))
    for head in ("IC50 µM [95 % CI]", "GR50 µM [95 % CI]", "GRmax [95 % CI]", "GEC50 µM"):
        assert head in html
    row = re.search(r"<tr><td>drug_a</td><td>tumour</td>(.*?)</tr>", html)
    assert row and "cytotoxic" in row.group(1)
    assert len(re.findall(r"\[[0-9.e+-]+, [0-9.e+inf-]+\]", row.group(1))) >= 4
    no_gr = DrugCurve("drug_b", "tumour", curve.fit, doses, list(viab), [], {}, True)
    assert gr_table({("drug_b", "tumour"): no_gr}) == []  # no time-zero wells: no table
