"""The command line (``cellpilot``): one module per group of sub-commands, see
:mod:`controller.cli.app`."""

from __future__ import annotations

import os

# Before numpy/torch are imported: one BLAS/OpenMP thread is 15-25x faster for BoTorch here.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from controller.cli.app import app, main  # noqa: E402

__all__ = ["app", "main"]
