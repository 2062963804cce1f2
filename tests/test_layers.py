"""The import rule: core <- retrieval <- {bot, training} <- csbot. Serving never carries the trainer.

Every import counts, also the ones inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "retrieval", "bot", "training", "csbot")
MAY_IMPORT = {
    "core": {"core"},
    "retrieval": {"core", "retrieval"},
    "bot": {"core", "retrieval", "bot"},
    "training": {"core", "retrieval", "training"},
    "csbot": set(PACKAGES),
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """Our top-level packages a module imports, with the line."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(name.split(".")[0], node.lineno) for name in names if name.split(".")[0] in PACKAGES}
    return found


def test_every_package_imports_only_the_layers_below_it():
    broken = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for target, line in sorted(imported_packages(path)):
                if target not in allowed:
                    broken.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert broken == []


def test_the_rule_checker_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from training.retrain import retrain\n    import bot.api\n")
    assert imported_packages(module) == {("training", 2), ("bot", 3)}


def test_the_serving_app_loads_without_the_trainer():
    code = "import sys, csbot.wiring, bot.api; print(sorted(m for m in sys.modules if m.split('.')[0] == 'training'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
