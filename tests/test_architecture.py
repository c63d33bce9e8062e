"""The layers of the README's Design section, enforced rather than hoped for: the import-linter
contracts in pyproject.toml, no import circles, a standard-library-only prompt check, and
modules small enough to read."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "devsync"
MAX_MODULE_LINES = 700
MAX_TOP_LEVEL_MODULES = 8


def _imports(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_import_linter_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a test dependency"
    out = subprocess.run([exe], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_import_circles() -> None:
    import grimp

    graph = grimp.build_graph("devsync")
    modules = sorted(graph.modules)
    # Tarjan's strongly connected components over module-to-module imports
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in modules:
        if module not in index:
            visit(module)
    assert circles == []


def test_the_prompt_check_imports_only_the_standard_library() -> None:
    found = []
    for path in sorted((PACKAGE / "prompt").glob("*.py")):
        for line, name in _imports(path):
            top = name.split(".")[0]
            # (private accelerator modules such as _sha256 are the stdlib's own)
            if name.startswith("devsync.prompt") or top in sys.stdlib_module_names \
                    or name == "__future__" or top.startswith("_"):
                continue
            found.append(f"prompt/{path.name}:{line} imports {name}")
    assert found == []


def test_importing_the_whole_core_loads_no_textual() -> None:
    core = [p for p in PACKAGE.rglob("*.py")
            if p.relative_to(PACKAGE).parts[0] not in ("tui", "cli", "__main__.py")]
    names = sorted(".".join(("devsync", *p.relative_to(PACKAGE).with_suffix("").parts))
                   .removesuffix(".__init__") for p in core)
    code = (f"import sys, {', '.join(names)}; "
            "print(any(m.startswith('textual') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_small_enough_to_read(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


def test_few_modules_sit_directly_in_the_package() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_contract_ignores_an_import() -> None:
    """The layers hold without exceptions: no `ignore_imports` (the transitional ones of the
    layout step are gone; a new one would be a hole in a rule)."""
    import tomllib

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    assert [c["name"] for c in contracts if c.get("ignore_imports")] == []


def test_tests_share_helpers_through_tests_support_only() -> None:
    """A test module imports no other test module: what tests share lives in tests/support/
    (fixtures in a conftest.py), so moving or deleting one test never breaks another."""
    tests = PACKAGE.parent / "tests"
    found = []
    for path in sorted(tests.rglob("*.py")):
        if "support" in path.relative_to(tests).parts:
            continue
        for line, name in _imports(path):
            parts = name.split(".")
            if parts[0] == "tests" and "support" not in parts[1:2] and \
                    any(p.startswith(("test_", "bench_")) for p in parts[1:]):
                found.append(f"{path.relative_to(tests)}:{line}: {name}")
    assert found == []
