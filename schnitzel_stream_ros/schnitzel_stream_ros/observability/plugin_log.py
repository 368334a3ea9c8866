"""The logger every plugin gets: any level, from any call site, on rclpy's logger or Python's.

Why a wrapper: rclpy's logger remembers the severity of each *call site* (function, file, line,
bytecode offset) and raises `ValueError: Logger severity cannot be changed between calls.` when the
same site logs at another level. A plugin helper that forwards `(level, text)` through one line —
`getattr(logger, level)(text)` — works under Python logging and dies under the runtime's rclpy
logger the first time the level changes (a camera that logs `info: connected`, then `warning:
stalled` from the same helper). Here every severity has its own fixed call site, so `log(level,
text)` is safe with both loggers and plugins never hold rclpy's logger themselves.
"""

from __future__ import annotations

from typing import Any, Literal

Level = Literal['debug', 'info', 'warning', 'error']
LEVELS: tuple[Level, ...] = ('debug', 'info', 'warning', 'error')


class PluginLog:
    """`debug/info/warning/error(text)` and `log(level, text)` over an rclpy or a Python logger.

    The wrapped logger only needs `debug/info/warning/error(str)`, which both have. Each method
    below is the one place that calls the wrapped logger at its severity.
    """

    __slots__ = ('_logger',)

    def __init__(self, logger: Any) -> None:
        self._logger = logger.wrapped if isinstance(logger, PluginLog) else logger

    @property
    def wrapped(self) -> Any:
        """The rclpy or Python logger underneath (for the runtime, never for plugins)."""
        return self._logger

    def debug(self, text: str) -> None:
        self._logger.debug(text)

    def info(self, text: str) -> None:
        self._logger.info(text)

    def warning(self, text: str) -> None:
        self._logger.warning(text)

    def error(self, text: str) -> None:
        self._logger.error(text)

    def log(self, level: Level, text: str) -> None:
        """Log at a level chosen at run time; an unknown level is logged as an error, never raised."""
        if level == 'debug':
            self.debug(text)
        elif level == 'info':
            self.info(text)
        elif level == 'warning':
            self.warning(text)
        elif level == 'error':
            self.error(text)
        else:
            self.error(f'(unknown log level {level!r}) {text}')
