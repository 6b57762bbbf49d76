from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

import analyzers
from analyzers import DuplicateAnalyzer, UnknownAnalyzer, get_analyzer, register_analyzer


def test_nuclei_coculture_is_registered() -> None:
    assert get_analyzer("nuclei_coculture") is analyzers.analyze_plate
    assert "nuclei_coculture" in analyzers.list_analyzers()


def test_duplicate_name_raises() -> None:
    with pytest.raises(DuplicateAnalyzer, match="nuclei_coculture"):
        register_analyzer("nuclei_coculture")(lambda *a: None)


def test_unknown_name_raises() -> None:
    with pytest.raises(UnknownAnalyzer, match="no analyzer registered as 'nope'"):
        get_analyzer("nope")


def test_analyzers_do_not_import_controller_or_read_truth() -> None:
    code = "import sys, analyzers; print(any(m.split('.')[0] == 'controller' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    for path in pathlib.Path(analyzers.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "sim_truth" not in text and ".metadata" not in text, path
