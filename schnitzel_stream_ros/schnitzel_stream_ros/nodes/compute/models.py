"""Where model files are found: the bundled person detector and user models by name.

The suite ships one real model, `person_ssdlite_mobilenetv2.onnx` (see models/README.md for its
provenance and licence). It is installed to share/schnitzel_stream_ros/models and lives in the
source tree at schnitzel_stream_ros/models; both places are searched, so graphs can name it
without a path in a colcon install, a symlink install and a plain checkout alike.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

PACKAGE = 'schnitzel_stream_ros'
BUNDLED_PERSON_MODEL = 'person_ssdlite_mobilenetv2.onnx'


def model_dirs() -> list[Path]:
    """Folders that hold bundled models, most specific first."""
    dirs: list[Path] = []
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        with contextlib.suppress(PackageNotFoundError):
            dirs.append(Path(get_package_share_directory(PACKAGE)) / 'models')
    except ImportError:
        pass
    # schnitzel_stream_ros/schnitzel_stream_ros/nodes/compute/models.py -> schnitzel_stream_ros/models
    dirs.append(Path(__file__).resolve().parents[3] / 'models')
    return [d for d in dirs if d.is_dir()]


def resolve_model(path: str | None, where: str) -> Path:
    """An existing model file: `path` as given (absolute or relative to the working directory),
    else a bundled model of that file name; None means the bundled person detector."""
    name = path or BUNDLED_PERSON_MODEL
    given = Path(name).expanduser()
    if given.is_file():
        return given.resolve()
    if not given.is_absolute():
        for folder in model_dirs():
            candidate = folder / name
            if candidate.is_file():
                return candidate
    searched = ', '.join(str(d) for d in model_dirs()) or 'no model folder found'
    raise ValueError(f'{where}: model file not found: {name} (searched the working directory and {searched})')
