"""The package layers, enforced: every import of every module (inside functions too) is read from its AST.

    base     conciser (the package: a version string), conciser.errors, conciser.plugins
                                                        may import nothing of ours
    rewards  conciser.rewards.*                         base only (the grader and every reward)
    core     conciser.config, conciser.toy, conciser.toy_scan, conciser.trainer_fields    base, rewards
    trainers conciser.trainers.*                        base, rewards, core -- never eval
    eval     conciser.eval.*                            base, rewards, core -- never trainers
    cli      every other conciser.* module              anything

and no import cycle between layers. Move code, not the rule: a trainer that needs an eval helper means
the helper belongs lower (core or rewards), or the caller belongs in the CLI layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# installed name -> source folder (pyproject's package-dir)
PACKAGES = {"conciser": REPO / "conciser", "conciser.rewards": REPO / "rewards", "conciser.trainers": REPO / "trainers",
            "conciser.eval": REPO / "eval"}
BASE = {"conciser", "conciser.errors", "conciser.plugins"}
CORE = {"conciser.config", "conciser.toy", "conciser.toy_scan", "conciser.trainer_fields"}
ALLOWED = {
    "base": set(),
    "rewards": {"base"},
    "core": {"base", "rewards"},
    "trainers": {"base", "rewards", "core"},
    "eval": {"base", "rewards", "core"},
    "cli": {"base", "rewards", "core", "trainers", "eval"},
}


def layer(module: str) -> str | None:
    """The layer of one of our modules (None for anything else)."""
    if module in BASE:
        return "base"
    if module in CORE:
        return "core"
    for pkg in ("rewards", "trainers", "eval"):
        if module == f"conciser.{pkg}" or module.startswith(f"conciser.{pkg}."):
            return pkg
    if module == "conciser" or module.startswith("conciser."):
        return "cli"
    return None


def modules() -> dict[str, Path]:
    """Every module of ours: installed name -> file (conciser/ holds only its own files, not the mapped ones)."""
    out = {}
    for name, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([name, *parts])] = path
    return out


def imports(module: str, path: Path) -> set[str]:
    """The modules `module` imports anywhere in its file (absolute names; `from x import y` may name a module y)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(mods: dict[str, Path]) -> list[str]:
    known = set(mods)
    bad = []
    for module, path in sorted(mods.items()):
        mine = layer(module)
        for target in sorted(imports(module, path)):
            if target not in known:
                continue  # an attribute (`from x import name`) or another project's module
            theirs = layer(target)
            if theirs != mine and theirs not in ALLOWED[mine]:
                where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                bad.append(f"{where}: {mine} module {module} imports {theirs} module {target}")
    return bad


def layer_cycles(mods: dict[str, Path]) -> list[list[str]]:
    edges: dict[str, set[str]] = {}
    for module, path in mods.items():
        for target in imports(module, path):
            if target in mods and layer(target) != layer(module):
                edges.setdefault(layer(module), set()).add(layer(target))
    cycles, seen = [], set()

    def walk(node, trail):
        for nxt in sorted(edges.get(node, ())):
            if nxt in trail:
                cycle = trail[trail.index(nxt):] + [nxt]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    cycles.append(cycle)
            else:
                walk(nxt, trail + [nxt])

    for start in sorted(edges):
        walk(start, [start])
    return cycles


def test_every_module_has_a_layer_and_the_scan_sees_them_all():
    mods = modules()
    assert {"conciser.cli", "conciser.rewards.grading", "conciser.trainers.grpo", "conciser.eval.run"} <= set(mods)
    assert all(layer(m) for m in mods)
    # the scan sees imports inside functions
    assert "conciser.trainers.toy_sft" in imports("conciser.toy_base_cli", mods["conciser.toy_base_cli"])


def test_no_module_imports_a_layer_it_must_not():
    bad = violations(modules())
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_no_import_cycle_between_layers():
    assert layer_cycles(modules()) == []


@pytest.mark.parametrize("source,expected", [
    ("def f():\n    from conciser.eval.run import evaluate\n", "trainers module conciser.trainers.fake imports eval"),
    ("from conciser.launch import maybe_relaunch\n", "trainers module conciser.trainers.fake imports cli"),
])
def test_a_forbidden_import_is_caught(tmp_path, source, expected):
    fake = tmp_path / "fake.py"
    fake.write_text(source)
    mods = {**modules(), "conciser.trainers.fake": fake}
    assert any(expected in v for v in violations(mods))


def test_a_cycle_between_layers_is_caught(tmp_path):
    fake = tmp_path / "fake.py"
    fake.write_text("import conciser.cli\n")  # a reward importing the CLI: rewards -> cli -> rewards
    mods = {**modules(), "conciser.rewards.fake": fake}
    assert any(set(c) >= {"rewards", "cli"} for c in layer_cycles(mods))
