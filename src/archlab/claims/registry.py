"""The claim registry: ``experiments/claims/<id>.yaml`` → :class:`Claim`, and its jobs.

A claim file (every key is checked here; mistakes are one-line :class:`ClaimError`)::

    id: mlp_glu                       # = file name
    claim: one sentence
    sources: [..]                     # with the literature's numbers
    base: [model/size=tiny, ...]      # overrides shared by every arm
    arms: {swiglu: [model/mlp=swiglu], relu: [model/mlp=relu]}
    baseline: swiglu
    seeds: 5                          # seeds 0..n-1 for every arm (paired by seed)
    lr_grid: [1e-3, 1e-2]             # optional: every arm × seed × lr
    budget: {steps: 150, batch_size: 16, block_size: 64}   # documentation; base sets them
    metrics: [val_loss]
    rule: [{check: lower, arm: relu, metric: val_loss, margin: 1%}]
    scale_note: what the literature says needs scale
    requires: [../shared/data/tinyshakespeare.txt]          # optional: files (skip if absent)
    smoke: {overrides: [train.max_steps=2], seeds: 1, lr_grid: [1e-3, 1e-2]}

Override lists are merged by key, later wins: base < smoke < arm < lr < seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archlab.claims.bench import BENCHMARKS
from archlab.errors import first_line
from archlab.runs.naming import override_key

CLAIMS_SUBDIR = Path("experiments") / "claims"  # in the project that `archlab reproduce` runs in


def find_claims_dir(start: Path | None = None) -> Path:
    """``$ARCHLAB_CLAIMS_DIR``, else ``experiments/claims/`` in the working directory or the
    nearest parent that has one (works from a wheel install: nothing is read from the package)."""
    if os.environ.get("ARCHLAB_CLAIMS_DIR"):
        return Path(os.environ["ARCHLAB_CLAIMS_DIR"])
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / CLAIMS_SUBDIR).is_dir():
            return d / CLAIMS_SUBDIR
    raise ClaimError(
        f"no {CLAIMS_SUBDIR}/ in {here} or above: run archlab reproduce in an archlab "
        "checkout, or pass --claims-dir DIR"
    )


CHECK_KINDS = {
    "lower",
    "higher",
    "equivalent",
    "small_cost",
    "faster",
    "ratio_equals",
    "lr_sensitivity_lower",
    "below",
}
REQUIRED = (
    "id",
    "claim",
    "sources",
    "base",
    "arms",
    "baseline",
    "seeds",
    "budget",
    "metrics",
    "rule",
    "scale_note",
)
OPTIONAL = ("lr_grid", "smoke", "requires", "notes", "title", "needs", "arm_seeds", "benchmark")


class ClaimError(ValueError):
    """A mistake in a claim file or in the reproduce command line: one line, exit code 2."""


@dataclass
class Claim:
    id: str
    claim: str
    sources: list[str]
    base: list[str]
    arms: dict[str, list[str]]
    baseline: str
    seeds: int
    budget: dict[str, Any]
    metrics: list[str]
    rule: list[dict[str, Any]]
    scale_note: str
    lr_grid: list[float] | None = None
    smoke: dict[str, Any] = field(default_factory=dict)
    requires: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    title: str = ""
    needs: list[str] = field(default_factory=list)  # knobs/metrics from other branches
    arm_seeds: dict[str, int] = field(default_factory=dict)  # fewer seeds for some arms
    benchmark: list[str] = field(default_factory=list)  # micro-benchmarks (claims/bench.py)
    path: Path | None = None

    def settings(self, smoke: bool) -> tuple[list[str], int, list[float] | None]:
        """(base overrides, number of seeds, LR grid) for the full or the smoke run."""
        if not smoke:
            return list(self.base), self.seeds, self.lr_grid
        s = self.smoke or {}
        grid = self.lr_grid
        if grid is not None:
            grid = s.get("lr_grid") or grid[:: max(1, len(grid) - 1)][:2]
        return merge(self.base, s.get("overrides") or []), int(s.get("seeds", 1)), grid

    def jobs(self, smoke: bool = False) -> list[tuple[str, list[str]]]:
        """``(arm, overrides)`` for every job, seed-major (arms interleaved, so load changes on a
        shared machine hit every arm alike and a partial run still has paired seeds)."""
        base, n_seeds, grid = self.settings(smoke)
        out = []
        for seed in range(n_seeds):
            for lr in grid or [None]:
                for arm, arm_over in self.arms.items():
                    if not smoke and seed >= self.arm_seeds.get(arm, n_seeds):
                        continue
                    extra = [f"optim.lr={lr}"] if lr is not None else []
                    out.append((arm, merge(base, arm_over, extra, [f"seed={seed}"])))
        return out

    def arm_signatures(self, smoke: bool = False) -> dict[frozenset, str]:
        """The override set of each arm's jobs without seed and lr -> arm name."""
        sigs: dict[frozenset, str] = {}
        for arm, overrides in self.jobs(smoke):
            sigs[signature(overrides)] = arm
        return sigs

    def missing_requirements(self) -> list[str]:
        """Required paths (relative to the project holding ``experiments/claims/``) absent."""
        root = self.path.resolve().parent.parent.parent
        return [p for p in self.requires if not (root / p).exists()]


def merge(*lists: list[str]) -> list[str]:
    """Override lists merged by key (``model/mlp``, ``optim.lr``): later lists win."""
    merged: dict[str, str] = {}
    for overrides in lists:
        for o in overrides:
            merged.pop(override_key(o), None)
            merged[override_key(o)] = o
    return list(merged.values())


def signature(overrides: list[str]) -> frozenset:
    return frozenset(o for o in overrides if override_key(o) not in ("seed", "optim.lr"))


def _need(cond: bool, path: Path, message: str) -> None:
    if not cond:
        raise ClaimError(f"{path.name}: {message}")


def _strs(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def load_claim(path: Path) -> Claim:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ClaimError(f"{path}: unreadable: {first_line(err)}") from None
    _need(isinstance(data, dict), path, "not a mapping")
    missing = [k for k in REQUIRED if k not in data]
    _need(not missing, path, f"missing keys: {', '.join(missing)}")
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    _need(not unknown, path, f"unknown keys: {', '.join(unknown)}")
    _need(data["id"] == path.stem, path, f"id {data['id']!r} must equal the file name")
    _need(_strs(data["base"]), path, "base must be a list of override strings")
    arms = data["arms"]
    _need(isinstance(arms, dict) and len(arms) >= 2, path, "arms must map >= 2 names to overrides")
    for name, over in arms.items():
        _need(_strs(over), path, f"arm {name}: overrides must be a list of strings")
    _need(data["baseline"] in arms, path, f"baseline {data['baseline']!r} is not an arm")
    sigs = {frozenset(merge(data["base"], o)) for o in arms.values()}
    _need(len(sigs) == len(arms), path, "two arms have the same overrides")
    _need(isinstance(data["seeds"], int) and data["seeds"] >= 1, path, "seeds must be an int >= 1")
    arm_seeds = data.get("arm_seeds") or {}
    _need(
        isinstance(arm_seeds, dict)
        and all(
            a in arms and isinstance(n, int) and 1 <= n <= data["seeds"]
            for a, n in arm_seeds.items()
        ),
        path,
        "arm_seeds must map arms to 1..seeds",
    )
    _need(
        data["baseline"] not in arm_seeds or arm_seeds[data["baseline"]] == data["seeds"],
        path,
        "the baseline arm runs all seeds (seed noise is measured on it)",
    )
    grid = data.get("lr_grid")
    if grid is not None:
        _need(
            isinstance(grid, list)
            and len(grid) >= 2
            and all(isinstance(x, (int, float)) and x > 0 for x in grid),
            path,
            "lr_grid must list >= 2 positive learning rates",
        )
        grid = [float(x) for x in grid]
    _need(isinstance(data["rule"], list) and data["rule"], path, "rule must be a non-empty list")
    for i, check in enumerate(data["rule"]):
        _need(
            isinstance(check, dict) and check.get("check") in CHECK_KINDS,
            path,
            f"rule[{i}]: check must be one of {', '.join(sorted(CHECK_KINDS))}",
        )
        _need(
            check.get("arm") in arms
            and (
                check.get("arm") != check.get("baseline", data["baseline"])
                or "baseline_metric" in check
            ),
            path,
            f"rule[{i}]: arm {check.get('arm')!r} must be a non-baseline arm (or set baseline_metric)",
        )
        _need(
            check.get("baseline", data["baseline"]) in arms,
            path,
            f"rule[{i}]: baseline {check.get('baseline')!r} is not an arm",
        )
        if check["check"] == "lr_sensitivity_lower":
            _need(grid is not None, path, f"rule[{i}]: lr_sensitivity_lower needs lr_grid")

    unknown_b = [b for b in data.get("benchmark") or [] if b not in BENCHMARKS]
    _need(not unknown_b, path, f"unknown benchmark {unknown_b}; known: {', '.join(BENCHMARKS)}")
    smoke = data.get("smoke") or {}
    _need(isinstance(smoke, dict), path, "smoke must be a mapping")
    _need(_strs(smoke.get("overrides", [])), path, "smoke.overrides must be a list of strings")
    return Claim(
        id=data["id"],
        claim=str(data["claim"]).strip(),
        sources=list(data["sources"]),
        base=list(data["base"]),
        arms={k: list(v) for k, v in arms.items()},
        baseline=data["baseline"],
        seeds=data["seeds"],
        budget=dict(data["budget"]),
        metrics=list(data["metrics"]),
        rule=list(data["rule"]),
        scale_note=str(data["scale_note"]).strip(),
        lr_grid=grid,
        smoke=smoke,
        requires=list(data.get("requires") or []),
        notes=list(data.get("notes") or []),
        title=str(data.get("title") or data["id"]),
        needs=list(data.get("needs") or []),
        arm_seeds=dict(arm_seeds),
        benchmark=list(data.get("benchmark") or []),
        path=path,
    )


def claim_paths(claims_dir: Path | None = None) -> list[Path]:
    return sorted(Path(claims_dir or find_claims_dir()).glob("*.yaml"))


# the numbering (#8): claims not listed here come after, by name
ORDER = (
    "norm_placement",
    "rmsnorm",
    "bias",
    "glu",
    "parallel",
    "positions",
    "shape",
    "wd_dropout",
    "zloss",
    "qknorm",
    "gqa",
    "swa",
)


def load_all(claims_dir: Path | None = None) -> list[Claim]:
    claims = [load_claim(p) for p in claim_paths(claims_dir)]
    rank = {c: i for i, c in enumerate(ORDER)}
    return sorted(claims, key=lambda c: (rank.get(c.id, len(ORDER)), c.id))


def get(claim_id: str, claims_dir: Path | None = None) -> Claim:
    claims_dir = Path(claims_dir or find_claims_dir())
    path = claims_dir / f"{claim_id}.yaml"
    if not path.exists():
        known = ", ".join(p.stem for p in claim_paths(claims_dir)) or "none"
        raise ClaimError(f"unknown claim {claim_id!r}; known: {known}, or all")
    return load_claim(path)
