"""Settings of the ``nuclei_coculture`` analyzer (a campaign file's ``analyzer.settings``).

Every field has a working default and a description; QC thresholds and the outlier rule live
here so a campaign states how strict it is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AnalysisSettings"]


class AnalysisSettings(BaseModel):
    """Settings of the nuclei co-culture analyzer (all have working defaults).

    Segmentation sizes in pixels default to values scaled from ``nucleus_diameter_um`` and
    each frame's ``pixel_size_um`` (:func:`analyzers.nuclei.segmentation_params`); set a
    ``*_px`` field to override it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    nuclear_channel: str = "DAPI"
    marker_channel: str = Field(default="GFP", description="tumour marker channel")
    nucleus_diameter_um: float = Field(
        default=10.0, gt=0, description="typical nucleus diameter; scales the *_px defaults"
    )
    min_area_px: int | None = Field(default=None, ge=1, description="smaller objects dropped")
    max_area_px: int | None = Field(default=None, ge=1, description="larger: artefacts, flagged")
    smooth_sigma_px: float | None = Field(default=None, ge=0)
    background_block_px: int | None = Field(default=None, ge=8, description="several nuclei")
    min_snr: float = Field(default=5.0, gt=0, description="threshold floor in noise SDs")
    min_peak_distance_px: int | None = Field(default=None, ge=1, description="seed spacing")
    merge_area_px: int | None = Field(default=None, ge=0, description="merge smaller pieces")
    log_sigma_px: float | None = Field(default=None, ge=0, description="0: distance seeds")
    seeded_diameter_px: float | None = Field(
        default=None,
        ge=0,
        description="seeded watershed at this nucleus size (px); 0: the threshold pipeline; "
        "default: the nucleus size in px when it is 6 px or more",
    )
    texture_aware: bool = Field(
        default=False,
        description="with the seeded watershed (nuclei of 6 px and more): merge texture-split "
        "pieces, leave pyknotic nuclei out, noise estimate for confluent fields "
        "(analyzers.seeded; off by default: worse on the real hold-out images)",
    )
    segmentation_method: Literal["seeded", "learned"] = Field(
        default="seeded",
        description="nuclei of 6 px and more: 'seeded' watershed (analyzers.seeded) or "
        "'learned' small U-Net (analyzers.learned; weights shipped in analyzers/weights; the "
        "default of count_nuclei and `cellpilot analyze`, better on real images, but the "
        "plate QC rules (bubbles, field counts) were calibrated on the seeded segmentation "
        "and are not yet on it); smaller nuclei always use the threshold pipeline",
    )
    marker_threshold: float | None = Field(
        default=None, description="fixed marker threshold (counts); None fits it per plate"
    )
    marker_split_snr: float = Field(
        default=10.0, ge=0, description="split tumour+normal fused objects; 0 disables"
    )
    marker_min_separation: float = Field(
        default=4.0, gt=0, description="class-mean gap in pooled SDs for a two-population plate"
    )
    marker_fallback_snr: float = Field(default=10.0, gt=0)
    field_count_tolerance: float = Field(
        default=0.5, gt=0, description="flag a field off its well's median count by this fraction"
    )
    field_count_z: float = Field(
        default=3.0, ge=0, description="... and by this many (overdispersed) Poisson SDs of it"
    )
    field_empty_region_factor: float = Field(
        default=5.5,
        gt=0,
        description="fixed gap rule: flag a field with a nucleus-free disc this many nucleus "
        "spacings wide",
    )
    field_qc_rule: Literal["calibrated", "fixed"] = Field(
        default="calibrated",
        description="calibrated: field QC judged against the plate's own fields: a well is "
        "flagged when its empty regions are unlikely under a Gumbel law fitted to the plate "
        "(analyzers.qc.gap_flags), field count SDs widened by the plate's measured "
        "overdispersion (analyzers.qc.field_dispersion); fixed: any field over "
        "field_empty_region_factor, plain Poisson SDs",
    )
    field_gap_alpha: float = Field(
        default=3e-4,
        gt=0,
        lt=1,
        description="calibrated gap rule: a clean well's chance of being flagged (chosen on "
        "development seeds of benchmarks/outliers.py)",
    )
    exclude_flagged_fields: bool = False
    exclude_flagged_wells_from_scores: bool = False
    z_prime_metric: str = Field(
        default="tumour_count",
        pattern="^(tumour_count|normal_count|cell_count)$",
        description="set it to judge the plate by this one metric's Z' only",
    )
    z_prime_min: float = Field(default=0.5, description="a plate needs Z' at least this")
    qc_z_prime_metrics: tuple[str, ...] = Field(
        default=("tumour_count", "normal_count"),
        description="count metrics (one per cell line) whose Z' must reach z_prime_min",
    )
    max_control_cv: float = Field(
        default=0.25, gt=0, description="largest CV of the kept vehicle wells' count, per line"
    )
    max_flagged_fraction: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="largest share of measured sample wells left out of scores",
    )
    require_positive_controls: bool = True
    outlier_rule: Literal["calibrated", "mad"] = Field(
        default="calibrated",
        description="calibrated: replicate and control wells tested against the plate's "
        "measured spread and counting noise (analyzers.outliers); mad: the earlier MAD rule "
        "over each experiment's replicates (outlier_metrics, outlier_mad_k, outlier_rel_floor)",
    )
    outlier_k: float = Field(
        default=2.75,
        gt=0,
        description="calibrated rule: cut-off in standard errors (chosen on simulated plates, "
        "development seeds 0-9 of benchmarks/outliers.py in layouts with 6 and 10 vehicle "
        "wells, the most artefacts caught with <= 1.5 % of clean wells flagged)",
    )
    control_outlier_k: float = Field(
        default=2.75, gt=0, description="calibrated rule: the cut-off for control wells"
    )
    outlier_count_metrics: tuple[str, ...] = Field(
        default=("total_tumour", "total_normal"),
        description="calibrated rule: total counts (one per cell line) that are tested",
    )
    outlier_metrics: tuple[str, ...] = Field(
        default=("tumour_viability", "normal_viability"), description="mad rule: metrics tested"
    )
    outlier_mad_k: float = Field(default=3.5, gt=0, description="mad rule: cut-off")
    outlier_rel_floor: float = Field(default=0.05, ge=0, description="mad rule: scale floor")

    @property
    def z_prime_checks(self) -> tuple[str, ...]:
        """The metrics whose Z' the plate verdict needs (``z_prime_metric`` if set)."""
        if "z_prime_metric" in self.model_fields_set:
            return (self.z_prime_metric,)
        return self.qc_z_prime_metrics
