"""MkDocs hooks: fill generated sections (campaign file reference) at build time."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from schema_md import model_table, schema_markdown  # noqa: E402


def _campaign_reference() -> str:
    from controller.spec import CampaignSpec

    return schema_markdown(CampaignSpec.model_json_schema(), title_level=3)


def _protocol_reference() -> str:
    from protocols import protocol_class, registered_protocols

    out = []
    for name in registered_protocols():
        schema = protocol_class(name).settings_model.model_json_schema()
        out.append(f"### Protocol `{name}`\n\n{schema_markdown(schema, title_level=4)}")
    return "\n\n".join(out)


def _analyzer_reference() -> str:
    from analyzers import get_analyzer, list_analyzers

    out = []
    for name in list_analyzers():
        model = getattr(get_analyzer(name), "settings_model", None)
        if model is not None:
            out.append(f"### Analyzer `{name}`\n\n{model_table(model.model_json_schema())}")
    return "\n\n".join(out)


MARKERS = {
    "<!-- campaign-schema -->": _campaign_reference,
    "<!-- protocol-settings -->": _protocol_reference,
    "<!-- analyzer-settings -->": _analyzer_reference,
}


def on_page_markdown(markdown: str, **kwargs: object) -> str:
    for marker, render in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
