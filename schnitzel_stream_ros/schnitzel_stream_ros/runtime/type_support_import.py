"""ROS message type support without the message code generator: ~7 MB less in every container.

Why: each generated ROS message class loads its C type support on first use with
`from rosidl_generator_py import import_type_support`. That package's `__init__` also imports
`generate_py` — the build-time code generator, with the empy template engine and the lark parser
of .msg/.idl files — inside a try/except ImportError, because a running program never needs it.
Every rclpy process pays for it at its first publisher (measured: +7.6 MB RSS, 4.1 MB of it
anonymous, of which nothing is used after start-up).

How: `prepare()`, called before the process's first rclpy node, registers the package
`rosidl_generator_py` with only `import_type_support` loaded (from its own
`import_type_support_impl` module, the function the package's `__init__` re-exports); `generate_py`
is still there for whoever asks, imported on first access (PEP 562 module `__getattr__`). Nothing
is changed when the package is already imported or does not have that layout (then the usual
import runs).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

PACKAGE = 'rosidl_generator_py'
LOADER_MODULE = f'{PACKAGE}.import_type_support_impl'
GENERATOR_MODULE = f'{PACKAGE}.generate_py_impl'


def prepare() -> bool:
    """True when the package is now registered without its generator (idempotent; never raises)."""
    if PACKAGE in sys.modules:
        return getattr(sys.modules[PACKAGE], '_schnitzel_lazy_generator', False)
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    package = importlib.util.module_from_spec(spec)  # the package object, its __init__ not run
    sys.modules[PACKAGE] = package
    try:
        loader = importlib.import_module(LOADER_MODULE)
        import_type_support = loader.import_type_support
    except Exception:  # another layout: forget the shell, the usual import will run
        sys.modules.pop(PACKAGE, None)
        sys.modules.pop(LOADER_MODULE, None)
        return False

    def __getattr__(name: str) -> Any:  # noqa: N807 - PEP 562 hook
        if name == 'generate_py':
            generate_py = importlib.import_module(GENERATOR_MODULE).generate_py
            package.generate_py = generate_py
            return generate_py
        raise AttributeError(f'module {PACKAGE!r} has no attribute {name!r}')

    package.import_type_support = import_type_support
    package.__all__ = ['import_type_support', 'generate_py']
    package.__getattr__ = __getattr__
    package._schnitzel_lazy_generator = True
    return True


def loaded_without_generator(module: ModuleType | None = None) -> bool:
    """Whether the package in use is the one prepare() registered."""
    module = module if module is not None else sys.modules.get(PACKAGE)
    return bool(getattr(module, '_schnitzel_lazy_generator', False))
