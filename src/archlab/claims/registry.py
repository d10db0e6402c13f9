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
    vs_legacy: what differs from the 150-step run of this claim, and why   # optional
    requires: [../shared/data/tinyshakespeare.txt]          # optional: files (skip if absent)
    smoke: {overrides: [train.max_steps=2], seeds: 1, lr_grid: [1e-3, 1e-2]}
    protocol: tuned                   # optional, with lr_grid: pick each arm's LR on
    scout_seeds: [0, 1]               #   scout seeds (every grid LR), then compare on
    confirm_seeds: [2, 3, 4, 5, 6]    #   confirm seeds at the recorded pick
    scout_overrides: [train.max_steps=500]   # tuned: the scouts' own settings (shorter)
    pilot: {seeds: [7, 8, 9], ucb: 0.8}      # tuned: pilot seeds at the picks size the
                                      #   confirm: n seeds from the paired formula at the
                                      #   pilot SD's upper bound, at most len(confirm_seeds)
    ladder: [[model/size=tiny], [model/size=small]]   # optional rungs: every arm at each;
                                      #   the rule is judged on the last rung, the report
                                      #   adds the ladder (gap per rung, trend, fits); under
                                      #   protocol: tuned scouts and pilots run on the last
                                      #   rung and every rung runs at the arm's pick

Override lists are merged by key, later wins: base < smoke < arm < lr < seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archlab.claims.bench import BENCHMARKS
from archlab.claims.checks import CHECK_KINDS
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
OPTIONAL = (
    "lr_grid",
    "smoke",
    "requires",
    "notes",
    "title",
    "needs",
    "arm_seeds",
    "benchmark",
    "protocol",
    "scout_seeds",
    "confirm_seeds",
    "ladder",
    "campaign",
    "scout_overrides",
    "pilot",
    "vs_legacy",
)
PROTOCOLS = ("grid", "tuned")
PILOT_UCB = 0.8  # default one-sided confidence of the upper bound on the pilot's paired SD
SMOKE_PILOT = [2, 3]  # a smoke run's pilot seeds (scout 0, confirm 1)


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
    protocol: str = "grid"  # grid: every arm × seed × lr; tuned: scout, pick, confirm
    ladder: list[list[str]] = field(default_factory=list)  # rungs (sizes or budgets)
    scout_seeds: list[int] = field(default_factory=list)
    confirm_seeds: list[int] = field(default_factory=list)  # tuned + pilot: the most it may use
    scout_overrides: list[str] = field(default_factory=list)  # tuned: scout-only settings
    pilot_seeds: list[int] = field(default_factory=list)  # tuned: size the confirm (never tested)
    pilot_ucb: float = PILOT_UCB  # one-sided confidence of the pilot SD's upper bound
    campaign: dict[str, Any] = field(default_factory=dict)  # minimums kind, cpu_hours (plan.py)
    vs_legacy: str = ""  # what differs from the superseded 150-step run (results/legacy/)
    path: Path | None = None

    def seed_split(self, smoke: bool) -> tuple[list[int], list[int]]:
        """(scout, confirm) seeds: the LR is picked on scout seeds, arms compared on confirm."""
        if self.protocol == "tuned":
            if smoke:
                return [0], [1]
            return list(self.scout_seeds), list(self.confirm_seeds)
        _, n_seeds, _ = self.settings(smoke)
        seeds = list(range(n_seeds))
        return (seeds[:1], seeds[1:]) if n_seeds > 1 else (seeds, seeds)

    def pilot_split(self, smoke: bool) -> list[int]:
        """The pilot seeds (none without ``pilot``): they size the confirm, never enter a test."""
        if not self.pilot_seeds:
            return []
        return list(SMOKE_PILOT) if smoke else list(self.pilot_seeds)

    def tuned_jobs(self, smoke: bool, picks: dict[str, float] | None, n_confirm: int | None):
        """Scout jobs (every grid LR, with ``scout_overrides``; on the last rung), pilot jobs
        at ``picks`` (last rung), then the first ``n_confirm`` confirm seeds at ``picks`` on
        every rung (the grid's first LR for validation when no pick exists yet)."""
        base, _, grid = self.settings(smoke)
        scout, confirm = self.seed_split(smoke)
        top = self.rungs(smoke)[-1]
        scout_over = [] if smoke else self.scout_overrides  # a smoke run keeps its own steps
        out = [
            (arm, merge(base, top, scout_over, over, [f"optim.lr={lr}"], [f"seed={seed}"]))
            for seed in scout
            for lr in grid
            for arm, over in self.arms.items()
        ]

        def at_pick(arm, over, rung, seed):
            lr = (picks or {}).get(arm, grid[0])
            return (arm, merge(base, rung, over, [f"optim.lr={lr}"], [f"seed={seed}"]))

        for seed in self.pilot_split(smoke):
            out += [at_pick(arm, over, top, seed) for arm, over in self.arms.items()]
        for seed in confirm[:n_confirm]:
            for rung in self.rungs(smoke):
                out += [at_pick(arm, over, rung, seed) for arm, over in self.arms.items()]
        return out

    def settings(self, smoke: bool) -> tuple[list[str], int, list[float] | None]:
        """(base overrides, number of seeds, LR grid) for the full or the smoke run."""
        if not smoke:
            return list(self.base), self.seeds, self.lr_grid
        s = self.smoke or {}
        grid = self.lr_grid
        if grid is not None:
            grid = s.get("lr_grid") or grid[:: max(1, len(grid) - 1)][:2]
        return merge(self.base, s.get("overrides") or []), int(s.get("seeds", 1)), grid

    def jobs(
        self, smoke: bool = False, picks=None, n_confirm: int | None = None
    ) -> list[tuple[str, list[str]]]:
        """``(arm, overrides)`` for every job, seed-major (arms interleaved, so load changes on a
        shared machine hit every arm alike and a partial run still has paired seeds). Under
        ``protocol: tuned``: ``n_confirm`` confirm seeds (None: every listed one)."""
        if self.protocol == "tuned":
            return self.tuned_jobs(smoke, picks, n_confirm)
        base, n_seeds, grid = self.settings(smoke)
        out = []
        for seed in range(n_seeds):
            for rung in self.rungs(smoke):
                for lr in grid or [None]:
                    for arm, arm_over in self.arms.items():
                        if not smoke and seed >= self.arm_seeds.get(arm, n_seeds):
                            continue
                        extra = [f"optim.lr={lr}"] if lr is not None else []
                        out.append((arm, merge(base, rung, arm_over, extra, [f"seed={seed}"])))
        return out

    def rungs(self, smoke: bool = False) -> list[list[str]]:
        """The ladder's rungs (each a list of overrides; one empty rung without a ladder).
        A smoke run uses ``smoke.ladder`` if given, else the first two rungs."""
        if not self.ladder:
            return [[]]
        if smoke:
            return [list(r) for r in (self.smoke or {}).get("ladder") or self.ladder[:2]]
        return self.ladder

    def rung_of(self, overrides: list[str], smoke: bool = False) -> int:
        """The index of the last rung whose overrides the job has; a job on no rung (a scout
        with its own settings) belongs to the last rung."""
        rungs = self.rungs(smoke)
        hits = [k for k, r in enumerate(rungs) if all(o in overrides for o in r)]
        return hits[-1] if hits else len(rungs) - 1

    @property
    def root(self) -> Path:
        """The folder relative paths in the claim (e.g. ``data.path``) are read from: the
        project root holding ``experiments/claims/<id>.yaml``, wherever the command runs."""
        if self.path is None:
            return Path.cwd()
        claims_dir = self.path.resolve().parent
        return claims_dir.parent.parent if claims_dir.parent.name == "experiments" else claims_dir

    def on_top_rung(self, overrides: list[str], smoke: bool = False) -> bool:
        """Whether a job belongs to the ladder's last rung (where the rule's checks are made)."""
        return self.rung_of(overrides, smoke) == len(self.rungs(smoke)) - 1

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


def _text(value: Any, path: Path, key: str) -> str:
    """An optional free-text field: a string (or nothing), whitespace-folded."""
    _need(value is None or isinstance(value, str), path, f"{key} must be text")
    return " ".join((value or "").split())


def _strs(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _seed_list(value: Any) -> bool:
    return isinstance(value, list) and value and all(isinstance(v, int) and v >= 0 for v in value)


def _protocol(data: dict, path: Path, grid) -> dict[str, Any]:
    """``protocol: tuned`` needs lr_grid and disjoint scout_seeds / confirm_seeds lists."""
    protocol = data.get("protocol", "grid")
    _need(protocol in PROTOCOLS, path, f"protocol must be one of {', '.join(PROTOCOLS)}")
    if protocol == "grid":
        tuned_only = ("scout_seeds", "confirm_seeds", "scout_overrides", "pilot")
        present = [k for k in tuned_only if k in data]
        _need(not present, path, f"{', '.join(present)} need protocol: tuned")
        return {}
    scout, confirm = data.get("scout_seeds"), data.get("confirm_seeds")
    _need(grid is not None, path, "protocol: tuned needs lr_grid")
    _need(_seed_list(scout) and _seed_list(confirm), path, "scout_seeds/confirm_seeds: int lists")
    _need(not set(scout) & set(confirm), path, "scout_seeds and confirm_seeds must not overlap")
    scout_over = data.get("scout_overrides") or []
    _need(_strs(scout_over), path, "scout_overrides must be a list of override strings")
    return {
        "protocol": protocol,
        "scout_seeds": scout,
        "confirm_seeds": confirm,
        "scout_overrides": list(scout_over),
        **_pilot(data.get("pilot"), path, set(scout) | set(confirm)),
    }


def _pilot(value: Any, path: Path, taken: set[int]) -> dict[str, Any]:
    """``pilot: {seeds: [7, 8, 9], ucb: 0.8}``: >= 2 seeds of their own (a paired SD needs 2)."""
    if value is None:
        return {}
    _need(isinstance(value, dict), path, "pilot must be a mapping {seeds: [..], ucb: 0.8}")
    unknown = sorted(set(value) - {"seeds", "ucb"})
    _need(not unknown, path, f"pilot: unknown keys {unknown} (seeds, ucb)")
    seeds, ucb = value.get("seeds"), value.get("ucb", PILOT_UCB)
    _need(_seed_list(seeds) and len(seeds) >= 2, path, "pilot.seeds: a list of >= 2 int seeds")
    _need(not set(seeds) & taken, path, "pilot.seeds must not overlap scout/confirm seeds")
    _need(
        isinstance(ucb, float) and 0.5 <= ucb < 1,
        path,
        "pilot.ucb: the upper bound's one-sided confidence, 0.5 <= ucb < 1 (e.g. 0.8)",
    )
    return {"pilot_seeds": list(seeds), "pilot_ucb": ucb}


def _campaign(value: Any, path: Path) -> dict[str, Any]:
    """``campaign: {minimums: stability|quality, cpu_hours: 8, exploratory: false}``."""
    value = value or {}
    _need(isinstance(value, dict), path, "campaign must be a mapping")
    unknown = sorted(set(value) - {"minimums", "cpu_hours", "exploratory"})
    _need(not unknown, path, f"campaign: unknown keys {unknown} (minimums, cpu_hours, exploratory)")
    hours = value.get("cpu_hours")
    _need(
        hours is None or (isinstance(hours, (int, float)) and hours > 0),
        path,
        "campaign.cpu_hours must be a positive number",
    )
    return dict(value)


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
        margin = str(check.get("margin", check.get("max_cost", "")))
        _need(
            not margin.endswith("std"),
            path,
            f"rule[{i}]: margin {margin!r} is in units of measured noise; give nats or x%",
        )
    protocol = _protocol(data, path, grid)
    ladder = data.get("ladder") or []
    _need(
        isinstance(ladder, list) and (not ladder or len(ladder) >= 2) and all(map(_strs, ladder)),
        path,
        "ladder must list >= 2 rungs, each a list of overrides (e.g. [[model/size=tiny], ...])",
    )
    _need(
        not (ladder and grid) or protocol.get("protocol") == "tuned",
        path,
        "a grid ladder runs at fixed LRs: drop lr_grid, or use protocol: tuned (rungs at the picks)",
    )

    unknown_b = [b for b in data.get("benchmark") or [] if b not in BENCHMARKS]
    _need(not unknown_b, path, f"unknown benchmark {unknown_b}; known: {', '.join(BENCHMARKS)}")
    smoke = data.get("smoke") or {}
    _need(isinstance(smoke, dict), path, "smoke must be a mapping")
    _need(_strs(smoke.get("overrides", [])), path, "smoke.overrides must be a list of strings")
    smoke_ladder = smoke.get("ladder") or []
    _need(
        not smoke_ladder or (ladder and len(smoke_ladder) >= 2 and all(map(_strs, smoke_ladder))),
        path,
        "smoke.ladder needs a ladder and lists >= 2 rungs of override strings",
    )
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
        **protocol,
        ladder=[list(r) for r in ladder],
        campaign=_campaign(data.get("campaign"), path),
        vs_legacy=_text(data.get("vs_legacy"), path, "vs_legacy"),
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
