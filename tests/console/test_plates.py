"""The console shows where each plate is and the workcell's timeline."""

from __future__ import annotations

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
        s.add(Step(round_id=rnd.id, seq=0, kind="dispense", plate_id=rnd.plate_id, wells=["B02"], status="done",
                   payload={"type": "dispense", "plate": rnd.plate_id, "well": "B02", "volume_ul": 2.0},
                   started_clock_s=0.0, finished_clock_s=600.0))
        s.add(Step(round_id=rnd.id, seq=1, kind="incubate", plate_id=rnd.plate_id, wells=[], status="started",
                   payload={"type": "incubate", "plate": rnd.plate_id, "duration_s": 48 * 3600.0},
                   result={"incubation_started_s": 600.0}, started_clock_s=600.0))
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
