"""What the repository tracks: its own files, no links into the machine it was committed on."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT


def tracked() -> list[tuple[str, str]]:
    """(git mode, path) of every tracked file; skipped outside a git checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [(line.split()[0], line.split("\t", 1)[1]) for line in out.splitlines()]


def test_no_symlink_is_tracked():
    # a worktree's symlinked .venv or artifacts, once committed, replaces the real folders on the next merge
    links = [path for mode, path in tracked() if mode == "120000"]
    assert not links, f"tracked symlinks: {links}"


def test_the_ignored_folders_are_ignored_as_links_too():
    for name in (".venv", "artifacts"):
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{name} (file, folder or link) is not ignored"
