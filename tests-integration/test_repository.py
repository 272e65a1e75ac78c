"""The repository's own promises: README commands, CI entry point, workflows, examples."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
CI_RUN = (REPO / ".ci" / "run").read_text(encoding="utf-8")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / ".ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_quick_start_gives_exactly_two_commands():
    install_and_demo, run_tests = quick_start_commands()
    assert install_and_demo == 'python -m pip install "hatch>=1.16" && python -m hatch run demo'
    assert run_tests == "python -m hatch run test"


def test_ci_runs_the_readme_test_command_with_services_required():
    _, run_tests = quick_start_commands()
    assert "export CACHENESS_REQUIRE_SERVICES=1" in CI_RUN
    # .ci/run calls hatch through the same `python -m hatch` form, via a shell function.
    assert 'hatch() { "$python" -m hatch "$@"; }' in CI_RUN
    assert run_tests.removeprefix("python -m ") in CI_RUN.splitlines()
    assert "set -euo pipefail" in CI_RUN


def test_hatch_workspace_covers_every_package_and_has_the_scripts():
    hatch = tomllib.loads((REPO / "hatch.toml").read_text())
    default = hatch["envs"]["default"]
    members = {m["path"] if isinstance(m, dict) else m for m in default["workspace"]["members"]}
    packages = {f"packages/{p.name}" for p in (REPO / "packages").iterdir() if p.is_dir()}
    assert members == packages
    assert {"test", "demo", "lint", "types", "bench"} <= set(default["scripts"])
    assert "build" in hatch["envs"]["docs"]["scripts"]


def test_ci_checks_the_types():
    assert "hatch run types" in CI_RUN.splitlines()
    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    lint_steps = [step.get("run", "") for step in workflow["jobs"]["lint"]["steps"]]
    assert "python -m hatch run types" in lint_steps


def test_the_speed_page_quotes_the_latest_start_up_figures():
    import json

    results = json.loads((REPO / "benchmarks/results/import_time.json").read_text())
    page = (REPO / "docs/speed.md").read_text(encoding="utf-8")
    section = page.split("## Start-up", 1)[1].split("\n## ", 1)[0]
    for scenario in results["scenarios"]:
        name = scenario["name"].replace("open + hit: ", "open + hit, ")
        row = next(line for line in section.splitlines() if line.startswith(f"| {name} |"))
        after, cpu = row.strip("|").split("|")[2:4]
        assert float(after) == round(scenario["median_wall_ms"], 1), name
        assert float(cpu) == round(scenario["median_cpu_ms"], 1), name


def test_ci_workflow_tests_three_pythons_with_postgres():
    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    test = workflow["jobs"]["test"]
    assert test["strategy"]["matrix"]["python-version"] == ["3.11", "3.12", "3.13"]
    assert "postgres" in test["services"]
    steps = [step.get("run", "") for step in test["steps"]]
    assert "python -m hatch run test" in steps
    assert workflow["env"]["CACHENESS_REQUIRE_SERVICES"] == "1"
    assert "lowest-storage" in workflow["jobs"]


def test_release_workflow_publishes_one_package_per_tag():
    workflow = yaml.safe_load((REPO / ".github/workflows/release.yml").read_text())
    on = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert set(on["push"]["tags"]) == {"blobcache-storage-v*", "cacheness-v*"}
    assert workflow["jobs"]["publish"]["permissions"] == {"id-token": "write"}


def test_release_tag_must_match_the_package_version():
    release = load_script("release_package")
    storage_version = release.package_version("blobcache-storage")
    assert release.package_for_tag(f"blobcache-storage-v{storage_version}") == "blobcache-storage"
    cache_version = release.package_version("cacheness")
    assert release.package_for_tag(f"cacheness-v{cache_version}") == "cacheness"
    with pytest.raises(ValueError, match=r"says 99\.0\.0"):
        release.package_for_tag("cacheness-v99.0.0")
    with pytest.raises(ValueError, match="names no package"):
        release.package_for_tag("v1.0.0")


@pytest.mark.parametrize(
    ("requirement", "lowest"),
    [
        ("blobcache-storage>=0.1.0,<0.2", "0.1.0"),
        ("blobcache-storage>=0.1.2,>=0.1.0,<0.2", "0.1.2"),
        ("blobcache-storage~=0.3.1", "0.3.1"),
    ],
)
def test_lowest_allowed_storage_version(requirement, lowest):
    script = load_script("test_lowest_storage")
    assert script.lowest_allowed(Requirement(requirement)) == Version(lowest)


def test_lowest_allowed_storage_version_is_this_tree_or_a_release():
    # The lowest-storage job installs that version from this tree, a git tag or PyPI;
    # a lower bound naming a version none of them has (or an older one without the API
    # cacheness uses) is a stale bound: raise it with the storage version.
    script = load_script("test_lowest_storage")
    lowest = script.lowest_allowed(script.storage_requirement())
    tagged = subprocess.run(
        ["git", "-C", REPO, "tag", "--list", f"blobcache-storage-v{lowest}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert lowest == script.in_tree_version() or tagged


def test_lowest_allowed_needs_a_lower_bound():
    script = load_script("test_lowest_storage")
    with pytest.raises(SystemExit, match="no lower bound"):
        script.lowest_allowed(Requirement("blobcache-storage<0.2"))


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_run(example, tmp_path):
    result = subprocess.run(
        [sys.executable, str(example)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "an example shows what it did"
