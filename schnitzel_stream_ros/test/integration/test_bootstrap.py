"""The bootstrap refuses a bad environment with one clear sentence (and touches nothing)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

# test/integration/<this file> -> schnitzel_stream_ros/ -> the repo (absent when run from an install)
BOOTSTRAP = Path(__file__).resolve().parents[3] / 'scripts' / 'bootstrap'

needs_checkout = pytest.mark.skipif(
    not BOOTSTRAP.is_file(), reason='runs from a source checkout (scripts/bootstrap)'
)


def path_without(tmp_path: Path, missing: set[str]) -> str:
    """A PATH with every executable of the current PATH except `missing` (linked into one folder)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for folder in os.environ['PATH'].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            target = bin_dir / entry.name
            if entry.name in missing or target.exists():
                continue
            if os.access(entry.path, os.X_OK) and not entry.is_dir():
                target.symlink_to(entry.path)
    return str(bin_dir)


def run_bootstrap(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ['bash', str(BOOTSTRAP), '--quiet'], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def clean_env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {'ROS_DISTRO', 'SCHNITZEL_STREAM_ENV'}}
    env.update(changes)
    return env


def assert_one_sentence(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('bootstrap: error: ')
    for word in words:
        assert word in lines[0], lines[0]


@needs_checkout
def test_other_ros_distro_sourced_is_refused():
    result = run_bootstrap(clean_env(ROS_DISTRO='humble'))
    assert_one_sentence(result, "'humble'", 'Jazzy')


@needs_checkout
def test_missing_cmake_is_refused(tmp_path):
    result = run_bootstrap(clean_env(PATH=path_without(tmp_path, {'cmake'})))
    assert_one_sentence(result, 'cmake is not installed', 'apt-get install cmake')


@needs_checkout
def test_missing_compiler_is_refused(tmp_path):
    compilers = {'cc', 'c++', 'gcc', 'g++', 'clang', 'clang++'}
    result = run_bootstrap(clean_env(PATH=path_without(tmp_path, compilers)))
    assert_one_sentence(result, 'compiler', 'build-essential')


@needs_checkout
def test_broken_venv_is_refused(tmp_path):
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True)
    (venv / 'pyvenv.cfg').write_text('home = /nonexistent\ninclude-system-site-packages = false\n')
    (venv / 'bin' / 'python').symlink_to('/nonexistent/python3.11')
    result = run_bootstrap(clean_env(SCHNITZEL_STREAM_VENV=str(venv)))
    assert_one_sentence(result, 'is broken', 'rm -rf')
    assert sorted(p.name for p in venv.iterdir()) == ['bin', 'pyvenv.cfg']  # untouched


@needs_checkout
def test_second_run_changes_nothing_and_says_so():
    result = run_bootstrap(clean_env())
    assert result.returncode == 0, result.stderr
    verbose = subprocess.run(['bash', str(BOOTSTRAP)], env=clean_env(), capture_output=True, text=True,
                             timeout=120, check=True)
    assert '[packages] up to date' in verbose.stdout
    assert '[colcon-build] up to date' in verbose.stdout
