"""Image analysis (segmentation, counting, features), plate QC (controls, Z') and scoring.

One image: :func:`count_nuclei` (labels, count and per-nucleus features of a nuclear-stain
image, sizes from the pixel size and the nucleus diameter in µm, or measured).

Analyzers are found by name (:func:`get_analyzer`, entry points of the group
``cellpilot.analyzers``); ``"nuclei_coculture"`` is :func:`analyzers.plate.analyze_plate`. Nothing here knows where images came from.
"""

from __future__ import annotations

from analyzers.count import NucleusCount, count_nuclei
from analyzers.exceptions import (
    AnalysisError,
    DuplicateAnalyzer,
    MissingChannel,
    MissingControls,
    MissingImages,
    UnknownAnalyzer,
)
from analyzers.nuclei import nucleus_features, segment_field, segment_nuclei
from analyzers.plate import AnalysisSettings, PlateAnalysis, WellResult, analyze_plate, z_prime
from analyzers.registry import get_analyzer, list_analyzers, register_analyzer
from analyzers.scoring import ExperimentScore, OutlierRecord, score_experiments

__all__ = [
    "AnalysisError",
    "AnalysisSettings",
    "DuplicateAnalyzer",
    "ExperimentScore",
    "MissingChannel",
    "MissingControls",
    "MissingImages",
    "NucleusCount",
    "OutlierRecord",
    "PlateAnalysis",
    "UnknownAnalyzer",
    "WellResult",
    "analyze_plate",
    "count_nuclei",
    "get_analyzer",
    "list_analyzers",
    "nucleus_features",
    "register_analyzer",
    "score_experiments",
    "segment_field",
    "segment_nuclei",
    "z_prime",
]
