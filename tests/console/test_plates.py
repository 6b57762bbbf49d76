"""The console shows where each plate is and the workcell's timeline."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from controller.console.app import create_app
from controller.ledger.models import Campaign, Round, Step
from tests.console.conftest import login


def test_plates_fragment_and_timeline(seeded, ledger_url) -> None:
    with Session(seeded) as s:
        camp = s.exec(select(Campaign)).one()
        rnd = s.exec(select(Round)).one()
        rnd.status = "executing"
        s.add(rnd)
        s.add(
            Step(
                round_id=rnd.id,
                seq=0,
                kind="dispense",
                plate_id=rnd.plate_id,
                wells=["B02"],
                status="done",
                payload={
                    "type": "dispense",
                    "plate": rnd.plate_id,
                    "well": "B02",
                    "volume_ul": 2.0,
                },
                started_clock_s=0.0,
                finished_clock_s=600.0,
            )
        )
        s.add(
            Step(
                round_id=rnd.id,
                seq=1,
                kind="incubate",
                plate_id=rnd.plate_id,
                wells=[],
                status="started",
                payload={"type": "incubate", "plate": rnd.plate_id, "duration_s": 48 * 3600.0},
                result={"incubation_started_s": 600.0},
                started_clock_s=600.0,
            )
        )
        camp.clock_s = 3600.0
        s.add(camp)
        s.commit()
    client = TestClient(create_app(ledger_url))
    login(client, "vic")  # a viewer sees it
    page = client.get("/campaigns/small/fragment/plates")
    assert page.status_code == 200
    assert "small-P001" in page.text and "incubating until 48.2 h" in page.text
    png = client.get("/campaigns/small/timeline.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_operator_decides_a_held_plate_and_a_viewer_cannot(seeded, ledger_url) -> None:
    from controller.ledger.models import Experiment, Proposal, Round

    with Session(seeded) as s:
        rnd = s.exec(select(Round)).one()
        proposal = s.exec(select(Proposal)).first()
        rnd.status = "held"
        s.add(rnd)
        s.add(
            Experiment(
                campaign_id=rnd.campaign_id,
                round_id=rnd.id,
                proposal_id=proposal.id,
                position=0,
                params={"drug_a_um": 1.0},
                status="held",
                outcomes={"selectivity": 0.2},
                outcome_details={
                    "qc": {"failures": ["Z'(tumour_count) = 0.1 < 0.5"], "action": "hold"}
                },
            )
        )
        s.commit()
    app = create_app(ledger_url)
    viewer = TestClient(app)
    login(viewer, "vic")
    page = viewer.get("/campaigns/small/fragment/plates").text
    assert "failed QC: Z&#39;(tumour_count) = 0.1" in page and "Accept</button>" not in page
    token = re.search(
        r'name="csrf_token" value="([^"]+)"', viewer.get("/campaigns/small").text
    ).group(1)
    assert (
        viewer.post(
            "/campaigns/small/plates/small-P001/accept", data={"csrf_token": token}
        ).status_code
        == 403
    )

    operator = TestClient(app)
    login(operator, "ana")
    assert "Accept</button>" in operator.get("/campaigns/small/fragment/plates").text
    token = re.search(
        r'name="csrf_token" value="([^"]+)"', operator.get("/campaigns/small").text
    ).group(1)
    r = operator.post(
        "/campaigns/small/plates/small-P001/exclude",
        data={"csrf_token": token, "reason": "edge"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with Session(seeded) as s:
        assert s.exec(select(Experiment)).one().status == "excluded"
        assert s.exec(select(Round)).one().status == "analyzed"
