"""The core stays free of the UI, and the views stay thin: enforced, not hoped for."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "devsync"
VIEWS = {"cli", "basecli", "__main__"}  # the CLI may open the TUI


def _core_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.glob("*.py")) if p.stem not in VIEWS]


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: p.stem)
def test_core_module_never_imports_textual(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert not name.startswith(("textual", "devsync.tui")), \
                f"{path.name}:{node.lineno} imports {name}"


def test_importing_the_whole_core_loads_no_textual() -> None:
    mods = ", ".join(f"devsync.{p.stem}" for p in _core_modules())
    code = f"import sys, {mods}; print(any(m.startswith('textual') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_import_linter_contract_holds() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a test dependency"
    out = subprocess.run([exe], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
