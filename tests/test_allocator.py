"""The allocator setting: network calls stop page-faulting their activations in; the user's choice is kept."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from facenhance_cli.allocator import reuse_freed_memory, user_malloc_settings

# A tiny network's forward at 192x192, batch 4, six times (two warm up): minor page faults per call.
FAULTS_PER_CALL = """
import json, resource, sys
from facenhance_cli.allocator import reuse_freed_memory
took = reuse_freed_memory() if sys.argv[1] == "keep" else False
import torch
from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import load_preset
from facenhance_cli.nn.unet import build_network
torch.set_num_threads(1)
network = build_network(load_preset("tiny")).eval()
x = torch.rand(4, 3, 192, 192)
cond = Conditioning(x, torch.rand(4, 3, 64, 64), prev_frame=x, pasted_frame=x, edit_mask=x[:, :1])
faults = []
with torch.no_grad():
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        network(x, torch.full((4,), 500), cond)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"took": took, "faults": faults[2:]}))
"""


def faults_per_call(mode: str, **env: str) -> dict:
    """Run FAULTS_PER_CALL in a fresh process (the setting is process-wide); its JSON result."""
    import os

    done = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_CALL, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's (Linux)")
def test_network_calls_stop_page_faulting_their_activations():
    system = faults_per_call("system", FACENHANCE_MALLOC="system")
    kept = faults_per_call("keep")
    assert not system["took"] and kept["took"]
    # glibc's defaults map each large activation afresh: thousands of faults (4 KiB pages) per call
    assert min(system["faults"]) > 2000, system
    assert sum(kept["faults"]) < sum(system["faults"]) / 4, (kept, system)


@pytest.mark.parametrize(
    "environ, theirs",
    [
        ({}, False),
        ({"FACENHANCE_MALLOC": "system"}, True),
        ({"FACENHANCE_MALLOC": "SYSTEM "}, True),
        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}, True),
        ({"GLIBC_TUNABLES": "glibc.rtld.nns=4"}, False),
        ({"MALLOC_MMAP_THRESHOLD_": "65536"}, True),
        ({"MALLOC_ARENA_MAX": "2"}, False),  # arenas only: mmap and trimming still ours to set
    ],
)
def test_the_users_own_malloc_settings_are_kept(environ, theirs):
    assert user_malloc_settings(environ) is theirs
    if theirs:
        assert reuse_freed_memory(environ) is False  # nothing changed in this process either
