from __future__ import annotations

import pytest

from protocols.exceptions import InvalidWell, UnknownPlateType
from protocols.labware import PLATE_TYPES, get_plate_type


def test_96_well_names_row_major() -> None:
    plate = get_plate_type("96")
    assert plate.n_wells == 96 == len(plate.wells)
    assert plate.wells[:3] == ("A01", "A02", "A03")
    assert plate.wells[11:13] == ("A12", "B01")
    assert plate.wells[-1] == "H12"


def test_384_well_names() -> None:
    plate = get_plate_type("384")
    assert len(plate.wells) == 384
    assert plate.wells[-1] == "P24"
    assert plate.parse_well("P24") == (15, 23)


def test_parse_and_normalize() -> None:
    plate = get_plate_type("96")
    assert plate.parse_well("B03") == (1, 2)
    assert plate.normalize_well("b3") == "B03"
    assert plate.well_name(7, 11) == "H12"
    assert plate.well_index("B01") == 12


@pytest.mark.parametrize("well", ["I01", "A13", "A00", "1A", "", "AA1"])
def test_invalid_wells_on_96(well: str) -> None:
    with pytest.raises(InvalidWell, match="does not exist on a 96-well plate"):
        get_plate_type("96").parse_well(well)


@pytest.mark.parametrize(("name", "usable"), [("96", 60), ("384", 308)])
def test_edge_exclusion(name: str, usable: int) -> None:
    plate = PLATE_TYPES[name]
    inner = plate.usable_wells(exclude_edges=True)
    assert len(inner) == usable
    assert not any(plate.is_edge(w) for w in inner)
    assert len(plate.usable_wells(exclude_edges=False)) == plate.n_wells


def test_edges_of_96() -> None:
    plate = get_plate_type("96")
    assert plate.is_edge("A05") and plate.is_edge("H05") and plate.is_edge("D01")
    assert plate.is_edge("D12") and not plate.is_edge("B02") and not plate.is_edge("G11")


def test_unknown_plate_type() -> None:
    with pytest.raises(UnknownPlateType, match="unknown plate type '48'") as e:
        get_plate_type("48")
    assert e.value.known == ["384", "96"]
