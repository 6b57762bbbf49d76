"""MMCoreMicroscope: MDA sequences over the simulated pymmcore-plus core."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from instruments.exceptions import ImagingError, InstrumentError
from instruments.interfaces import Microscope
from instruments.mmcore.plates import PLATE_GEOMETRIES, field_offsets_um
from instruments.mmcore_microscope import Autofocus, MMCoreMicroscope, ZStack
from simulators.clock import SimulatedClock
from simulators.mm_devices import make_simulated_core, simulated_scope
from simulators.world import PLATE_TYPES, SimulatedLab

SIZE = 128
PX = 2.6


@pytest.fixture
def lab():
    return SimulatedLab()


@pytest.fixture
def clock():
    return SimulatedClock()


@pytest.fixture
def scope_core(lab, clock):
    return make_simulated_core(lab, clock, image_size=(SIZE, SIZE), seed=1)


@pytest.fixture
def microscope(scope_core, clock):
    mic = MMCoreMicroscope(scope_core, clock=clock)
    yield mic
    mic.close()


def _count_blobs(plane: np.ndarray) -> int:
    smooth = ndimage.gaussian_filter(plane.astype(float), 1.0)
    return int(ndimage.label(smooth > np.median(smooth) + 300.0)[1])  # nuclei: >= ~1000 e


def test_plate_geometry_table_matches_the_simulated_lab():
    for name, geo in PLATE_GEOMETRIES.items():
        pt = PLATE_TYPES[name]
        for well in ("A01", "C05", pt.well_names()[-1]):
            assert geo.well_centre_um(well) == pytest.approx(pt.well_centre_um(well))
        assert np.pi * (geo.well_diameter_mm / 2) ** 2 == pytest.approx(pt.well_area_mm2)


def test_field_grid_is_square_and_centred():
    assert field_offsets_um(1, (10, 10)) == [(0.0, 0.0)]
    offs = field_offsets_um(4, (10, 20))
    assert offs == [(-5, -10), (5, -10), (-5, 10), (5, 10)]
    assert len(field_offsets_um(5, (1, 1))) == 5


def test_implements_the_microscope_protocol(microscope):
    assert isinstance(microscope, Microscope)


def test_well_with_several_fields_gives_one_frame_per_field(microscope, clock):
    frames = microscope.acquire_well("P1", "b3", ["GFP", "DAPI"], 4, 20.0)
    assert [f.field for f in frames] == [0, 1, 2, 3]
    cx, cy = PLATE_TYPES["96"].well_centre_um("B03")
    step = SIZE * PX
    expected = [(cx + dx, cy + dy) for dx, dy in field_offsets_um(4, (step, step))]
    for fr, pos in zip(frames, expected, strict=True):
        assert fr.image.shape == (2, SIZE, SIZE) and fr.image.dtype == np.uint16
        assert fr.channels == ("GFP", "DAPI")
        assert (fr.plate, fr.well) == ("P1", "B03")
        assert fr.pixel_size_um == pytest.approx(PX)
        assert fr.position_um == pytest.approx(pos)
        assert [p["channel"] for p in fr.metadata["planes"]] == ["GFP", "DAPI"]
        assert fr.metadata["exposure_ms"] == 20.0
        gfp, dapi = fr.image
        assert _count_blobs(dapi) > _count_blobs(gfp)  # normal nuclei are GFP-negative
    times = [f.timestamp_s for f in frames]
    assert times == sorted(times) and times[0] > 0 and clock.now() >= times[-1]
    assert microscope.last_sequence.sizes == {"p": 4, "c": 2, "z": 0}


def test_counts_follow_the_simulated_lab(microscope, lab, clock, scope_core):
    lab.aspirate_into_tip("res1", "staurosporine", 100.0, 2.0)
    lab.dispense_from_tip("P1", "C05", 2.0, clock.now())
    lab.aspirate_into_tip("res2", "vehicle", 0.0, 2.0)
    lab.dispense_from_tip("P1", "C06", 2.0, clock.now())
    clock.sleep(48 * 3600)
    scope = simulated_scope(scope_core)
    counts = {}
    for well in ("C05", "C06"):
        frames = microscope.acquire_well("P1", well, ["DAPI", "GFP"], 3, 20.0)
        truth = [f for f in scope.fields if f.well == well]
        assert len(truth) == 3
        counts[well] = (
            sum(t.truth["n_tumour"] + t.truth["n_normal"] for t in truth),
            sum(_count_blobs(f.image[0]) for f in frames),
        )
    killed, vehicle = counts["C05"], counts["C06"]
    assert killed[0] < 0.3 * vehicle[0]  # ground truth in the fields
    assert killed[1] < 0.5 * vehicle[1]  # what the images show


def test_z_stack_is_max_projected_with_z_positions_in_metadata(scope_core, clock):
    mic = MMCoreMicroscope(scope_core, clock=clock, z_stack=ZStack(range_um=4.0, step_um=2.0))
    frames = mic.acquire_well("P1", "D04", ["DAPI", "GFP"], 2, 10.0)
    assert frames[0].image.shape == (2, SIZE, SIZE)
    planes = frames[0].metadata["planes"]
    assert [p["z_index"] for p in planes] == [0, 1, 2, 0, 1, 2]
    assert [p["z_um"] for p in planes[:3]] == pytest.approx([-2.0, 0.0, 2.0])
    assert frames[0].metadata["z_projection"] == "max"


def test_autofocus_goes_into_the_sequence(microscope):
    microscope.autofocus = Autofocus("PFS", motor_offset_um=12.0)
    seq = microscope.build_sequence("P1", "A01", ["DAPI"], 2, 20.0)
    assert seq.autofocus_plan.autofocus_device_name == "PFS"
    assert seq.autofocus_plan.axes == ("p",)
    with pytest.raises(ImagingError, match="autofocus"):
        microscope.acquire_well("P1", "A01", ["DAPI"], 1, 20.0)  # no such device


def test_bad_requests_raise_imaging_errors(microscope):
    with pytest.raises(ImagingError, match="not presets of config group 'Channel'"):
        microscope.acquire_well("P1", "A01", ["Cy5"], 1, 20.0)
    with pytest.raises(ImagingError, match="no well 'Z99'"):
        microscope.acquire_well("P1", "Z99", ["DAPI"], 1, 20.0)
    with pytest.raises(ImagingError, match="no well 'A13'"):
        microscope.acquire_well("P1", "A13", ["DAPI"], 1, 20.0)
    with pytest.raises(ImagingError, match="exposure"):
        microscope.acquire_well("P1", "A01", ["DAPI"], 1, 0.0)
    with pytest.raises(ImagingError, match="do not fit"):
        microscope.acquire_well("P1", "A01", ["DAPI"], 400, 20.0)
    microscope.channel_group = "Filters"
    with pytest.raises(ImagingError, match="no config group 'Filters'"):
        microscope.acquire_well("P1", "A01", ["DAPI"], 1, 20.0)


def test_device_fault_becomes_imaging_error_with_the_device_message(microscope, scope_core):
    scope = simulated_scope(scope_core)

    def broken(exposure_ms):
        raise RuntimeError("camera sensor overheated (72 C)")

    scope.snap = broken
    with pytest.raises(ImagingError, match="camera sensor overheated"):
        microscope.acquire_well("P1", "A01", ["DAPI"], 1, 20.0)


def test_identify_reports_devices_camera_pixel_size_and_stage(microscope, scope_core):
    scope_core.setXYPosition(100.0, 200.0)
    info = microscope.identify()
    assert info["camera"] == "Camera" and info["xy_stage"] == "XY"
    assert info["devices"]["Camera"]["name"] == "SimCamera"
    assert info["pixel_size_um"] == pytest.approx(PX)
    assert info["image_size"] == [SIZE, SIZE]
    assert info["stage_position_um"] == pytest.approx([100.0, 200.0])
    assert info["channels"] == ["DAPI", "GFP"] and info["ready"] is True


def test_closed_microscope_refuses_to_image(microscope):
    microscope.close()
    microscope.close()  # twice is fine
    with pytest.raises(ImagingError, match="closed"):
        microscope.acquire_well("P1", "A01", ["DAPI"], 1, 20.0)


def test_missing_config_file_is_an_instrument_error(tmp_path):
    missing = tmp_path / "scope.cfg"
    with pytest.raises(InstrumentError, match="scope.cfg"):
        MMCoreMicroscope.from_config(missing)
