"""The layers of ``src/ftwatch``, read from the imports (AST, nothing imported).

Data flows one way: source → plan → read → diff → stall → commit → dispatcher →
notifiers. A module may import its own layer and those below, never one above; the
adapter packages (sources, store, notifiers) do not import each other; the
simulators stand apart, and only ``app.demo`` imports them. The design page's "Layout"
section is drawn from :data:`LAYERS`: ``python tests/test_layers.py`` prints it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "ftwatch"
DESIGN = Path(__file__).resolve().parent.parent / "docs" / "design.md"

#: Bottom to top: (layer, what it holds, its modules or packages).
LAYERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "foundation",
        "errors and exit codes, the status vocabularies, the legacy rules, time, safe text, durations,"
        " secrets, rate limits, Standard Webhooks, serving ASGI on a socket",
        (
            "errors",
            "statuses",
            "compat",
            "clock",
            "textsafe",
            "duration",
            "retry_after",
            "ratelimit",
            "standard_webhooks",
            "secrets",
            "linewriter",
            "serving",
            "plugins",
            "_version",
            "__init__",
        ),
    ),
    (
        "data",
        "frozen data: events, transitions, cursors, model states, progress; the words they are told in"
        " and how each status looks",
        (
            "model",
            "state",
            "progress",
            "templates",
            "wording",
            "looks",
        ),
    ),
    (
        "pure",
        "decisions without I/O: what to read, what changed, stalls, the outbox's state machine",
        (
            "plan",
            "diff",
            "snapshot",
            "gone",
            "stall",
            "outbox",
            "cycle",
        ),
    ),
    (
        "adapters",
        "I/O behind protocols: the providers, the stores, the notifiers (none imports another)",
        (
            "sources",
            "store",
            "notifiers",
        ),
    ),
    (
        "engine",
        "one cycle of one source, all sources' lanes, delivery",
        ("reads", "poller", "pollers", "leadership", "dispatch"),
    ),
    ("ops", "health, metrics, endpoints, pushes, logs, sd_notify", ("ops",)),
    ("config", "the settings as data, their mistakes in ftwatch's words", ("settings", "config_errors")),
    ("app", "the composition root, the loop, the daemon and every command", ("app", "__main__")),
)
#: Beside the layers: imports the foundation and the data only, imported by app.demo only.
SIMULATORS = "sim"
ADAPTERS = ("sources", "store", "notifiers")


def module_name(path: Path) -> str:
    parts = [p for p in path.relative_to(ROOT).with_suffix("").parts if p != "__init__"]
    return ".".join(parts) or "__init__"


def layer_of(module: str) -> int | None:
    """The index of a module's layer (``None``: the simulators)."""
    head = module.split(".", maxsplit=1)[0]
    if head == SIMULATORS:
        return None
    for index, (_, _, members) in enumerate(LAYERS):
        if module in members or head in members:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(sub) for sub in ast.walk(node)}
    return skipped


def imports_of(path: Path) -> set[str]:
    """The ftwatch modules ``path`` imports at run time (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {
                f"{node.module}.{alias.name}" for alias in node.names if _is_module(f"{node.module}.{alias.name}")
            }
    return {name.removeprefix("ftwatch.") for name in found if name.startswith("ftwatch.")}


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sorted(ROOT.rglob("*.py"))}


def test_no_module_imports_a_higher_layer() -> None:
    wrong = []
    for module, imported in _graph().items():
        mine = layer_of(module)
        for name in sorted(imported):
            theirs = layer_of(name)
            if mine is not None and theirs is not None and theirs > mine:
                wrong.append(f"{module} ({LAYERS[mine][0]}) imports {name} ({LAYERS[theirs][0]})")
    assert wrong == []


def test_the_adapters_do_not_import_each_other() -> None:
    wrong = [
        f"{module} imports {name}"
        for module, imported in _graph().items()
        for name in sorted(imported)
        if module.split(".")[0] in ADAPTERS
        and name.split(".")[0] in ADAPTERS
        and name.split(".")[0] != module.split(".")[0]
    ]
    assert wrong == []


def test_the_simulators_stand_apart() -> None:
    """They use only the foundation and the data; only app.demo imports them."""
    graph = _graph()
    allowed = {index for index, (name, _, _) in enumerate(LAYERS) if name in ("foundation", "data")}
    wrong = []
    for module, imported in graph.items():
        for name in sorted(imported):
            if module.split(".")[0] == SIMULATORS:
                if layer_of(name) is not None and layer_of(name) not in allowed:
                    wrong.append(f"{module} imports {name}")
            elif name.split(".")[0] == SIMULATORS and module != "app.demo":
                wrong.append(f"{module} imports {name}")
    assert wrong == []


def test_a_module_above_its_layer_is_caught() -> None:
    """The check itself: a pure module importing the store would be reported."""
    assert layer_of("store.sqlite") > layer_of("diff")  # type: ignore[operator]
    assert layer_of("sim.cohere") is None
    assert layer_of("app.wiring") == len(LAYERS) - 1


def render() -> str:
    """The design page's table of layers, top first."""
    rows = ["| layer | what | modules |", "|---|---|---|"]
    for name, what, members in reversed(LAYERS):
        shown = ", ".join(f"`{m}/`" if (ROOT / m).is_dir() else f"`{m}`" for m in members if not m.startswith("_"))
        rows.append(f"| {name} | {what} | {shown} |")
    rows.append(f"| (beside) | the simulated APIs: only `app.demo` imports them | `{SIMULATORS}/` |")
    return "\n".join(rows)


def test_the_readme_draws_its_layout_from_the_layers() -> None:
    text = DESIGN.read_text()
    start, end = "<!-- layers:start -->\n", "\n<!-- layers:end -->"
    assert start in text, "docs/design.md: mark the layers table with <!-- layers:start -->"
    assert end in text, "docs/design.md: mark the layers table's end with <!-- layers:end -->"
    drawn = text.split(start, 1)[1].split(end, 1)[0]
    assert drawn == render(), "docs/design.md's layers table is stale: python tests/test_layers.py prints it"


if __name__ == "__main__":
    sys.stdout.write(render() + "\n")
