"""How the project is installed: ranges in pyproject.toml, exact versions in constraints.txt,
and the Makefile installing each target's extras only, always with the constraints."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
SERVE_EXTRAS = {"service", "video"}


def pins() -> dict[str, str]:
    """Package (canonical name) -> the version constraints.txt pins."""
    found = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            found[canonicalize_name(name)] = version
    return found


def requirements() -> dict[str, list[Requirement]]:
    """pyproject.toml's requirements by extra ("" = the core dependencies)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    return {extra: [Requirement(r) for r in listed] for extra, listed in groups.items()}


def test_constraints_pin_exact_versions_of_every_requirement() -> None:
    pinned = pins()
    assert pinned["torch"] == "2.14.1"
    assert pinned["torchvision"] == "0.29.1"
    for extra, listed in requirements().items():
        for requirement in listed:
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{requirement} (extra {extra!r}) is not in constraints.txt"
            assert requirement.specifier.contains(pinned[name], prereleases=True), (
                f"constraints.txt pins {name}=={pinned[name]}, outside pyproject's {requirement}"
            )


def test_pyproject_gives_ranges_not_exact_pins() -> None:
    for extra, listed in requirements().items():
        for requirement in listed:
            operators = {spec.operator for spec in requirement.specifier}
            assert "==" not in operators, f"{requirement} (extra {extra!r}): a range belongs here"


def make_dry_run(target: str, venv: Path, *variables: str) -> str:
    """The commands ``make TARGET`` would run for a checkout without a venv (``make -n``)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        [make, "-n", "-C", str(ROOT), target, f"VENV={venv}", *variables],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def installed_extras(commands: str) -> list[set[str]]:
    return [set(m.split(",")) for m in re.findall(r"-e '\.\[([a-z,]+)\]'", commands)]


@pytest.mark.parametrize("target", ["serve", "demo"])
def test_serving_installs_the_service_extras_only(target: str, tmp_path: Path) -> None:
    commands = make_dry_run(target, tmp_path / "venv")
    assert installed_extras(commands) == [SERVE_EXTRAS]
    assert f"{tmp_path / 'venv'}/.installed-serve" in commands


@pytest.mark.parametrize("target", ["test", "lint"])
def test_tests_and_lint_install_the_dev_tools(target: str, tmp_path: Path) -> None:
    (extras,) = installed_extras(make_dry_run(target, tmp_path / "venv"))
    assert {"dev", "service", "video", "data", "eval", "load"} <= extras


def test_every_install_of_the_makefile_uses_the_constraints(tmp_path: Path) -> None:
    for target in ("serve", "test", "train", "bench"):
        commands = make_dry_run(target, tmp_path / "venv")
        project_installs = [line for line in commands.splitlines() if "-e '.[" in line]
        assert project_installs, target
        for line in project_installs:
            assert "--constraint constraints.txt" in line, f"{target}: {line}"


def test_cpu_torch_comes_from_the_given_index(tmp_path: Path) -> None:
    index = "https://download.pytorch.org/whl/cpu"
    assert "--index-url" not in make_dry_run("serve", tmp_path / "venv")
    commands = make_dry_run("serve", tmp_path / "venv", f"TORCH_INDEX_URL={index}")
    (torch_install,) = [line for line in commands.splitlines() if index in line]
    assert "--constraint constraints.txt" in torch_install
    assert "--no-deps" in torch_install
    assert torch_install.endswith("torch torchvision")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "make test" in ci
    assert "make test" in (ROOT / "README.md").read_text()
