"""The package's shape, read from its source with ``ast``: no import cycle between collab's
modules, each layer imports only what its rule allows (a second check beside ruff's banned
imports in ``pyproject.toml`` and ``collab/*/ruff.toml``, which must say the same), every
module has a docstring and stays under 500 lines, and every module has a test module.

The layers, bottom up: the top-level leaves (``collab/errors.py``, ``config.py``,
``auth.py``, ...), ``sync`` (pure), ``history`` (pure but ``service.py``), ``store`` (the
only SQL), ``relay`` (I/O), ``http`` (I/O; only ``app.py`` imports a route module), ``tools``
(only ``tools/serve.py`` imports ``collab.http.app``).
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _pytest.mark.structures import ParameterSet

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "collab"
TESTS = ROOT / "tests"
MAX_LINES = 500

_IO = ("asyncio", "aiohttp", "sqlalchemy", "redis")
_SUBPACKAGES = ("sync", "history", "store", "relay", "http", "tools")


# -- reading a package ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Module:
    """One module of a package: ``name`` is dotted (``collab.sync.room``)."""

    name: str
    path: Path

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def modules(package: Path) -> dict[str, Module]:
    """Every module under ``package`` (a directory with ``__init__.py``), by dotted name."""
    found: dict[str, Module] = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = Module(".".join(parts), path)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, at any depth (functions, ``try``, ...), except
    in the body of an ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.orelse:
                yield from _import_nodes(ast.Module(body=[statement], type_ignores=[]))
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        yield from _import_nodes(child)


def imported_names(module: Module) -> set[str]:
    """The dotted names ``module`` imports: ``import a.b`` gives ``a.b``; ``from a import b``
    gives ``a`` and ``a.b`` (``b`` may be a submodule); relative imports are resolved."""
    tree = ast.parse(module.path.read_text(), str(module.path))
    names: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            package = module.name.split(".")
            if not module.is_package:
                package = package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([base] if base else [])])
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def import_graph(package: Path) -> dict[str, set[str]]:
    """The import edges between the modules of ``package``: each import points at the
    longest module name it starts with (``from collab.history import compaction`` at
    ``collab.history.compaction``, ``from collab.store import Store`` at ``collab.store``)."""
    found = modules(package)
    graph: dict[str, set[str]] = {}
    for name, module in found.items():
        edges = set()
        for imported in imported_names(module):
            target = _longest_module(imported, found)
            if target is not None and target != name:
                edges.add(target)
        # ``from collab.store import Store`` also yields ``collab.store.Store``, which resolves
        # to collab.store; keep only the most specific targets of each import.
        graph[name] = edges
    return graph


def _longest_module(name: str, found: dict[str, Module]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in found:
            return candidate
    return None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None if the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


# -- the layer rules ------------------------------------------------------------------------


def route_modules(package: Path) -> set[str]:
    """The modules of ``<package>.http`` that register routes (``app.router.add_*``) or
    declare them (a module-level ``ROUTES`` table, which the app factory registers)."""
    routes = set()
    for name, module in modules(package).items():
        if not name.startswith(f"{package.name}.http.") or name.endswith(".app"):
            continue
        for node in ast.walk(ast.parse(module.path.read_text())):
            if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "ROUTES" for target in node.targets
            ):
                routes.add(name)
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("add_")
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "router"
            ):
                routes.add(name)
    return routes


@dataclass(frozen=True, slots=True)
class Rule:
    """What one module may not import: ``banned`` names and everything under them, except
    the ``allowed`` ones."""

    layer: str
    banned: frozenset[str]
    allowed: frozenset[str] = frozenset()

    def violations(self, imported: set[str]) -> list[str]:
        return sorted(
            name
            for name in imported
            if any(_under(name, ban) for ban in self.banned)
            and not any(_under(name, ok) for ok in self.allowed)
        )


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _collab(*subpackages: str) -> set[str]:
    return {f"collab.{sub}" for sub in subpackages}


def rule_for(name: str, routes: set[str]) -> Rule | None:
    """The layer rule of collab module ``name`` (``routes``: the route modules), or None for
    ``collab.__main__`` (the entry point, which imports the CLI)."""
    parts = name.split(".")
    if name == "collab.__main__":
        return None
    if len(parts) == 1 or parts[1] not in _SUBPACKAGES:
        return Rule("leaf", frozenset({*_IO, *_collab(*_SUBPACKAGES)}))
    layer = parts[1]
    if layer == "sync":
        return Rule(
            layer, frozenset({*_IO, *_collab("history", "store", "relay", "http", "tools")})
        )
    if layer == "history":
        if name == "collab.history.service":
            banned = {"aiohttp", "sqlalchemy", "redis", *_collab("relay", "http", "tools")}
            return Rule("history.service", frozenset(banned))
        return Rule(layer, frozenset({*_IO, *_collab("store", "relay", "http", "tools")}))
    if layer == "store":
        banned = {"aiohttp", "redis", *_collab("sync", "history", "relay", "http", "tools")}
        return Rule(layer, frozenset(banned))
    if layer == "relay":
        return Rule(layer, frozenset({"sqlalchemy", *_collab("http", "tools")}))
    if layer == "http":
        banned = {"sqlalchemy", "collab.tools", "collab.http.app"}
        if name != "collab.http.app":
            banned |= routes
        return Rule(layer, frozenset(banned))
    if name == "collab.tools.serve":
        return Rule("tools.serve", frozenset({"collab.http"}), frozenset({"collab.http.app"}))
    return Rule(layer, frozenset({"collab.http"}))


# Known violations, each with what fixes it (and the ruff.toml line that exempts the same
# file): none now.
_KNOWN_VIOLATIONS: dict[str, str] = {}

_MODULES = modules(PACKAGE)
_ROUTES = route_modules(PACKAGE)


def _marked(names: Iterable[str], known: dict[str, str]) -> list[ParameterSet]:
    """``names`` as parameters, the ``known`` ones marked xfail with their reason."""
    return [
        pytest.param(name, marks=[pytest.mark.xfail(strict=False, reason=known[name])])
        if name in known
        else pytest.param(name)
        for name in names
    ]


# -- the checks, on collab ------------------------------------------------------------------


def test_collab_has_no_import_cycle() -> None:
    """No chain of imports between collab's modules leads back to where it started."""
    assert find_cycle(import_graph(PACKAGE)) is None


@pytest.mark.parametrize(
    "name", _marked([n for n in sorted(_MODULES) if rule_for(n, _ROUTES)], _KNOWN_VIOLATIONS)
)
def test_module_imports_only_what_its_layer_allows(name: str) -> None:
    """Each collab module (but the entry point) imports nothing its layer's rule bans."""
    rule = rule_for(name, _ROUTES)
    assert rule is not None
    assert rule.violations(imported_names(_MODULES[name])) == [], rule.layer


def test_route_modules_are_found() -> None:
    """The route-module detector finds the HTTP layer's route modules, not its leaves."""
    assert {"collab.http.websocket", "collab.http.health"} <= _ROUTES
    assert "collab.http.state" not in _ROUTES


def _ruff_bans(config: Path) -> set[str]:
    data = tomllib.loads(config.read_text())
    if config.name == "pyproject.toml":
        data = data["tool"]["ruff"]
    return set(data["lint"]["flake8-tidy-imports"]["banned-api"])


@pytest.mark.parametrize(
    ("config", "example"),
    [
        ("pyproject.toml", "collab.errors"),
        ("collab/sync/ruff.toml", "collab.sync.room"),
        ("collab/history/ruff.toml", "collab.history.replay"),
        ("collab/store/ruff.toml", "collab.store.core"),
        ("collab/relay/ruff.toml", "collab.relay.hub"),
        ("collab/http/ruff.toml", "collab.http.state"),
        ("collab/tools/ruff.toml", "collab.tools.dump"),
    ],
)
def test_ruff_bans_what_the_layer_rule_bans(config: str, example: str) -> None:
    """Ruff's banned imports for a layer are exactly that layer's rule here, so a route
    module added to collab.http is banned in ruff as soon as it registers a route."""
    rule = rule_for(example, _ROUTES)
    assert rule is not None
    assert _ruff_bans(ROOT / config) == set(rule.banned)


@pytest.mark.parametrize("name", [n for n, m in sorted(_MODULES.items()) if m.is_package])
def test_package_has_a_docstring(name: str) -> None:
    """Each (sub)package's ``__init__`` says what the package owns."""
    assert ast.get_docstring(ast.parse(_MODULES[name].path.read_text()))


_NO_DOCSTRING: dict[str, str] = {}  # known offenders, each marked xfail with its reason


@pytest.mark.parametrize("name", _marked(sorted(_MODULES), _NO_DOCSTRING))
def test_module_has_a_docstring(name: str) -> None:
    """Each module starts with a docstring saying what it owns."""
    assert ast.get_docstring(ast.parse(_MODULES[name].path.read_text()))


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


# Modules others are splitting (issue 11); each fails below until it is under the limit.
_LONG: dict[str, str] = {}  # known offenders, each marked xfail with its reason


@pytest.mark.parametrize("name", _marked(sorted(_MODULES), _LONG))
def test_module_is_under_500_lines(name: str) -> None:
    """No module grows past 500 lines: split it by concept instead."""
    assert _lines(_MODULES[name].path) <= MAX_LINES


# -- tests mirror the package ---------------------------------------------------------------

# Modules tested somewhere other than tests/<layer>/test_<module>.py, and where.
TEST_MODULE_OF = {
    "collab.http.models": "tests/http/test_body.py",  # every body route, parsed by its model
    # Fan-out and the hub's reads run through the hub; their tests go through it too.
    "collab.relay.persistence": "tests/http/test_websocket_errors.py",  # quarantined rows
    "collab.relay.session": "tests/http/test_hocuspocus.py",  # a session needs its endpoint
    "collab.__main__": "tests/tools/test_dump.py",  # runs `python -m collab dump | load`
    "collab.errors": "tests/http/test_websocket_errors.py",  # each error's close code, end to end
    "collab.history.service": "tests/http/test_history.py",  # the History behind /history
    "collab.http.app": "tests/http/test_websocket.py",  # every server test builds the app
    "collab.store.core": "tests/store/test_store.py",
    "collab.store.documents": "tests/store/test_store_lifecycle.py",
    "collab.store.dump": "tests/tools/test_dump.py",
    "collab.store.history": "tests/store/test_store.py",
    "collab.store.models": "tests/store/test_migrations.py",  # and `alembic check`
}


def _tests_of(name: str) -> Path:
    """Where collab module ``name``'s tests live."""
    if name in TEST_MODULE_OF:
        return ROOT / TEST_MODULE_OF[name]
    parts = name.split(".")[1:]
    return TESTS.joinpath(*parts[:-1], f"test_{parts[-1]}.py")


@pytest.mark.parametrize("name", sorted(TEST_MODULE_OF))
def test_a_test_module_mapping_is_needed(name: str) -> None:
    """A TEST_MODULE_OF entry names a module that exists and has no test module by
    convention: once tests/<layer>/test_<module>.py exists, the entry is stale."""
    assert name in _MODULES, f"{name} is not a collab module"
    parts = name.split(".")[1:]
    conventional = TESTS.joinpath(*parts[:-1], f"test_{parts[-1]}.py")
    assert not conventional.is_file(), conventional.relative_to(ROOT)


_UNTESTED: dict[str, str] = {}  # known offenders, each marked xfail with its reason


@pytest.mark.parametrize(
    "name",
    _marked([n for n, m in sorted(_MODULES.items()) if not m.is_package], _UNTESTED),
)
def test_module_has_a_test_module(name: str) -> None:
    """Each module has a test module of its own: tests/<layer>/test_<module>.py by
    convention, else the one TEST_MODULE_OF names."""
    assert _tests_of(name).is_file(), _tests_of(name).relative_to(ROOT)


# -- each check can fail --------------------------------------------------------------------


def _package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_a_cycle_is_found_and_listed(tmp_path: Path) -> None:
    """Three modules importing each other in a ring are reported as that ring."""
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg import b\n",
            "b.py": "import pkg.c\n",
            "c.py": "def f():\n    from pkg.a import x\n",
        },
    )
    assert find_cycle(import_graph(package)) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_a_type_checking_import_makes_no_cycle(tmp_path: Path) -> None:
    """An import under ``if TYPE_CHECKING:`` is not an edge; one in its ``else`` is."""
    ring = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import x\n"
    package = _package(
        tmp_path, {"__init__.py": "", "a.py": "from pkg.b import y\n", "b.py": ring}
    )
    assert find_cycle(import_graph(package)) is None
    (package / "b.py").write_text(ring + "else:\n    from pkg import a\n")
    assert find_cycle(import_graph(package)) == ["pkg.a", "pkg.b", "pkg.a"]


def test_relative_imports_are_edges(tmp_path: Path) -> None:
    """``from . import x`` and ``from ..y import z`` point at the modules they name."""
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "sub/__init__.py": "from . import x\n",
            "sub/x.py": "from ..y import z\n",
            "y.py": "",
        },
    )
    assert import_graph(package) == {
        "pkg": set(),
        "pkg.sub": {"pkg.sub.x"},
        "pkg.sub.x": {"pkg.y"},
        "pkg.y": set(),
    }


def test_a_layer_violation_is_listed(tmp_path: Path) -> None:
    """A pure module importing asyncio and the store, at module or function level, breaks
    its rule with both names; the same imports under TYPE_CHECKING do not."""
    path = tmp_path / "room.py"
    path.write_text("import asyncio\n\ndef f():\n    from collab.store.core import Store\n")
    rule = rule_for("collab.sync.room", set())
    assert rule is not None
    imported = imported_names(Module("collab.sync.room", path))
    assert rule.violations(imported) == ["asyncio", "collab.store.core", "collab.store.core.Store"]
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncio\n")
    assert rule.violations(imported_names(Module("collab.sync.room", path))) == []


def test_only_the_app_may_import_a_route_module() -> None:
    """A route module imported by another HTTP module breaks its rule; by app.py it does
    not; the CLI may import the app factory but no other HTTP module."""
    routes = {"collab.http.health"}
    documents = rule_for("collab.http.documents", routes)
    app = rule_for("collab.http.app", routes)
    cli = rule_for("collab.tools.serve", routes)
    assert documents is not None and app is not None and cli is not None
    assert documents.violations({"collab.http.health"}) == ["collab.http.health"]
    assert app.violations({"collab.http.health"}) == []
    assert cli.violations({"collab.http.app", "collab.http.state"}) == ["collab.http.state"]


def test_a_route_module_is_found_by_its_router_calls(tmp_path: Path) -> None:
    """A new HTTP module that adds routes is a route module without being listed anywhere."""
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "http/__init__.py": "",
            "http/state.py": "HUB = 1\n",
            "http/widgets.py": "def routes(app):\n    app.router.add_get('/w', None)\n",
        },
    )
    assert route_modules(package) == {"pkg.http.widgets"}


def test_a_missing_docstring_and_a_long_module_are_seen(tmp_path: Path) -> None:
    """The docstring and length checks see a module without a docstring and one too long."""
    path = tmp_path / "long.py"
    path.write_text("x = 1\n" * (MAX_LINES + 1))
    assert ast.get_docstring(ast.parse(path.read_text())) is None
    assert _lines(path) > MAX_LINES
