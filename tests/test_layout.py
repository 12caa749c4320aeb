"""The library's shape: layers that import only downwards and never in a circle, short modules and functions,
importing without side effects, every tuned setting in one table, cache keys derived from constructors."""
from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from grlib.core.checkpoints import settings_key
from grlib.models.diffusion import Diffusion
from grlib.models.gan import WGANGP
from grlib.models.unet import UNet
from grlib.continual import recipes
from grlib.continual.tuned import TUNED

PACKAGE = Path(__file__).resolve().parent.parent / "grlib"
LAYERS = ["core", "models", "continual", "course"]  # each imports only from those before it


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def runtime_nodes(node: ast.AST):
    """Every node below `node` but those under `if TYPE_CHECKING:` (imports for type hints only)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
            continue
        yield child
        yield from runtime_nodes(child)


def imports(path: Path) -> set[str]:
    """The grlib modules `path` imports when it runs (a name imported from a package counts as its module if it is
    one)."""
    found = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("grlib"):
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("grlib")}
    return found - {module_name(path)}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_layers_import_only_downwards():
    upward = [f"{m} imports {o}" for m, p in MODULES.items() for o in imports(p)
              if layer(m) is not None and layer(o) is not None and layer(o) > layer(m)]
    assert not upward, upward


def test_no_import_cycle():
    graph = {m: {o for o in imports(p) if o in MODULES} for m, p in MODULES.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for o in graph[m]:
            if state.get(o) == 1:
                cycles.append(path[path.index(o):] + [m, o] if o in path else [m, o])
            elif o not in state:
                visit(o, path + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
    assert not cycles, cycles


def test_modules_and_functions_are_short():
    long_modules = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 300}
    long_functions = {f"{m}.{node.name}": node.end_lineno - node.lineno + 1 for m, p in MODULES.items()
                      for node in ast.walk(ast.parse(p.read_text()))
                      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.end_lineno - node.lineno + 1 > 60}
    assert not long_modules and not long_functions, (long_modules, long_functions)


def test_importing_grlib_changes_nothing():
    """Environment, torch's threads and the temporary directory are as they were after importing every module (the
    libraries grlib uses are imported first: torchvision sets a variable of torch's own)."""
    script = """
import importlib, json, os, tempfile, torch, torchvision, matplotlib.pyplot, tqdm.auto
before = (dict(os.environ), torch.get_num_threads(), sorted(os.listdir(tempfile.gettempdir())))
for name in json.loads(os.environ["MODULES"]):
    importlib.import_module(name)
after = (dict(os.environ), torch.get_num_threads(), sorted(os.listdir(tempfile.gettempdir())))
print(json.dumps([before[0] == after[0], before[1] == after[1], sorted(set(after[2]) - set(before[2]))]))
"""
    modules = [m for m in MODULES if not m.endswith("__main__")]
    env_vars = {"MODULES": json.dumps(modules), "PATH": "/usr/bin:/bin", "GRLIB_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env_vars, capture_output=True, text=True, check=True)
    same_env, same_threads, new_files = json.loads(out.stdout.splitlines()[-1])
    assert same_env and same_threads and not [f for f in new_files if "grlib" in f], out.stdout


def test_recipes_hold_no_tuned_literal():
    """Every number or flag a recipe builds with comes from the profile or from `TUNED` (zero, "off", aside)."""
    assert set(TUNED) == set(recipes.METHODS)
    for name, method in recipes.METHODS.items():
        source = inspect.getsource(method.make)
        tree = ast.parse(source)
        fn = tree.body[0]
        defaults = fn.args.defaults + [d for d in fn.args.kw_defaults if d is not None]
        assert not defaults, f"{name}'s recipe has default settings; put them in grlib.continual.tuned.TUNED"
        body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) else fn.body  # past the docstring
        literals = [n.value for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Constant)
                    and isinstance(n.value, (bool, int, float)) and n.value != 0]
        assert not literals, f"{name}'s recipe holds {literals}; put them in grlib.continual.tuned.TUNED"


CHANGED = {  # a second value for every constructor argument
    WGANGP: {"image_shape": (3, 32, 32), "z_dim": 32, "width": 16, "lr": 1e-4, "betas": (0.0, 0.9),
             "critic_steps": 2, "gp_weight": 5.0, "seed": 1, "n_classes": 10, "alignment": 1e-3, "auxiliary": 1.0,
             "class_norm": True, "ema_decay": 0.9, "critic_lr": 4e-4, "gp_every": 4,
             "share_fakes": True},
    Diffusion: {"model": UNet(ch=8), "T": 100, "schedule": "cosine", "prediction": "x0", "lr": 1e-4,
                "ema_decay": 0.9, "min_snr_gamma": 5.0},
    UNet: {"image_shape": (3, 32, 32), "ch": 8, "n_classes": 10, "seed": 1, "patch": 2},
}
NEEDS = {"alignment": {"n_classes": 10}, "auxiliary": {"n_classes": 10}, "class_norm": {"n_classes": 10}}
BASE = {Diffusion: {"model": UNet()}}


@pytest.mark.parametrize("cls", list(CHANGED), ids=lambda c: c.__name__)
def test_every_constructor_argument_changes_the_cache_key(cls):
    arguments = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "device")]
    assert sorted(CHANGED[cls]) == sorted(arguments), "give the new argument a second value here"
    base = {**BASE.get(cls, {})}
    for name, value in CHANGED[cls].items():
        needs = {} if cls is not WGANGP else NEEDS.get(name, {})
        a, b = cls(**base, **needs), cls(**{**base, **needs, name: value})
        assert settings_key(a.settings) != settings_key(b.settings), name
