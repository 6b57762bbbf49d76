"""Pure-Python pymmcore-plus devices over the simulated lab, for CI and dry-runs.

:func:`make_simulated_core` returns a ``UniMMCore`` holding a camera, an XY stage, a focus
stage, a shutter, a filter wheel whose labels are the channels (``"DAPI"``, ``"GFP"``), a
plate holder (its ``Barcode`` property says which plate is on the stage), the ``Channel``
config group and a pixel-size configuration. The real driver
(:class:`instruments.mmcore_microscope.MMCoreMicroscope`) then runs its MDA code unchanged.

The devices share one :class:`SimulatedScope`, the optical bench: what the camera sees
follows from where the stage is. A snap finds the well under the objective from the XY
position and the plate's geometry (:class:`simulators.world.PlateType`) and renders the
simulated nuclei with :func:`simulators.microscope.render_field`: the number in the field is
Poisson with mean ``well count x field area / well area`` at the clock's time. A position
outside every well (or no plate on the stage) renders background only.

A field is rendered once for all channels and cached per (plate, well, stage position): the
DAPI and GFP snaps of one field show the same nuclei. A cached field is reused while the
stage stays put and the clock has moved less than ``field_reuse_s`` (cells do not change in
seconds); otherwise it is drawn afresh. Snaps advance the clock by the exposure, stage moves
by a settle time plus distance over speed, so a dry-run's campaign clock sees imaging take
time.

The ground truth of each rendered field goes to :attr:`SimulatedScope.fields`, never into the
images' metadata; tests read it through :func:`simulated_scope`.
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import (
    GenericDevice,
    ShutterDevice,
    SimpleCameraDevice,
    StageDevice,
    StateDevice,
    UniMMCore,
    XYStageDevice,
    pymm_property,
)

from instruments.interfaces import Clock
from simulators.biology import stable_hash
from simulators.microscope import CHANNELS, render_field
from simulators.world import SimulatedLab

_SCOPES: weakref.WeakKeyDictionary[Any, SimulatedScope] = weakref.WeakKeyDictionary()


@dataclass
class FieldTruth:
    """What one rendered field really shows (for tests; analyzers never see it)."""

    plate: str | None
    well: str | None
    position_um: tuple[float, float]
    time_s: float
    well_tumour: int
    well_normal: int
    truth: dict[str, Any]


@dataclass
class _Field:
    time_s: float
    seed: list[int]
    n_tumour: int
    n_normal: int
    artefact: str | None
    images: dict[float, np.ndarray] = field(default_factory=dict)  # exposure -> (C, Y, X)


class SimulatedScope:
    """The shared state of the simulated microscope's devices.

    Args:
        lab: the simulated lab whose plates are imaged.
        clock: snaps and moves advance it.
        image_size: ``(Y, X)`` camera pixels.
        pixel_size_um: µm per pixel at the sample.
        seed: seeds the rendering (with plate, well, position and time).
        field_reuse_s: a field's render is reused for this long at the same position (s).
        stage_speed_um_s, stage_settle_s: stage move time = settle + distance / speed.
        nucleus_diameter_um, touching_fraction: passed to ``render_field``.
    """

    def __init__(
        self,
        lab: SimulatedLab,
        clock: Clock,
        *,
        image_size: tuple[int, int] = (256, 256),
        pixel_size_um: float = 0.65 * 4,
        seed: int = 0,
        field_reuse_s: float = 120.0,
        stage_speed_um_s: float = 20_000.0,
        stage_settle_s: float = 0.05,
        nucleus_diameter_um: float = 11.0,
        touching_fraction: float = 0.2,
    ) -> None:
        self.lab = lab
        self.clock = clock
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.pixel_size_um = float(pixel_size_um)
        self.seed = int(seed)
        self.field_reuse_s = float(field_reuse_s)
        self.stage_speed_um_s = float(stage_speed_um_s)
        self.stage_settle_s = float(stage_settle_s)
        self.nucleus_diameter_um = float(nucleus_diameter_um)
        self.touching_fraction = float(touching_fraction)
        self.xy_um = (0.0, 0.0)
        self.z_um = 0.0
        self.channel = CHANNELS[0]
        self.shutter_open = False
        self.plate: str = ""
        self.snaps = 0
        self.fields: deque[FieldTruth] = deque(maxlen=4096)
        self._cache: OrderedDict[tuple[Any, ...], _Field] = OrderedDict()

    # ---------------------------------------------------------------------------- motion

    def move_xy(self, x: float, y: float) -> None:
        dist = math.hypot(x - self.xy_um[0], y - self.xy_um[1])
        self.xy_um = (float(x), float(y))
        if dist > 0:
            self.clock.sleep(self.stage_settle_s + dist / self.stage_speed_um_s)

    def well_at(self, x: float, y: float) -> str | None:
        """The well whose bottom is under stage position ``(x, y)`` µm, or None."""
        if not self.plate:
            return None
        pt = self.lab.plate_type(self.plate)
        col = round((x / 1000.0 - pt.a1_x_mm) / pt.pitch_mm)
        row = round((y / 1000.0 - pt.a1_y_mm) / pt.pitch_mm)
        if not (0 <= row < pt.rows and 0 <= col < pt.cols):
            return None
        well = f"{chr(65 + row)}{col + 1:02d}"
        cx, cy = pt.well_centre_um(well)
        radius_um = 1000.0 * math.sqrt(pt.well_area_mm2 / math.pi)
        return well if math.hypot(x - cx, y - cy) <= radius_um else None

    # ------------------------------------------------------------------------- rendering

    @property
    def field_area_mm2(self) -> float:
        h, w = self.image_size
        return h * w * (self.pixel_size_um / 1000.0) ** 2

    def snap(self, exposure_ms: float) -> np.ndarray:
        """The camera image ``(Y, X)`` uint16 for the current position, channel, exposure."""
        self.snaps += 1
        if self.shutter_open:
            fld = self._field_here()
            images = fld.images.get(exposure_ms)
            if images is None:
                images = self._render(fld, exposure_ms)
                fld.images[exposure_ms] = images
            image = images[CHANNELS.index(self.channel)]
        else:  # no light: offset and read noise only
            image = render_field(0, 0, channels=[self.channel], image_size=self.image_size,
                                 exposure_ms=1e-6, rng=self.snaps)[0][0]  # fmt: skip
        self.clock.sleep(exposure_ms / 1000.0)
        return image

    def _field_here(self) -> _Field:
        x, y = self.xy_um
        well = self.well_at(x, y)
        key = (self.plate, well, round(x, 1), round(y, 1))
        now = self.clock.now()
        fld = self._cache.get(key)
        if fld is not None and now - fld.time_s <= self.field_reuse_s:
            self._cache.move_to_end(key)
            return fld
        fld = self._draw_field(well, x, y, now)
        self._cache[key] = fld
        while len(self._cache) > 64:
            self._cache.popitem(last=False)
        return fld

    def _draw_field(self, well: str | None, x: float, y: float, now: float) -> _Field:
        seed = [self.seed, stable_hash(self.plate), stable_hash(well or "-"),
                int(round(x * 10)) % 2**32, int(round(y * 10)) % 2**32,
                int(now * 1000) % 2**32]  # fmt: skip
        if well is None:
            return _Field(now, seed, 0, 0, None)
        self.lab.ensure_plate(self.plate, now)
        cells = self.lab.cells_in_well(self.plate, well, now)
        rng = np.random.default_rng(seed)
        frac = self.field_area_mm2 / self.lab.plate_type(self.plate).well_area_mm2
        n_t, n_n = rng.poisson([cells.tumour * frac, cells.normal * frac])
        artefact = cells.artefact
        if artefact in ("bubble", "debris") and rng.random() > 0.75:
            artefact = None  # this field happens to miss the bubble / debris
        fld = _Field(now, [*seed, 1], int(n_t), int(n_n), artefact)
        self._record(fld, well, x, y, cells.tumour, cells.normal)
        return fld

    def _render(self, fld: _Field, exposure_ms: float) -> np.ndarray:
        image, _ = render_field(
            fld.n_tumour, fld.n_normal, channels=CHANNELS, image_size=self.image_size,
            pixel_size_um=self.pixel_size_um, exposure_ms=exposure_ms,
            rng=np.random.default_rng(fld.seed), artefact=fld.artefact,
            nucleus_diameter_um=self.nucleus_diameter_um,
            touching_fraction=self.touching_fraction,
        )  # fmt: skip
        return image

    def _record(self, fld: _Field, well: str, x: float, y: float, tumour: int, normal: int) -> None:
        self.fields.append(
            FieldTruth(
                plate=self.plate,
                well=well,
                position_um=(x, y),
                time_s=fld.time_s,
                well_tumour=int(tumour),
                well_normal=int(normal),
                truth={
                    "n_tumour": fld.n_tumour,
                    "n_normal": fld.n_normal,
                    "artefact": fld.artefact,
                },  # fmt: skip
            )
        )


# ------------------------------------------------------------------------------- devices


class SimCamera(SimpleCameraDevice):
    """A camera whose snap renders what is under the objective of its :class:`SimulatedScope`."""

    def __init__(self, scope: SimulatedScope) -> None:
        super().__init__()
        self.scope = scope
        self._exposure_ms = 20.0

    def sensor_shape(self) -> tuple[int, int]:
        return self.scope.image_size

    def dtype(self) -> Any:
        return np.uint16

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        self._exposure_ms = float(exposure)

    def snap(self, buffer: np.ndarray) -> dict[str, Any]:
        buffer[:] = self.scope.snap(self._exposure_ms)
        return {}


class SimXYStage(XYStageDevice):
    """An XY stage; moving it takes simulated time."""

    def __init__(self, scope: SimulatedScope) -> None:
        super().__init__()
        self.scope = scope

    def set_position_um(self, x: float, y: float) -> None:
        self.scope.move_xy(x, y)

    def get_position_um(self) -> tuple[float, float]:
        return self.scope.xy_um

    def set_origin_x(self) -> None:
        raise NotImplementedError("the simulated stage has a fixed origin")

    def set_origin_y(self) -> None:
        raise NotImplementedError("the simulated stage has a fixed origin")

    def home(self) -> None:
        self.scope.move_xy(0.0, 0.0)

    def stop(self) -> None:
        pass


class SimFocus(StageDevice):
    """A focus drive (z, µm). The simulated sample is thin: every z looks in focus."""

    def __init__(self, scope: SimulatedScope) -> None:
        super().__init__()
        self.scope = scope

    def set_position_um(self, val: float) -> None:
        self.scope.z_um = float(val)

    def get_position_um(self) -> float:
        return self.scope.z_um

    def home(self) -> None:
        self.scope.z_um = 0.0

    def stop(self) -> None:
        pass

    def set_origin(self) -> None:
        self.scope.z_um = 0.0


class SimShutter(ShutterDevice):
    """The excitation shutter; a closed shutter gives dark frames."""

    def __init__(self, scope: SimulatedScope) -> None:
        super().__init__()
        self.scope = scope

    def get_open(self) -> bool:
        return self.scope.shutter_open

    def set_open(self, open: bool) -> None:
        self.scope.shutter_open = bool(open)


class SimFilterWheel(StateDevice):
    """A filter cube turret whose labels are the simulated channels."""

    def __init__(self, scope: SimulatedScope) -> None:
        super().__init__(dict(enumerate(CHANNELS)))
        self.scope = scope

    def get_state(self) -> int:
        return CHANNELS.index(self.scope.channel)

    def set_state(self, position: int) -> None:
        self.scope.channel = CHANNELS[int(position)]


class SimPlateHolder(GenericDevice):
    """The stage insert; ``Barcode`` names the plate on it (empty: no plate)."""

    def __init__(self, scope: SimulatedScope) -> None:
        super().__init__()
        self.scope = scope

    @pymm_property(name="Barcode")
    def barcode(self) -> str:
        return self.scope.plate

    @barcode.setter  # type: ignore[no-redef]
    def barcode(self, value: str) -> None:
        self.scope.plate = str(value)


# ---------------------------------------------------------------------------------- core


class SimulatedMMCore(UniMMCore):
    """``UniMMCore`` whose snaps honour auto-shutter for a Python shutter.

    In pymmcore-plus 0.18.1, ``UniMMCore`` snaps a Python camera without opening a Python
    shutter (it only emits the shutter's property changes), so with auto-shutter on every
    frame would be dark. A real ``CMMCore`` opens the shutter around the exposure; so does
    this core. Waiting for devices returns at once when none is busy (``UniMMCore`` starts
    a thread pool for every wait, a few ms per MDA event; the simulated devices never are).
    """

    def waitForDeviceType(self, devType: int) -> None:
        if self.deviceTypeBusy(devType):
            super().waitForDeviceType(devType)

    def _do_snap_image(self) -> None:
        shutter = self.getShutterDevice()
        if not (self.getAutoShutter() and shutter and self.isPyDevice(shutter)):
            return super()._do_snap_image()
        self.setShutterOpen(shutter, True)
        try:
            return super()._do_snap_image()
        finally:
            self.setShutterOpen(shutter, False)


def make_simulated_core(
    lab: SimulatedLab,
    clock: Clock,
    *,
    channel_group: str = "Channel",
    mm_path: str | Path | None = None,
    **scope_options: Any,
) -> UniMMCore:
    """A ``UniMMCore`` (:class:`SimulatedMMCore`) with the simulated devices loaded, initialised and configured.

    Device labels: ``Camera``, ``XY``, ``Z``, ``Shutter``, ``Filter``, ``Plate``. The
    ``channel_group`` group has one preset per channel (``Filter``'s ``Label``); the pixel
    size config ``"Res"`` gives the scope's pixel size.

    Args:
        lab, clock: the simulated lab and the clock the devices use.
        channel_group: name of the channel config group.
        mm_path: any folder (the core otherwise logs that Micro-Manager is not installed);
            default: this package's folder.
        **scope_options: passed to :class:`SimulatedScope` (``image_size``,
            ``pixel_size_um``, ``seed``, ...).
    """
    scope = SimulatedScope(lab, clock, **scope_options)
    core = SimulatedMMCore(mm_path=str(mm_path or Path(__file__).resolve().parent))
    devices = {
        "Camera": SimCamera(scope),
        "XY": SimXYStage(scope),
        "Z": SimFocus(scope),
        "Shutter": SimShutter(scope),
        "Filter": SimFilterWheel(scope),
        "Plate": SimPlateHolder(scope),
    }
    for label, device in devices.items():
        core.loadPyDevice(label, device)
    core.initializeAllDevices()
    core.setCameraDevice("Camera")
    core.setXYStageDevice("XY")
    core.setFocusDevice("Z")
    core.setShutterDevice("Shutter")
    core.setAutoShutter(True)
    for name in CHANNELS:
        core.defineConfig(channel_group, name, "Filter", "Label", name)
    core.setChannelGroup(channel_group)
    core.definePixelSizeConfig("Res")
    core.setPixelSizeUm("Res", scope.pixel_size_um)
    core.setPixelSizeConfig("Res")
    _SCOPES[core] = scope
    return core


def simulated_scope(core: Any) -> SimulatedScope:
    """The :class:`SimulatedScope` behind a core from :func:`make_simulated_core`.

    Raises:
        KeyError: ``core`` was not made by :func:`make_simulated_core`.
    """
    return _SCOPES[core]
