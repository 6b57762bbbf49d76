"""Train an adaptive-dosing policy with PPO (Stable-Baselines3) on simulated cultures.

Usage::

    python -m planners.rl.train --out policies/adaptive_dosing.zip            # default problem
    python -m planners.rl.train --config train.yaml --out policy.zip          # a TrainConfig
    python -m planners.rl.train --tiny --out /tmp/tiny.zip                    # seconds (tests)

``train.yaml`` holds :class:`~planners.rl.policy.TrainConfig` fields (``problem:`` nests the
protocol settings, culture prior, imaging noise and objective); ``--timesteps`` and ``--seed``
override it. Writes the policy zip and its sidecar (checksum, configuration, versions).
Training runs on the CPU in one thread; cultures come from the prior's training stream
(``seed``), never from the benchmark's held-out streams.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402

from planners.rl.env import DosingVecEnv  # noqa: E402
from planners.rl.policy import RLPolicy, TrainConfig, save_policy  # noqa: E402

#: the training stream of cultures: ``default_rng([TRAIN_STREAM, seed])``
TRAIN_STREAM = 1


class _Outcomes(BaseCallback):
    """Keeps the last episodes' outcomes and reports progress every ``every`` updates."""

    def __init__(self, every: int, log: Any) -> None:
        super().__init__()
        self.recent: deque[dict[str, float]] = deque(maxlen=2000)
        self.episodes = 0
        self.every = every
        self.log = log
        self.updates = 0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "outcome" in info:
                self.recent.append(info["outcome"])
                self.episodes += 1
        return True

    def _on_rollout_end(self) -> None:
        self.updates += 1
        if self.log is not None and self.updates % self.every == 0:
            s = self.summary()
            self.log(
                f"{self.num_timesteps:>9} steps  {self.episodes:>7} episodes  "
                f"penalised {s['penalised']:.3f}  feasible {s['feasible']:.2f}  "
                f"tumour {s['tumour_viability']:.3f}  drug {s['drug_um']:.1f} uM"
            )

    def summary(self) -> dict[str, float]:
        if not self.recent:
            return {}
        keys = self.recent[0].keys()
        return {k: float(np.mean([o[k] for o in self.recent])) for k in keys}


def train(config: TrainConfig, out: str | Path, log: Any = None) -> RLPolicy:
    """Train a policy as ``config`` says and save it (with its sidecar) to ``out``."""
    torch.set_num_threads(1)
    env = DosingVecEnv(
        config.problem, config.n_envs, seed=config.seed, sampler=_training_sampler(config)
    )
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        learning_rate=config.learning_rate,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        ent_coef=config.ent_coef,
        seed=config.seed,
        policy_kwargs={"net_arch": list(config.net_arch)},
        device="cpu",
        verbose=0,
    )
    callback = _Outcomes(every=10, log=log)
    start, cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=config.total_timesteps, callback=callback)
    extra = {
        "train_seconds": round(time.perf_counter() - start, 2),
        "train_cpu_seconds": round(time.process_time() - cpu, 2),
        "timesteps": int(model.num_timesteps),
        "episodes": callback.episodes,
        "last_episodes": callback.summary(),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return save_policy(model, config, out, extra)


def _training_sampler(config: TrainConfig) -> Any:
    rng = np.random.default_rng([TRAIN_STREAM, config.seed])
    prior = config.problem.prior

    def sample(_: np.random.Generator, n: int) -> Any:
        return prior.sample(rng, n)

    return sample


def load_config(path: str | Path | None, tiny: bool = False, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML/JSON file (or the defaults), with overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.tiny(**data) if tiny else TrainConfig.model_validate(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m planners.rl.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--config", help="TrainConfig as YAML or JSON (default: the defaults)")
    ap.add_argument("--out", required=True, help="policy file to write (.zip)")
    ap.add_argument("--tiny", action="store_true", help="a tiny policy in seconds (tests, CI)")
    ap.add_argument("--timesteps", type=int, help="override total_timesteps")
    ap.add_argument("--seed", type=int, help="override seed")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        config = load_config(args.config, args.tiny, total_timesteps=args.timesteps, seed=args.seed)
    except Exception as e:  # a bad file: one paragraph naming the problem, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    policy = train(config, args.out, log)
    m = policy.meta
    print(
        f"{policy.path}: {policy.policy_id}, {m['timesteps']} steps, {m['episodes']} episodes, "
        f"{m['train_seconds']} s; last episodes: "
        + ", ".join(f"{k} {v:.3f}" for k, v in m["last_episodes"].items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
