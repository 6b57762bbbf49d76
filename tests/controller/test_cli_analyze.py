"""`cellpilot analyze`: outputs written for good images; one line and exit 2 for bad files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from controller.cli.app import app
from tests.analyzers.nuclei_images import render_nuclei

runner = CliRunner()


def test_ome_tiff_and_png_outputs(tmp_path: Path) -> None:
    img, n = render_nuclei(20, 12, 3, seed=1)
    ome = tmp_path / "field.ome.tif"
    tifffile.imwrite(
        ome,
        np.stack([img, img // 3]),
        ome=True,
        metadata={
            "axes": "CYX",
            "PhysicalSizeX": 0.5,
            "PhysicalSizeY": 0.5,
            "Channel": {"Name": ["DAPI", "GFP"]},
        },
    )
    png = tmp_path / "field2.png"
    Image.fromarray((img // 256).astype(np.uint8)).save(png)
    out = tmp_path / "out"
    for path, channel in ((ome, ["--channel", "DAPI"]), (png, [])):
        result = runner.invoke(
            app,
            [
                "analyze",
                str(path),
                *channel,
                "--nucleus-diameter-um",
                "10",
                "--pixel-size-um",
                "0.5",
                "--out",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
    for stem in ("field", "field2"):
        labels = tifffile.imread(out / f"{stem}_labels.tif")
        assert labels.shape == img.shape and abs(int(labels.max()) - n) <= 2
        assert (out / f"{stem}_overlay.png").stat().st_size > 0
        rows = list(csv.DictReader((out / f"{stem}_nuclei.csv").open()))
        assert len(rows) == labels.max() and float(rows[0]["area_um2"]) > 0
    counts = json.loads((out / "counts.json").read_text())  # the last run's images
    assert counts[0]["diameter_source"] == "given" and counts[0]["pixel_size_um"] == 0.5
    assert len(list(csv.DictReader((out / "counts.csv").open()))) == 1


def test_pixel_size_from_ome_metadata(tmp_path: Path) -> None:
    img, _ = render_nuclei(16, 10, 2, seed=2)
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(path, img, ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.625})
    result = runner.invoke(
        app, ["analyze", str(path), "--nucleus-diameter-um", "10", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "o" / "a_nuclei.json").read_text())
    assert data["pixel_size_um"] == 0.625 and data["diameter_px"] == 16.0


def _bad_files(tmp: Path) -> dict[str, tuple[Path, list[str], str]]:
    img, _ = render_nuclei(12, 4, 0, seed=3, shape=(64, 64))
    (tmp / "text.tif").write_text("not an image")
    tifffile.imwrite(
        tmp / "stack.tif", np.stack([img] * 4), photometric="minisblack", metadata={"axes": "ZYX"}
    )
    tifffile.imwrite(
        tmp / "two.ome.tif",
        np.stack([img, img]),
        ome=True,
        metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "GFP"]}},
    )
    tifffile.imwrite(tmp / "flat.tif", np.zeros((64, 64), np.uint16))
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp / "tiny.png")
    return {
        "not an image": (tmp / "text.tif", [], "not an image"),
        "3-D": (tmp / "stack.tif", [], "3-D"),
        "wrong channel": (tmp / "two.ome.tif", ["--channel", "Cy5"], "no channel 'Cy5'"),
        "no channel chosen": (tmp / "two.ome.tif", [], "choose one with --channel"),
        "empty": (tmp / "flat.tif", [], "blank"),
        "too small": (tmp / "tiny.png", [], "too small"),
        "missing": (tmp / "nope.tif", [], "no such file"),
    }


@pytest.mark.parametrize(
    "case",
    ["not an image", "3-D", "wrong channel", "no channel chosen", "empty", "too small", "missing"],
)
def test_bad_file_one_line_exit_2(tmp_path: Path, case: str) -> None:
    path, extra, message = _bad_files(tmp_path)[case]
    result = runner.invoke(app, ["analyze", str(path), *extra, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and str(path.name) in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_diameter_in_um_needs_a_pixel_size(tmp_path: Path) -> None:
    img, _ = render_nuclei(12, 6, 0, seed=4, shape=(96, 96))
    path = tmp_path / "plain.png"
    Image.fromarray((img // 256).astype(np.uint8)).save(path)
    result = runner.invoke(
        app, ["analyze", str(path), "--nucleus-diameter-um", "10", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "--pixel-size-um" in result.stderr


def test_good_and_bad_files_together(tmp_path: Path) -> None:
    img, _ = render_nuclei(12, 8, 2, seed=5, shape=(128, 128))
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, img)
    result = runner.invoke(
        app, ["analyze", str(good), str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert (tmp_path / "o" / "good_labels.tif").exists()
    assert len([ln for ln in result.stderr.splitlines() if ln.strip()]) == 1


def test_learned_method(tmp_path: Path) -> None:
    img, n = render_nuclei(20, 12, 3, seed=2)
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, img)
    out = tmp_path / "out"
    args = ["analyze", str(path), "--nucleus-diameter-um", "10", "--pixel-size-um", "0.5"]
    result = runner.invoke(app, [*args, "--method", "learned", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert abs(int(tifffile.imread(out / "field_labels.tif").max()) - n) <= 2
    assert json.loads((out / "counts.json").read_text())[0]["method"] == "learned"
    result = runner.invoke(app, [*args, "--method", "unet", "--out", str(out)])
    assert result.exit_code == 2 and "--method" in result.output
