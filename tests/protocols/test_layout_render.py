from __future__ import annotations

from protocols.layout import PlateLayout, WellAssignment, WellRole


def test_render_96() -> None:
    layout = PlateLayout(
        plate_id="P1",
        plate_type="96",
        wells=[
            WellAssignment(well="B02", role=WellRole.SAMPLE, experiment=0),
            WellAssignment(well="B03", role=WellRole.NEGATIVE_CONTROL),
            WellAssignment(well="H12", role=WellRole.POSITIVE_CONTROL),
            WellAssignment(well="C04", role=WellRole.SAMPLE, experiment=12, replicate=1),
        ],
    )
    lines = layout.render().splitlines()
    assert len(lines) == 9
    assert lines[0].split() == [f"{c:02d}" for c in range(1, 13)]
    assert lines[2].split() == ["B", ".", "e0", "-"] + ["."] * 9
    assert lines[3].split()[4] == "e12"
    assert lines[8].split()[-1] == "+"


def test_render_384_has_16_rows() -> None:
    layout = PlateLayout(plate_id="Q", plate_type="384", wells=[])
    lines = layout.render().splitlines()
    assert len(lines) == 17 and lines[-1].startswith("P")
    assert lines[0].split()[-1] == "24"
