from __future__ import annotations

import copy
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "drug_combo.yaml"


def small_campaign_data(**overrides) -> dict:
    """The example campaign shrunk for tests: 6 experiments on a plate, one field per well."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data = copy.deepcopy(data)
    data["name"] = "small"
    data.pop("workcell", None)  # one plate at a time unless a test asks for plates in flight
    data["instruments"].pop("plate_mover", None)  # plates carried by hand unless a test asks
    # One 160 px field per well holds too few nuclei for a meaningful Z' or control CV: the QC
    # gate would hold most plates. Its thresholds are relaxed here; tests/controller/test_qc_gate.py
    # exercises the gate with the analyzer's defaults.
    data["analyzer"] = {
        "name": "nuclei_coculture",
        "settings": {"z_prime_min": -1000.0, "max_control_cv": 100.0, "max_flagged_fraction": 1.0},
    }
    data["planner"] = {"name": "sobol", "batch_size": 6}
    s = data["protocol"]["settings"]
    s.update(replicates=2, negative_controls=4, positive_controls=4, time_zero_wells=0)
    s["imaging"] = {"channels": ["DAPI", "GFP"], "fields_per_well": 1, "exposure_ms": 20}
    data["budget"] = {"rounds": 2}
    data["simulation"]["image_size_px"] = 160
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


@pytest.fixture
def write_campaign(tmp_path):
    def write(filename: str = "small.yaml", **overrides) -> Path:
        data = small_campaign_data(**overrides)
        data.setdefault("ledger", {})
        data["ledger"] = {
            "url": f"sqlite:///{tmp_path / 'ledger.db'}",
            "data_dir": str(tmp_path / "data"),
        }
        path = tmp_path / filename
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 300, input_text: str | None = None
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
        input=input_text,
    )


PG_ADMIN = os.environ.get(
    "CELLPILOT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test, dropped afterwards; skips if no server."""
    psycopg = pytest.importorskip("psycopg")
    admin = PG_ADMIN.replace("+psycopg", "")
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable at {admin}: {e}")
    name = f"cellpilot_test_{uuid.uuid4().hex[:10]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    """The same test on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        yield request.getfixturevalue("pg_url")
