"""The screening report of a tiny dry-run campaign: fits, synergy, predicted vs measured,
thumbnails, QC and an honest headline, all from the ledger."""

from __future__ import annotations

import base64
import re

import pytest
from sqlmodel import Session, col, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Experiment, Round
from controller.loop.qc_gate import gate_failed_plate
from controller.report import write_report
from controller.spec import load_campaign

from .conftest import run_cli


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Two plates: a Sobol plate, then one proposed by the model (so it carries predictions)."""
    import yaml

    from .conftest import small_campaign_data

    tmp = tmp_path_factory.mktemp("report")
    data = small_campaign_data(
        planner={
            "name": "bayesian",
            "batch_size": 6,
            "settings": {"profile": "fast", "n_initial": 6},
        }
    )
    data["ledger"] = {"url": f"sqlite:///{tmp / 'ledger.db'}", "data_dir": str(tmp / "data")}
    path = tmp / "small.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = run_cli("run", str(path), "--dry-run", "--quiet")
    assert proc.returncode == 0, proc.stderr
    url = load_campaign(path).ledger.url
    page = write_report(url, "small", tmp / "report").read_text()
    return path, url, tmp, page


def _tables(page: str, cls: str) -> list[str]:
    return re.findall(rf'<table class="{cls}">(.*?)</table>', page, flags=re.S)


def test_dose_response_fits_with_ic50s_and_intervals(campaign):
    _, _, tmp, page = campaign
    assert "Dose-response per drug and cell line" in page
    (fits,) = _tables(page, "fits")
    for head in (
        "IC50 µM [95 % CI]",
        "Hill [95 % CI]",
        "top [95 % CI]",
        "bottom [95 % CI]",
        "replicate SD (median)",
    ):
        assert head in fits
    rows = re.findall(r"<tr><td>(drug_[ab])</td><td>(tumour|normal)</td>(.*?)</tr>", fits)
    assert {(d, ln) for d, ln, _ in rows} == {
        (d, ln) for d in ("drug_a", "drug_b") for ln in ("tumour", "normal")
    }
    # at least one drug has a fitted IC50 (a number in bold), its interval beside it
    assert re.search(r"<b>[0-9.e+-]+</b> \[[0-9.e+-]+, [0-9.e+inf-]+\]", fits)
    for drug in ("drug_a", "drug_b"):
        assert (tmp / "report" / f"dose_{drug}.png").stat().st_size > 5000


def test_synergy_scores_with_their_reference_models(campaign):
    _, _, tmp, page = campaign
    assert "Combinations: response surface and synergy" in page
    assert "Bliss independence: E_ref = E_a(d_a) x E_b(d_b)" in page
    assert "highest single agent" in page and "Loewe additivity" in page
    tables = _tables(page, "synergy")
    assert tables and all("Bliss" in t and "HSA" in t and "Loewe" in t for t in tables)
    assert re.search(r"<td>[0-9.]+ ± [0-9.]+ \(\d\)</td>", tables[0])  # observed ± replicate SD (n)
    # the plates hold each drug alone at its combinations' doses: Bliss/HSA use them
    assert "measured on the same plate at the same doses" in page
    assert all("<td>measured</td>" in t for t in tables)
    (fits,) = _tables(page, "fits")
    assert fits.count("measured single-agent wells") == 4  # 2 drugs x 2 lines
    # scattered doses are no dose matrix: ZIP says why it is absent, with its model stated
    assert "zero interaction potency" in page and "ZIP: not computed" in page
    assert (tmp / "report" / "synergy_drug_a_drug_b.png").stat().st_size > 5000


def test_predicted_vs_measured_with_calibration_per_round(campaign):
    _, url, tmp, page = campaign
    assert "Predicted vs measured" in page
    (cal,) = _tables(page, "calibration")
    assert "inside 95 %" in cal and "inside 95 % (wells only)" in cal and "mean z" in cal
    # round 2 was proposed by the model: it is there, with each predicted metric
    assert re.search(r"<tr><td>2</td><td>selectivity</td><td>6</td><td>\d+%</td>", cal)
    assert "<tr><td>1</td>" not in cal  # the Sobol plate had no prediction to judge
    assert (tmp / "report" / "predicted_vs_measured.png").stat().st_size > 5000


def test_the_plates_vehicle_reference_error_enters_each_measurements_interval():
    import math

    from controller.report.calibration import Forecast, reference_se

    vehicle = {"tumour_count": (0.12, 6), "normal_count": (0.10, 4)}
    out = {"tumour_viability": 0.5, "normal_viability": 0.8, "selectivity": 0.3}
    tumour, normal = 0.5 * 0.12 / math.sqrt(6), 0.8 * 0.10 / 2
    assert reference_se(out, vehicle, "tumour_viability") == pytest.approx(tumour)
    assert reference_se(out, vehicle, "normal_viability") == pytest.approx(normal)
    assert reference_se(out, vehicle, "selectivity") == pytest.approx(math.hypot(tumour, normal))
    assert reference_se(out, vehicle, "tumour_gr") == 0.0
    assert reference_se(out, {}, "selectivity") == 0.0
    f = Forecast(None, 2, "selectivity", 0.30, 0.02, 0.38, 0.03, 0.04)  # type: ignore[arg-type]
    assert f.z == pytest.approx(0.08 / math.sqrt(0.02**2 + 0.03**2 + 0.04**2))
    assert f.z_wells == pytest.approx(0.08 / math.hypot(0.02, 0.03)) and f.z < f.z_wells


def test_thumbnails_are_embedded_pngs_of_best_worst_and_controls(campaign):
    _, _, _, page = campaign
    thumbs = re.findall(
        r'<img class="thumb" src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"', page
    )
    labels = " ".join(alt for _, alt in thumbs)
    assert "best measured" in labels and "worst measured" in labels
    assert "vehicle" in labels and "positive control" in labels
    for data, _ in thumbs:
        png = base64.b64decode(data)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 200


def test_qc_table_per_plate(campaign):
    _, _, _, page = campaign
    (qc,) = _tables(page, "qc")
    for head in (
        "Z' tumour",
        "Z' normal",
        "vehicle CV tumour",
        "vehicle CV normal",
        "flagged control wells",
        "sample wells flagged / left out",
        "solvent (every dosed well)",
        "QC failures",
    ):
        assert head in qc
    assert qc.count("small-P00") == 2 and "0.5 % v/v dmso" in qc


def test_headline_is_the_recommendation_and_the_best_measured_is_labelled(campaign):
    _, _, _, page = campaign
    head = page[page.index('<div class="headline">') :]
    head = head[: head.index("</div>")]
    assert head.index("recommended condition") < head.index("Best measured condition")
    assert "95 % interval" in head
    best = re.search(
        r"<b>Best measured condition</b> \(labelled as measured.*?not the expected value\)"
        r".*? over (\d) replicate wells \(([A-P]\d\d [-0-9.]+(, )?)+\)",
        head,
    )
    assert best and int(best.group(1)) >= 1
    assert "SD" in head
    # every table of experiments gives the replicate SD
    assert "mean ± replicate SD" in page


def test_a_held_plate_is_shown_as_held_with_why(campaign):
    path, url, tmp, _ = campaign
    spec = load_campaign(path)
    db = open_ledger_engine(url)
    with Session(db) as s:  # the QC gate's own function holds plate 1, as a failed Z' would
        rnd = s.exec(select(Round).where(Round.index == 0)).one()
        exps = list(
            s.exec(
                select(Experiment).where(Experiment.round_id == rnd.id).order_by(col(Experiment.id))
            )
        )
        gate_failed_plate(
            s,
            spec,
            rnd,
            exps,
            ["Z'(tumour_count) = 0.100 < 0.3: plate suspect"],
            {"round": 1, "plate": rnd.plate_id},
            0.0,
        )
        s.commit()
    page = write_report(url, "small", tmp / "report_held").read_text()
    (qc,) = _tables(page, "qc")
    row = re.search(r'<tr class="bad"><td>1</td>.*?</tr>', qc)
    assert row and "HELD" in row.group(0) and "plate suspect" in row.group(0)


def test_the_console_serves_the_report_to_a_logged_in_user(campaign):
    """``/campaigns/small/report/``: the same page and figures as ``cellpilot report``, for any
    logged-in role; nothing outside the report folder, nothing without a login."""
    from fastapi.testclient import TestClient

    from controller.console.app import create_app
    from controller.console.auth import add_user
    from tests.console.conftest import login

    _, url, _, page = campaign
    app = create_app(url)
    add_user(app.state.db, "vic-report", "vic-viewer-pw", "viewer")
    anonymous = TestClient(app)
    assert anonymous.get("/campaigns/small/report/", follow_redirects=False).status_code == 303
    c = TestClient(app)
    assert login(c, "vic-report", "vic-viewer-pw").status_code == 303
    assert 'data-testid="report-link"' in c.get("/campaigns/small").text
    served = c.get("/campaigns/small/report", follow_redirects=True)
    assert served.status_code == 200 and served.headers["x-frame-options"] == "DENY"
    assert "Dose-response per drug and cell line" in served.text
    assert "Combinations: response surface and synergy" in served.text
    pngs = set(re.findall(r'src="([a-z0-9_]+\.png)"', served.text))
    assert pngs and pngs == set(re.findall(r'src="([a-z0-9_]+\.png)"', page))
    img = c.get(f"/campaigns/small/report/{sorted(pngs)[0]}")
    assert img.status_code == 200 and img.content[:8] == b"\x89PNG\r\n\x1a\n"
    for bad in ("..%2Fledger.db", "ledger.db", ".hidden.png", "nothere.png"):
        assert c.get(f"/campaigns/small/report/{bad}").status_code == 404
    assert c.get("/campaigns/nope/report/").status_code == 404
