"""Where the real test media are: assets/ at the repository root (filled by scripts/fetch-test-assets).

The media come from Debian and PyPI packages at install time and are never committed. Tests that
need one skip, naming the script to run, only when it is missing; the project's test command runs
scripts/install-system-deps first, so there they always run. SCHNITZEL_STREAM_ASSETS overrides
the folder (e.g. a shared cache).
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = 'SCHNITZEL_STREAM_ASSETS'
INSTALL_HINT = 'run scripts/install-system-deps (it fetches the test media into assets/)'

#: The media scripts/fetch-test-assets provides.
PEDESTRIAN_CLIP = 'vtest.avi'
PEDESTRIAN_CLIP_H264 = 'vtest_h264.mp4'
PHOTO_PERSON = 'astronaut.png'
PHOTO_NO_PERSON = 'coffee.png'


def assets_dir() -> Path:
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    # schnitzel_stream_ros/schnitzel_stream_ros/testing/assets.py -> repository root
    return Path(__file__).resolve().parents[3] / 'assets'


def asset(name: str) -> Path | None:
    """The asset's path, or None when it has not been fetched."""
    path = assets_dir() / name
    return path if path.is_file() and path.stat().st_size > 0 else None


def missing_reason(name: str) -> str:
    return f'test asset {name} not found in {assets_dir()}: {INSTALL_HINT}'
