"""Pieces of the pymmcore-plus microscope driver (see :mod:`instruments.mmcore_microscope`).

``plates``: plate geometry and the field grid inside a well (lab units, µm);
``sequence``: building a ``useq.MDASequence`` for one well;
``collect``: turning ``frameReady`` events and engine warnings into frames or errors.
"""
