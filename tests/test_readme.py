"""README.md tells the truth: its Python code runs, its shell lines are the package's commands,
and the Python version it states is pyproject.toml's, which the dependencies need and the
running interpreter has."""

import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
PYPROJECT = ROOT / "pyproject.toml"

# The oldest Python each dependency's oldest allowed release installs on, from its
# Requires-Python on PyPI (checked by `pip install --dry-run --no-deps NAME==FLOOR` under each
# Python; (3, 8) means "3.8 or older", not checked further).  scipy 1.14, the first with
# COBYQA, is the one that rules out 3.9.
DEPENDENCY_MIN_PYTHON = {
    "numpy": {"1.23": (3, 8)},
    "scipy": {"1.14": (3, 10)},
    "pandas": {"1.5": (3, 8)},
    "formulaic": {"1.0": (3, 8)},
    "statsmodels": {"0.14": (3, 8)},
    "pytest": {"8.1": (3, 8)},  # 8.0 still ran a module-level setup() as a nose fixture
    "hypothesis": {"6": (3, 8)},
    "scikit-learn": {"1.6": (3, 9)},
    "matplotlib": {"3.6": (3, 8)},
    "threadpoolctl": {"3": (3, 6)},
    "ruff": {"0.6": (3, 7)},
    "polars": {"1.0": (3, 8)},
    "pyarrow": {"14": (3, 8)},
    "mkdocs": {"1.6": (3, 8)},
    "mkdocs-material": {"9.5": (3, 8)},
    "mkdocstrings": {"0.26": (3, 8)},
    "dask": {"2025.1": (3, 10)},
    "distributed": {"2025.1": (3, 10)},
    "mypy": {"1.10": (3, 8)},
}


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def _pyproject():
    """pyproject.toml's [project] table: by tomllib, or on Python 3.10 (no tomllib) the four
    fields this file needs, read from their lines."""
    text = PYPROJECT.read_text()
    try:
        import tomllib
    except ImportError:
        return _project_fields(text)
    return tomllib.loads(text)["project"]


def _project_fields(text):
    def table(name):
        return re.search(rf"^\[{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", text, flags=re.M | re.S).group(1)

    def arrays(body):
        return {
            key: re.findall(r'"([^"]+)"', items)
            for key, items in re.findall(r"^([\w-]+)\s*=\s*\[(.*?)\]", body, flags=re.M | re.S)
        }

    project = table("project")
    return {
        "requires-python": re.search(r'^requires-python\s*=\s*"([^"]+)"', project, flags=re.M).group(1),
        "dependencies": arrays(project)["dependencies"],
        "optional-dependencies": arrays(table("project.optional-dependencies")),
        "scripts": dict(re.findall(r'^([\w-]+)\s*=\s*"([^"]+)"', table("project.scripts"), flags=re.M)),
    }


def _minimum(requires_python):
    found = re.fullmatch(r">=\s*(\d+)\.(\d+)", requires_python.strip())
    assert found, f"requires-python should be a plain lower bound, not {requires_python!r}"
    return int(found.group(1)), int(found.group(2))


def test_stated_python_is_what_the_dependencies_need_and_what_runs_here():
    project = _pyproject()
    minimum = _minimum(project["requires-python"])
    pins = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pins += extra
    needed = (3, 0)
    for pin in pins:
        name, floor = re.fullmatch(
            r"([A-Za-z0-9_.-]+)(?:\[[\w,]+\])?\s*>=\s*([0-9.]+)", pin.split(";")[0].strip()
        ).groups()
        assert floor in DEPENDENCY_MIN_PYTHON.get(name, {}), (
            f"{name}>={floor}: record the oldest Python that {name} {floor} installs on (its "
            f"Requires-Python) in DEPENDENCY_MIN_PYTHON, so requires-python can be checked"
        )
        needed = max(needed, DEPENDENCY_MIN_PYTHON[name][floor])
    assert minimum == needed, f"requires-python says {minimum}, the dependencies need {needed}"
    stated = re.findall(r"Python >= (\d+)\.(\d+)", README.read_text())
    assert stated, "README.md does not say which Python it needs"
    assert {(int(a), int(b)) for a, b in stated} == {minimum}
    assert sys.version_info[:2] >= minimum


def test_python_blocks_run_in_order(monkeypatch):
    """Every ```python block of README.md, in one namespace, as a reader would paste them."""
    pytest.importorskip("sklearn")
    pytest.importorskip("dask.dataframe")  # "Data larger than memory"
    monkeypatch.setenv("MPLBACKEND", "Agg")
    blocks = _blocks("python")
    assert len(blocks) >= 2
    namespace = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md, python block {i + 1}", "exec"), namespace)


def _commands():
    """The README's shell commands: one per line, split at &&, leading VAR=value dropped."""
    for block in _blocks("sh"):
        for line in block.splitlines():
            for command in line.split("&&"):
                words = shlex.split(command)
                while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
                    words = words[1:]
                if words:
                    yield words


def test_shell_lines_are_the_packages_commands(capsys):
    from lmmpy.cli import main

    project = _pyproject()
    commands = list(_commands())
    assert commands
    for words in commands:
        if words[0] == "pytest":
            continue  # the suite itself
        if words[:2] == ["pip", "install"]:  # this folder, with extras the project has
            targets = [w for w in words[2:] if not w.startswith("-")]
            assert targets and all(re.fullmatch(r"\.(\[[\w,]+\])?", t) for t in targets), words
            for target in targets:
                for extra in re.findall(r"[\w]+", target[1:]):
                    assert extra in project["optional-dependencies"], f"README installs an unknown extra {extra!r}"
            continue
        if words[0] == "mkdocs":  # the documentation site, built from its config in the repository
            assert words[1] == "build" and "-f" in words, words
            assert (README.parent / words[words.index("-f") + 1]).is_file(), words
            continue
        if words[0] == "lmmpy":
            assert project["scripts"]["lmmpy"] == "lmmpy.cli:main"
            assert main(words[1:]) == 0, f"`{shlex.join(words)}` failed"
            out = capsys.readouterr().out
            if words[1] == "fit":
                assert out.startswith("Linear mixed model fit by")
            continue
        pytest.fail(f"README.md has a shell command this test does not check: {shlex.join(words)}")
