"""The layers import one way, and every command honours exactly the flags it declares."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from cli import COMMANDS, command_parser
from cli.flags import config_from_args

ROOT = Path(__file__).resolve().parents[1]
# The floors, bottom to top. A module imports only from lower floors and its own folder; nothing imports the CLI
# except the launcher competition/__main__.py, which runs it by name (runpy) and is counted on the CLI's floor.
LAYER = {
    "competition": 0,  # contracts
    "data": 1,
    "features": 2,
    "models": 3,  # estimators
    "ensemble": 4,  # built on predictions
    "analysis": 4,
    "inference": 5,
    "stages": 6,  # every command's run(cfg)
    "cli": 7,
    "bench": 8,  # benchmarks use the stages and below, never the CLI
}
PACKAGES = tuple(LAYER)


def layer_of(module: str) -> tuple[str, int]:
    if module == "competition.__main__":
        return "cli", LAYER["cli"]
    top = module.split(".")[0]
    return top, LAYER[top]


def project_modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(p for p in parts if p != "__init__")] = path
    return out


def imports_of(path: Path) -> set[str]:
    """Every project module named by an import anywhere in the file (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def upward_imports() -> list[str]:
    wrong = []
    for module, path in project_modules().items():
        own_package, own_layer = layer_of(module)
        for target in imports_of(path):
            package, layer = layer_of(target)
            if layer > own_layer or (layer == own_layer and package != own_package):
                wrong.append(f"{module} imports {target}")
    return wrong


def test_no_module_imports_a_higher_layer_or_the_cli():
    assert upward_imports() == []


def test_benchmarks_use_the_stages_never_the_cli():
    wrong = [f"{m} imports {t}" for m, path in project_modules().items() if m.startswith("bench.") for t in imports_of(path)]
    assert [w for w in wrong if " imports cli" in w] == []


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """Strongly connected groups of more than one module (imports inside functions count too)."""
    import networkx as nx

    graph = nx.DiGraph()
    for module, path in modules.items():
        graph.add_node(module)
        for target in imports_of(path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != module:
                graph.add_edge(module, target)
    return [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]


def test_no_two_modules_import_each_other_even_inside_a_layer():
    assert import_cycles(project_modules()) == []


def test_the_cycle_check_catches_a_planted_circle():
    modules = project_modules()
    planted = ROOT / "analysis" / "_planted_cycle.py"
    planted.write_text("import analysis.p2l\n", encoding="utf-8")
    back = ROOT / "analysis" / "_planted_back.py"
    back.write_text("import analysis._planted_cycle\n", encoding="utf-8")
    try:
        modules |= {"analysis._planted_cycle": planted, "analysis._planted_back": back}
        planted.write_text("import analysis._planted_back\n", encoding="utf-8")
        assert ["analysis._planted_back", "analysis._planted_cycle"] in import_cycles(modules)
    finally:
        planted.unlink()
        back.unlink()


def test_the_import_check_catches_an_upward_import(tmp_path, monkeypatch):
    planted = ROOT / "features" / "_planted_upward_import.py"
    planted.write_text("from models.lgbm import LGBMPreference\n", encoding="utf-8")
    try:
        assert "features._planted_upward_import imports models.lgbm" in upward_imports()
    finally:
        planted.unlink()


def test_contracts_import_nothing_else_of_the_project():
    for module, path in project_modules().items():
        if layer_of(module)[1] == 0:
            assert all(t.startswith("competition.") and layer_of(t)[1] == 0 for t in imports_of(path)), module


def config_class(command: str):
    from cli.training import PRESETS
    from stages.training import training_config

    if COMMANDS[command][0] in ("cli.training", "cli.ablate"):
        return training_config(PRESETS.get(command, "lgbm"))
    paths = {
        "cli.blend": "ensemble.settings:BlendConfig",
        "cli.infer": "inference.config:InferenceConfig",
        "cli.leaderboard": {
            "leaderboard": "analysis.leaderboard.settings:LeaderboardConfig",
            "prompt-leaderboard": "analysis.leaderboard.settings:PromptLeaderboardConfig",
        },
        "cli.route": "analysis.routing.settings:RoutingConfig",
        "cli.dissect": "analysis.dissection.settings:DissectConfig",
        "cli.arena": "analysis.arena.settings:ArenaConfig",
        "cli.features": "stages.features:FeaturesConfig",
        "cli.submit": "stages.submit:SubmitConfig",
        "cli.bundle": "stages.bundle:BundleConfig",
        "cli.recipe": "stages.recipe_settings:RecipeConfig",
    }[COMMANDS[command][0]]
    path = paths[command] if isinstance(paths, dict) else paths
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def sample_value(flag):
    if flag.field == "family":  # the model family: a registered name
        return "transformer", ["transformer"]
    if flag.field == "judge.crowd":  # entries are MODEL=PATH
        return ("m1=x1", "m2=x2"), ["m1=x1", "m2=x2"]
    if flag.field.endswith("ray_address"):  # parsed when the config is read
        return "10.0.0.1:6379", ["10.0.0.1:6379"]
    if flag.action == "store_true":
        return True, []
    if flag.action == "append":  # repeatable: each use adds one value
        return ("x1",), ["x1"]
    if flag.choices:
        return flag.choices[-1], [flag.choices[-1]]
    if flag.type is int:
        return 16, ["16"]
    if flag.type is float:
        return 0.5, ["0.5"]
    if flag.nargs == "+":
        return ("x1", "x2"), ["x1", "x2"]
    return "some/where.csv", ["some/where.csv"]


def field_value(cfg, field: str):
    for part in field.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_declared_flag_sets_its_config_field(command):
    parser, module = command_parser(command)
    cls = config_class(command)
    for flag in module.FLAGS[command]:
        if flag.field is None:
            continue
        expected, argv = sample_value(flag)
        required = [f"{f.name}=x" for f in module.FLAGS[command] if f.required and f is not flag]
        base = ["--runs", "r1"] if command == "blend" and flag.name != "--runs" else []
        base += ["--engine", "ray"] if flag.field.endswith("ray_address") else []  # read only with that engine
        args = parser.parse_args([*required, *base, flag.name, *argv])
        value = field_value(config_from_args(cls, args, module.FLAGS[command]), flag.field)
        assert value == expected or (isinstance(value, tuple) and tuple(value) == tuple(expected)), (command, flag.name)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_lists_exactly_the_declared_flags(command):
    parser, module = command_parser(command)
    listed = {opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")} - {"--help"}
    assert listed == {flag.name for flag in module.FLAGS[command]}


@pytest.mark.parametrize(
    ("command", "flag"), [("fit", "--test"), ("predict", "--folds"), ("blend", "--folds"), ("infer", "--train")]
)
def test_a_flag_the_command_does_not_honour_is_an_error(command, flag, capsys):
    from cli import main

    required = ["--model", "m"] if command == "predict" else []
    assert main([command, *required, flag, "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments" in err
