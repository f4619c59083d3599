"""The research scripts in research/ are the record behind docs/BENCHMARKS.md's tables: they must keep running.

They take minutes to hours, so they are not run here. What breaks them silently is the core moving
under them (a renamed function, a removed constant), so every script is imported and every name it
reads off a module (`common.CFG`, `R.train_zoo`, `np.mean`, ...) must exist. The scripts are run as
`python research/NN_name.py`, which puts research/ first on the path (so `import common` finds the shared
helpers); the check does the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "research").glob("[0-9][0-9]_*.py"))
HELPERS = [ROOT / "research" / "common.py"]  # what the scripts share: checked the same way, not a script itself

CHECK = r"""
import ast, importlib, json, sys, types
from pathlib import Path
sys.path.insert(0, sys.argv[1])
missing = []
for path in map(Path, sys.argv[2:]):
    module = importlib.import_module(path.stem)  # the scripts run main() only as __main__
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = getattr(module, node.value.id, None)
            if isinstance(owner, types.ModuleType) and not hasattr(owner, node.attr):
                missing.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
print(json.dumps(missing))
"""


def test_there_are_research_scripts_to_check():
    subjects = ("relatedness_", "unlearning_", "confirm_", "app_", "scale_")
    assert len(SCRIPTS) >= 8 and all(s.stem.partition("_")[2].startswith(subjects) for s in SCRIPTS)


def test_every_research_script_imports_and_reads_only_names_that_exist():
    result = subprocess.run([sys.executable, "-c", CHECK, str(ROOT / "research"), *map(str, [*SCRIPTS, *HELPERS])],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
