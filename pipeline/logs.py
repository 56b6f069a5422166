"""The one logging setup: what reaches the console while winnow runs.

datatrove logs through loguru and, at the end of every task, puts its default console handler back
(``close_task_logger``). In quiet mode winnow keeps the console for its progress bar, funnel and
warnings: task logs still go to ``logs/<stage>/logs/task_*.log``.
"""

from __future__ import annotations

import sys

from loguru import logger

QUIET_LEVEL = "WARNING"


def quiet_console() -> None:
    """Route loguru's console output to stderr at WARNING and above only."""
    logger.remove()
    logger.add(sys.stderr, level=QUIET_LEVEL)
