"""Markdown reference of campaign files, generated from their JSON Schema (used by hooks.py)."""

from __future__ import annotations

import json
from typing import Any


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    t = prop.get("type", "any")
    if t == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if (
        t == "object"
        and "additionalProperties" in prop
        and isinstance(prop["additionalProperties"], dict)
    ):
        return f"map to {_type(prop['additionalProperties'])}"
    return str(t)


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" in prop:
        return f"`{json.dumps(prop['default'])}`"
    return ""


def _bounds(prop: dict[str, Any]) -> str:
    out = []
    for key, sym in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ):
        if key in prop:
            out.append(f"{sym} {prop[key]}")
    return f" ({', '.join(out)})" if out else ""


def model_table(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        desc = (prop.get("description") or "").replace("\n", " ").replace("|", "\\|")
        rows.append(
            f"| `{name}` | {_type(prop)} | {_default(prop, name in required)} | {desc}{_bounds(prop)} |"
        )
    return "\n".join(rows)


def schema_markdown(schema: dict[str, Any], title_level: int = 2) -> str:
    """The top model's table, then one section per referenced model (alphabetical)."""
    h = "#" * title_level
    parts = [model_table(schema)]
    for name, sub in sorted(schema.get("$defs", {}).items()):
        doc = (sub.get("description") or "").strip()
        body = model_table(sub) if "properties" in sub else f"One of: {_type(sub)}"
        parts.append(f"{h} {name}\n\n{doc}\n\n{body}")
    return "\n\n".join(parts)
