"""The house's layers: a package imports only the packages below it (README, "Layout").

Read from the source with `ast`, every import counts, at module level or inside a function: a
lazy import is still an arrow. Third-party `discord` (discord.py) belongs to the Discord layer.
`indexes/` takes plain values, never the application's settings (`app/storage.py` makes them).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top; a package imports only packages of a lower rank (packages of one rank do not import each other).
LAYERS = [
    ["errors"],  # UserError, the base of every error a user can fix
    ["llm"],  # the model and its engines
    ["config", "prompts", "fakes"],  # settings and logging; prompt files and the persona; stand-ins for tests
    ["chains", "indexes"],  # the reply pipeline; the store, the index and retrieval
    ["training"],  # training data, recipes, the trainer
    ["app"],  # the Discord layer, the console, the command line, the composition root
    ["evals"],  # the bot's answers scored; adapters compared
    ["bench", "tests"],  # figures and checks of everything
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
DISCORD_LAYER = {"app", "bench", "tests"}  # where discord.py may be imported


def imports(path: Path) -> set[str]:
    """The top-level names of what a source file imports (absolute imports only: the house has no others)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def wrong_arrows(root: Path) -> list[str]:
    """Every import of a package of the same or a higher layer, and every discord.py import outside its layer."""
    wrong = []
    for package in RANK:
        for path in sorted((root / package).rglob("*.py")):
            for name in sorted(imports(path)):
                where = path.relative_to(root)
                if name in RANK and name != package and RANK[name] >= RANK[package]:
                    wrong.append(f"{where} imports {name} (layer {RANK[name]}, not below {package}'s {RANK[package]})")
                if name == "discord" and package not in DISCORD_LAYER:
                    wrong.append(f"{where} imports discord.py outside the Discord layer")
    return wrong


def settings_parameters(root: Path) -> list[str]:
    """Every function or method under indexes/ with a parameter named `settings`: indexes/ is told plain values."""
    found = []
    for path in sorted((root / "indexes").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = node.args
                names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
                names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
                if "settings" in names:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    return found


def test_every_package_has_a_layer():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == set(RANK), "a package missing from LAYERS (or a layer without its package)"


def test_no_package_imports_one_of_its_own_or_a_higher_layer():
    assert wrong_arrows(ROOT) == []


def test_an_arrow_pointing_up_is_caught(tmp_path):
    for package in RANK:
        (tmp_path / package).mkdir()
    (tmp_path / "llm" / "model.py").write_text("def load():\n    from config.settings import load_settings\n")
    (tmp_path / "indexes" / "backfill.py").write_text("import discord\nfrom chains.types import LoreItem\n")
    assert sorted(wrong_arrows(tmp_path)) == [
        "indexes/backfill.py imports chains (layer 3, not below indexes's 3)",
        "indexes/backfill.py imports discord.py outside the Discord layer",
        "llm/model.py imports config (layer 2, not below llm's 1)",
    ]


def test_indexes_take_plain_values_not_the_settings():
    assert settings_parameters(ROOT) == []


def test_a_settings_parameter_under_indexes_is_caught(tmp_path):
    (tmp_path / "indexes" / "exports").mkdir(parents=True)
    (tmp_path / "indexes" / "build.py").write_text(
        "def open_index(settings, store):\n    pass\n\n\n"
        "class Filters:\n    @classmethod\n    def from_settings(cls, settings, opted_out=()):\n        pass\n"
    )
    (tmp_path / "indexes" / "exports" / "read.py").write_text(
        "async def read(path, *, settings=None):\n    pass\n\n\ndef fine(place, chroma_settings):\n    pass\n"
    )
    assert settings_parameters(tmp_path) == [
        "indexes/build.py:1 open_index",
        "indexes/build.py:7 from_settings",
        "indexes/exports/read.py:1 read",
    ]
