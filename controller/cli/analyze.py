"""``cellpilot analyze IMAGE... --out DIR``: count the nuclei of images a user has.

Thin: reading, counting and writing live in :mod:`analyzers.images` and
:func:`analyzers.count_nuclei`. Every good image is analysed; each bad file (missing, not an
image, no such channel, 3-D, empty) gets one line on standard error and the exit code is 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller.cli.common import console, err_console


def analyze(
    images: Annotated[list[Path], typer.Argument(help="TIFF / OME-TIFF / PNG files")],
    out: Annotated[Path, typer.Option("--out", help="folder for labels, tables and overlays")],
    pixel_size_um: Annotated[
        float | None,
        typer.Option("--pixel-size-um", min=0.0, help="µm per pixel (default: from OME metadata)"),
    ] = None,
    nucleus_diameter_um: Annotated[
        float | None,
        typer.Option(
            "--nucleus-diameter-um",
            min=0.0,
            help="expected nucleus diameter (µm); default: measured from each image",
        ),
    ] = None,
    channel: Annotated[
        str | None, typer.Option("--channel", help="nuclear channel: index or OME name")
    ] = None,
    texture_aware: Annotated[
        bool,
        typer.Option(
            "--texture-aware",
            help="steps for textured nuclei and confluent fields at 20x/40x (merge of "
            "texture-split pieces, pyknotic nuclei left out); see docs/analysis.md",
        ),
    ] = False,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="segmentation: 'learned' small U-Net (default; weights shipped in "
            "analyzers/weights) or 'seeded' watershed (~3x faster); see docs/analysis.md",
        ),
    ] = "learned",
) -> None:
    """Segment and count nuclei; write labels (TIFF), counts and per-nucleus features (CSV,
    JSON) and an overlay PNG per image into --out."""
    from analyzers import AnalysisError, count_nuclei
    from analyzers.images import read_image, write_counts, write_results

    if method not in ("seeded", "learned"):
        err_console.print(
            f"[bold red]error:[/] --method must be 'seeded' or 'learned', not {method!r}"
        )
        raise typer.Exit(2)
    summaries, bad = [], 0
    for path in images:
        try:
            image = read_image(path, channel=channel)
            size = pixel_size_um or image.pixel_size_um
            if nucleus_diameter_um is not None and size is None:
                raise AnalysisError(
                    f"{path}: --nucleus-diameter-um needs a pixel size (the file states none): "
                    "give --pixel-size-um"
                )
            result = count_nuclei(
                image.plane,
                pixel_size_um=size,
                nucleus_diameter_um=nucleus_diameter_um,
                texture_aware=texture_aware,
                method=method,  # type: ignore[arg-type]
            )
        except AnalysisError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            bad += 1
            continue
        write_results(image, result, out)
        summary = {"image": str(path), "channel": image.channel, **result.summary()}
        summaries.append(summary)
        console.print(
            f"{path}: {result.count} nuclei (diameter {result.diameter_px:.1f} px, "
            f"{result.diameter_source})",
            highlight=False,
            soft_wrap=True,
        )
    if summaries:
        write_counts(summaries, out)
        console.print(f"results written to [bold]{out}[/]")
    if bad:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
