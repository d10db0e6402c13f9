"""The code's shape: imports go down the layers of docs/architecture.md and never in a circle,
and no module reaches for another's underscore names."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "archlab"

# layer of each top-level part of archlab (docs/architecture.md); a module may import its own
# layer's modules only where the layer says so, and any lower layer
LAYERS = {
    "archlab.config": 0,
    "archlab.errors": 0,
    "archlab.numerics": 0,
    "archlab.startup": 0,
    "archlab.model": 1,
    "archlab.data": 1,
    "archlab.runs": 1,
    "archlab.validate": 2,
    "archlab.compose": 2,
    "archlab.train": 2,
    "archlab.claims": 2,
    "archlab.bench": 2,
    "archlab.microbench": 2,
    "archlab.generate": 2,
    "archlab.hf": 2,
    "archlab.cli": 3,
    "archlab.__main__": 3,
    "archlab": 3,
}
# layer 1's parts are independent of each other (model, data and runs import only config)
INDEPENDENT = {1}


def module_files() -> dict[str, Path]:
    mods = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _targets(node, module: str, is_pkg: bool, mods) -> set[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parent = module.split(".")[: len(module.split(".")) - node.level + is_pkg]
            base = ".".join(parent + ([node.module] if node.module else []))
        # `from pkg import sub`: the submodule if it is one, else the package itself
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
    out = set()
    for name in names:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        if name.startswith("archlab") and name != module:
            out.add(name)
    return out


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """module → the archlab modules it imports (at any depth: function-level imports count);
    and every ``from x import _private`` as (module, name, line)."""
    mods = module_files()
    graph, private = {}, []
    for module, path in mods.items():
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module] |= _targets(node, module, path.name == "__init__.py", mods)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("archlab"):
                private += [
                    (module, a.name, node.lineno)
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return graph, private


def part(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_every_module_has_a_layer():
    assert {part(m) for m in module_files()} <= set(LAYERS)


def test_imports_have_no_cycles():
    graph, _ = import_graph()
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_imports_go_down_the_layers():
    graph, _ = import_graph()
    wrong = []
    for module, targets in graph.items():
        here, mine = LAYERS[part(module)], part(module)
        for t in targets:
            there = LAYERS[part(t)]
            if there > here or (there == here in INDEPENDENT and part(t) != mine):
                wrong.append(f"{module} (layer {here}) imports {t} (layer {there})")
    assert not wrong, "\n".join(sorted(wrong))


def test_runs_reads_records_without_lightning():
    # compare and reproduce --report-only read run directories: the records layer never
    # imports Lightning (the metrics.jsonl logger lives in train.loggers)
    for name, path in module_files().items():
        if name.startswith("archlab.runs"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                    assert not any(n.split(".")[0] == "lightning" for n in names), name


def test_config_is_a_leaf():
    graph, _ = import_graph()
    assert graph["archlab.config"] == set()


def test_no_module_imports_another_modules_private_names():
    _, private = import_graph()
    assert not private, private


def test_the_checker_sees_cycles_and_private_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = ast.parse("def f():\n    from archlab.model import flops\n")
    node = tree.body[0].body[0]
    assert _targets(node, "archlab.cli", False, module_files()) == {"archlab.model.flops"}


# ------------------------------------------------------- options: YAML, registries, docs


REPO = SRC.parent


def yaml_options(knob: str) -> dict[str, str]:
    """conf/model/<knob>/<option>.yaml → the ``model.<knob>`` value that option selects."""
    import yaml

    out = {}
    for path in sorted((REPO / "conf" / "model" / knob).glob("*.yaml")):
        out[path.stem] = (yaml.safe_load(path.read_text()) or {})[knob]
    return out


def test_every_registry_entry_has_a_yaml_option_and_back():
    """An option cannot exist in a registry and not as a config group option, or the reverse:
    the values the YAML files select are exactly the registry's keys."""
    from archlab.validate import KNOBS

    for knob, registry in KNOBS.items():
        selected = set(yaml_options(knob).values())
        assert selected == set(registry), (knob, selected ^ set(registry))
    assert {p.name for p in (REPO / "conf" / "model").iterdir()} == {*KNOBS, "size", "arch"}


def test_every_option_carries_its_own_check():
    from archlab.config import ModelConfig
    from archlab.validate import CHECKED_KNOBS, KNOBS

    assert set(CHECKED_KNOBS) == set(KNOBS) - {"qk_norm"}  # qk_norm reuses NORMS (see validate)
    for knob in CHECKED_KNOBS:
        for option, entry in KNOBS[knob].items():
            assert callable(entry.check), (knob, option)
    KNOBS["norm"]["rmsnorm"].check(ModelConfig())  # the default passes its own rules


def test_docs_knob_table_lists_exactly_the_yaml_options():
    """docs/knobs.md's "Knob groups" table names every option of every group (and no other)."""
    import re

    from archlab.config import ModelConfig
    from archlab.validate import KNOBS

    rows = {}
    for line in (REPO / "docs" / "knobs.md").read_text().splitlines():
        m = re.match(r"\| `model/(\w+)`[^|]*\| ([^|]*) \| `?([\w.–-]+)`? \|", line)
        if m:
            rows[m.group(1)] = (set(re.findall(r"`(\w+)`", m.group(2))), m.group(3))
    for knob in KNOBS:
        named, module = rows[knob]
        options = set(yaml_options(knob))
        assert options <= named, (knob, options - named)
        assert named - options <= set(ModelConfig.__dataclass_fields__), (knob, named - options)
        assert (SRC / "archlab" / "model" / module).is_file(), (knob, module)
