"""Deterministic mutations of campaign files, for the fuzz test and benchmarks/fuzz_campaigns.py."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

ODD_VALUES: list[Any] = [
    None,
    "",
    -1,
    0,
    1,
    1e9,
    1e40,
    float("inf"),
    float("-inf"),
    float("nan"),
    10**40,
    -(10**40),
    "x" * 5000,
    [],
    {},
    True,
    "DAPI ",
    [1, 2],
    {"a": 1},
    "1e9",
    0.0001,
]


def leaf_paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value (mapping keys and list indices), containers included."""
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for k, v in data.items():
            out += leaf_paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += leaf_paths(v, (*prefix, i))
    return out


def _parent(data: Any, path: tuple) -> Any:
    for p in path[:-1]:
        data = data[p]
    return data


def mutations(base: dict[str, Any], n: int, seed: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    """``n`` mutated copies of ``base``: a value replaced, a key deleted, added or misspelt."""
    rng = random.Random(seed)
    paths = leaf_paths(base)
    for _ in range(n):
        data = copy.deepcopy(base)
        path = rng.choice(paths)
        parent = _parent(data, path)
        key = path[-1]
        kind = rng.choice(["value", "value", "value", "delete", "add", "typo"])
        where = ".".join(map(str, path))
        if kind == "value":
            value = rng.choice(ODD_VALUES)
            parent[key] = value
            label = f"{where} = {str(value)[:20]!r}"
        elif kind == "delete" and isinstance(parent, dict):
            del parent[key]
            label = f"del {where}"
        elif kind == "add" and isinstance(parent, dict):
            parent[f"{key}_extra"] = 1
            label = f"add {where}_extra"
        elif kind == "typo" and isinstance(parent, dict) and isinstance(key, str) and len(key) > 2:
            parent[key[:-1] + key[-1].upper() + "x"] = parent.pop(key)
            label = f"typo {where}"
        else:
            parent[key] = None
            label = f"{where} = None"
        yield label, data
