"""sglab.allocator: glibc's malloc thresholds fixed once per process, unless SGLAB_MALLOC=default."""

import os
import platform
import subprocess
import sys

import pytest

CHECK = "from sglab.allocator import steady_allocator; print(steady_allocator(), steady_allocator())"


def _run(**env):
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return out.stdout.split()


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_steady_allocator_fixes_the_thresholds_once_on_glibc():
    assert _run() == ["True", "True"]


def test_sglab_malloc_default_leaves_the_allocator_alone():
    assert _run(SGLAB_MALLOC="default") == ["False", "False"]
