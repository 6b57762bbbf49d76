"""Errors raised by instruments (real or simulated). Each carries the data needed to act on it."""

from __future__ import annotations


class InstrumentError(Exception):
    """Base class of every instrument fault. The controller pauses the campaign on one."""


class LiquidHandlingError(InstrumentError):
    """A pipetting operation is impossible (over-aspiration, overflow, empty tip, ...)."""


class ImagingError(InstrumentError):
    """An acquisition failed (no such well, camera fault, focus failure)."""


class PlateHandlingError(InstrumentError):
    """A plate cannot be moved (destination full or unknown, plate not found, arm fault)."""


class DeviceCommunicationError(InstrumentError):
    """Bytes could not be exchanged with a device after the allowed retries."""
