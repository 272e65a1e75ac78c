"""Repository-wide pytest set-up shared by every test directory.

Hypothesis runs without per-example deadlines: speed is measured in ``benchmarks/``,
never asserted in tests, and a loaded 2-core CI machine must not turn slowness into
failures. ``HYPOTHESIS_PROFILE=thorough`` runs more examples locally.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    parent=settings.get_profile("default"),
    max_examples=1000,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# --------------------------------------------------------------------------- signing keys


@pytest.fixture(scope="session")
def _config_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-config")


@pytest.fixture(autouse=True)
def _no_real_home(_config_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from the user's real signing key: the per-user key file goes
    under a temporary ``XDG_CONFIG_HOME`` (subprocesses inherit it), and no signing key
    of the developer's environment leaks in (fixtures of team stores set their own)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(_config_home))
    monkeypatch.delenv("CACHENESS_SIGNING_KEY", raising=False)
    monkeypatch.delenv("CACHENESS_SIGNING_KEY_FILE", raising=False)


# --------------------------------------------------------------------------- docs pages

DOCS = Path(__file__).resolve().parent / "docs"
_BLOCK = re.compile(r"(<!-- not run[^>]*-->\n)?```(\w+)\n(.*?)```", re.S)


class DocsPage:
    """A page of ``docs/`` whose code blocks the tests run, so the docs stay true.

    Blocks preceded by a ``<!-- not run: why -->`` comment are left out.
    """

    def __init__(self, name: str) -> None:
        self.path = DOCS / name
        self.text = self.path.read_text(encoding="utf-8")

    def blocks(self, language: str = "python") -> list[str]:
        """The page's runnable ``language`` blocks, in order."""
        return [
            code for skip, lang, code in _BLOCK.findall(self.text) if lang == language and not skip
        ]

    def run(
        self,
        *,
        module: str = "__main__",
        rewrite: Callable[[str], str] = lambda code: code,
    ) -> dict[str, Any]:
        """Run the Python blocks in order in one namespace (as a reader would); return it.

        ``module`` is the namespace's ``__name__``; ``rewrite`` adapts each block first
        (e.g. to point documented host names at the test's services). A failing block
        fails the test with its number and code.
        """
        namespace: dict[str, Any] = {"__name__": module}
        for number, code in enumerate(self.blocks(), start=1):
            try:
                # dont_inherit: run as the reader would, without this file's __future__
                # imports (string annotations would hide SQLAlchemy's Mapped[...] types)
                where = f"{self.path.name} block {number}"
                exec(compile(rewrite(code), where, "exec", dont_inherit=True), namespace)
            except Exception as exc:  # noqa: BLE001 - reported with the block that raised
                pytest.fail(f"block {number} of {self.path.name} failed: {exc!r}\n{code}")
        return namespace


@pytest.fixture
def docs_page() -> Callable[[str], DocsPage]:
    """Open a page of ``docs/`` by file name: ``docs_page("keys.md").run()``."""
    return DocsPage


# --------------------------------------------------------------------------- a small disk


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A directory on a real 20 MiB filesystem (a size-limited tmpfs), to fill to the brim.

    Mounting needs root (or CAP_SYS_ADMIN); where it is impossible the test is skipped
    with the reason: a machine capability, not a service.
    """
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=20m,mode=0755", "tmpfs", str(mount_point)]
    try:
        mounted = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        pytest.skip(f"cannot mount a 20 MiB tmpfs here: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 20 MiB tmpfs here: {mounted.stderr.strip() or 'refused'}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)
