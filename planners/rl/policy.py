"""Versioned policy files: a Stable-Baselines3 zip and a JSON sidecar that says what it is.

``policy.zip`` is what ``PPO.save`` writes; ``policy.zip.json`` beside it records

- ``sha256`` of the zip (checked on every load: a policy that changed is refused),
- ``policy_id`` (``rl-<first 12 hex digits of the sha256>``), the name the ledger records with
  every decision,
- the training configuration (:class:`TrainConfig`, which embeds the
  :class:`~planners.rl.problem.DosingProblem`: protocol settings, culture prior, imaging
  noise, objective),
- library versions (cellpilot, stable-baselines3, gymnasium, torch, numpy, python), the
  training time and a summary of the last training episodes.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from stable_baselines3 import PPO

from planners.rl.exceptions import PolicyFileError
from planners.rl.problem import DosingProblem

SIDECAR_FORMAT = "cellpilot-rl-policy/1"


class TrainConfig(BaseModel):
    """How a policy is trained (PPO from Stable-Baselines3 on :class:`DosingVecEnv`).

    ``n_envs * n_steps`` transitions are collected per update; ``total_timesteps`` counts
    transitions (decisions), so episodes = ``total_timesteps / problem.protocol.decisions``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    problem: DosingProblem = Field(default_factory=DosingProblem)
    algorithm: Literal["ppo"] = "ppo"
    total_timesteps: int = Field(default=1_200_000, ge=1)
    n_envs: int = Field(default=64, ge=1)
    n_steps: int = Field(default=64, ge=1, description="transitions per env per update")
    batch_size: int = Field(default=1024, ge=2)
    n_epochs: int = Field(default=5, ge=1)
    learning_rate: float = Field(default=3e-4, gt=0)
    gamma: float = Field(default=1.0, gt=0, le=1, description="fixed horizon: no discount")
    gae_lambda: float = Field(default=0.95, ge=0, le=1)
    ent_coef: float = Field(default=0.01, ge=0)
    net_arch: list[int] = Field(default=[64, 64], min_length=1)
    seed: int = 0

    @classmethod
    def tiny(cls, **overrides: Any) -> TrainConfig:
        """A policy in seconds, for tests and the CI dry-run (it decides, but badly)."""
        base: dict[str, Any] = {
            "total_timesteps": 1024,
            "n_envs": 16,
            "n_steps": 16,
            "batch_size": 64,
            "n_epochs": 2,
            "net_arch": [16, 16],
        }
        base.update(overrides)
        return cls.model_validate(base)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a policy depends on."""
    out = {"python": platform.python_version()}
    for dist in ("cellpilot", "stable-baselines3", "gymnasium", "torch", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(path: str | Path) -> Path:
    """The sidecar of a policy file (``policy.zip`` → ``policy.zip.json``)."""
    return Path(f"{path}.json")


@dataclass(frozen=True)
class RLPolicy:
    """A loaded policy: the SB3 model, its training configuration and its sidecar."""

    model: PPO
    config: TrainConfig
    meta: dict[str, Any]
    path: Path

    @property
    def policy_id(self) -> str:
        """``rl-<12 hex digits of the zip's sha256>``."""
        return str(self.meta["policy_id"])

    @property
    def sha256(self) -> str:
        """SHA-256 of the zip, as checked when it was loaded."""
        return str(self.meta["sha256"])

    @property
    def problem(self) -> DosingProblem:
        """The problem the policy was trained for."""
        return self.config.problem

    def ledger_record(self) -> dict[str, Any]:
        """What the controller journals with every decision of this policy."""
        return {
            "policy_id": self.policy_id,
            "sha256": self.sha256,
            "path": str(self.path),
            "algorithm": self.config.algorithm,
            "versions": self.meta.get("versions", {}),
        }


def save_policy(
    model: PPO, config: TrainConfig, path: str | Path, extra: dict[str, Any] | None = None
) -> RLPolicy:
    """Save ``model`` to ``path`` (a ``.zip``) and write its sidecar; returns it loaded."""
    path = Path(path)
    if path.suffix != ".zip":
        raise PolicyFileError(str(path), "a policy file must end in .zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    digest = sha256_of(path)
    meta = {
        "format": SIDECAR_FORMAT,
        "policy_id": f"rl-{digest[:12]}",
        "sha256": digest,
        "config": json.loads(config.model_dump_json()),
        "versions": library_versions(),
        **(extra or {}),
    }
    sidecar_path(path).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return RLPolicy(model=model, config=config, meta=meta, path=path)


def load_policy(path: str | Path) -> RLPolicy:
    """Load a policy after checking it against its sidecar.

    Raises:
        PolicyFileError: the zip or sidecar is missing or unreadable, or the zip's checksum
            is not the sidecar's.
    """
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise PolicyFileError(
            str(path),
            f"no such file; train one with `python -m planners.rl.train --out {path}` "
            "(--tiny: seconds, for trying the chain)",
        )
    if not side.is_file():
        raise PolicyFileError(str(path), f"its sidecar {side.name} is missing")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        config = TrainConfig.model_validate(meta["config"])
    except (OSError, json.JSONDecodeError, KeyError, ValidationError) as e:
        raise PolicyFileError(str(path), f"unreadable sidecar: {e}") from None
    if meta.get("format") != SIDECAR_FORMAT:
        raise PolicyFileError(
            str(path), f"sidecar format {meta.get('format')!r}, expected {SIDECAR_FORMAT!r}"
        )
    digest = sha256_of(path)
    if digest != meta.get("sha256"):
        raise PolicyFileError(
            str(path),
            f"checksum {digest[:12]} does not match the sidecar's {str(meta.get('sha256'))[:12]}",
        )
    model = PPO.load(path, device="cpu")
    return RLPolicy(model=model, config=config, meta=meta, path=path)
