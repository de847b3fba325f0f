"""The layers of the code base, checked on the source.

The import-linter contracts in pyproject.toml (run by scripts/lint.sh) keep
the dependencies one way; these tests prove the contracts bite, and check
what a contract cannot: docker-py and label names only in the engine, no
import hidden inside a function.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("portal", "stacks", "backups", "retention", "gpu")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def app_modules():
    """Yield (path, parsed module) of every Python file of the apps."""
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            yield path, ast.parse(path.read_text(), filename=str(path))


def imported_names(tree):
    """Yield (node, top-level package name) of every import in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node, node.module.split(".")[0]


def in_engine(path):
    return path.is_relative_to(ROOT / "stacks" / "engine")


def test_docker_py_is_imported_only_by_the_engine_package():
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path, tree in app_modules()
        if not in_engine(path)
        for node, name in imported_names(tree)
        if name == "docker"
    ]
    assert offenders == []


def test_label_names_are_spelled_only_in_the_engine_labels_module():
    """Every module asks stacks.engine.labels for a label name."""
    spelled = (
        "portal.managed",
        "portal.environment",
        "portal.stack",
        "portal.service",
        "portal.data-type",
        "portal.helper",
        "com.docker.compose.",
    )
    offenders = []
    for path, tree in app_modules():
        if path == ROOT / "stacks" / "engine" / "labels.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.startswith(spelled):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


# Imports that belong inside a function: the static files handler, loaded
# only when serving them. An AppConfig's ready() imports what needs the apps
# loaded (Django's rule), so it is allowed too.
ALLOWED_LOCAL_IMPORTS = {
    ("portal/asgi.py", "django.contrib.staticfiles.handlers"),
}


def test_no_import_is_hidden_inside_a_function():
    """A function-level import is how a cycle is dodged; there are none."""
    offenders = []
    for path, tree in app_modules():
        relative = str(path.relative_to(ROOT))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if path.name == "apps.py" and function.name == "ready":
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    module = getattr(node, "module", None) or node.names[0].name
                    if (relative, module) not in ALLOWED_LOCAL_IMPORTS:
                        offenders.append(f"{relative}:{node.lineno} ({module})")
    assert offenders == []


@pytest.fixture
def tree_copy(tmp_path):
    """Return a copy of the apps and pyproject.toml to break on purpose."""
    for app in APPS:
        shutil.copytree(
            ROOT / app, tmp_path / app, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(folder):
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=folder,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(folder)},
        timeout=120,
    )


def test_import_contracts_hold_on_the_tree(tree_copy):
    done = lint_imports(tree_copy)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    "module, line, contract",
    [
        # The core reaching into a feature app.
        ("portal/permissions.py", "from stacks.models import Environment", "apps"),
        # A lower layer of stacks reaching up to the runners.
        ("stacks/models.py", "from stacks.jobs import lifecycle", "stacks"),
        # docker-py outside the engine.
        ("stacks/views.py", "import docker", "docker"),
        # The engine reaching up into the plan.
        ("stacks/engine/containers.py", "from stacks import compose", "stacks"),
        # GPU parsing reaching up to the pages.
        ("gpu/parsing.py", "from gpu import views", "gpu"),
        # The configuration rules reaching up to the credential check.
        ("stacks/schema/literals.py", "from stacks import credentials", "stacks"),
        # The registry other apps fill reaching up to the check.
        (
            "stacks/credentials/registry.py",
            "from stacks.credentials import check",
            "credentials",
        ),
        # A strategy (how data is read) reaching up to the restores.
        ("backups/strategies/base.py", "from backups import loaders", "restores"),
    ],
)
def test_import_contracts_fail_on_a_new_back_import(tree_copy, module, line, contract):
    path = tree_copy / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = lint_imports(tree_copy)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout
    name = module.removesuffix(".py").replace("/", ".")
    assert name in done.stdout, done.stdout[-3000:]
