"""The architecture holds: dependencies point one way, and each outside library has
its one home (STYLE.md). Parsed with `ast`, so a new import that breaks a line fails here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "batcher"

# Lower layers never import higher ones (cli > app flow > engines > services > base).
LAYERS = [
    {"errors", "models", "crashpoints", "ports", "collector"},
    {"retry", "schema", "polling", "hosts"},
    {"client", "store", "download", "locks", "settings", "pacing", "outputs", "posters"}
    | {"connections"},
    {"scheduler", "lifecycle", "jobfile", "report", "emulator", "catalog"},
    {"session", "operations"},
    {"cli", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
# Within one layer these may import one another (a service built on a service).
SAME_LAYER_OK = {
    ("outputs", "store"),
    ("outputs", "download"),
    ("settings", "client"),
    ("scheduler", "lifecycle"),
    ("ports", "models"),
    ("operations", "session"),
    ("__main__", "cli"),
}

HOMES = {
    "click": {"cli"},
    "sqlite_utils": {"store"},
    "sqlite3": {"store"},
    "asyncio": set(),  # anyio only
    "uvicorn": {"emulator"},
    "httpx": {"client", "download", "session", "emulator", "connections"},
    "httpcore": {"connections"},
    "rich": {"cli"},
    "av": {"posters"},
}


def top_level_imports(path: Path) -> list[str]:
    """Imported module names, skipping `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                names.extend(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module == "batcher":  # from batcher import errors
                    names.extend(f"batcher.{a.name}" for a in child.names)
                else:
                    names.append(child.module)
            visit(child)

    visit(tree)
    return names


def unit_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT)


def test_every_module_has_a_layer() -> None:
    missing = {unit_of(p) for p in modules()} - set(RANK)
    assert not missing, f"add these to LAYERS: {missing}"


def test_dependencies_point_one_way() -> None:
    wrong = []
    for path in modules():
        me = unit_of(path)
        for name in top_level_imports(path):
            parts = name.split(".")
            if parts[0] != "batcher" or len(parts) < 2:
                continue
            other = parts[1]
            if other == me or other not in RANK:  # e.g. batcher.__version__
                continue
            if RANK[other] > RANK[me] or (
                RANK[other] == RANK[me] and (me, other) not in SAME_LAYER_OK
            ):
                wrong.append(f"{path.relative_to(ROOT.parent)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_outside_libraries_stay_in_their_homes() -> None:
    wrong = []
    for path in modules():
        me = unit_of(path)
        for name in top_level_imports(path):
            lib = name.split(".")[0]
            if lib in HOMES and me not in HOMES[lib]:
                wrong.append(f"{path.relative_to(ROOT.parent)} imports {lib}")
    assert not wrong, "\n".join(wrong)


def test_the_emulator_shares_only_the_schema_with_the_client_side() -> None:
    for path in (ROOT / "emulator").glob("*.py"):
        for name in top_level_imports(path):
            if name.startswith("batcher.") and not name.startswith("batcher.emulator"):
                assert name in ("batcher.schema", "batcher.errors"), f"{path.name}: {name}"
