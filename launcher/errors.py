"""Errors that are expected user mistakes: the CLI prints them in one line, no traceback."""

from flanforge.launcher.config import ConfigError
from flanforge.mixtures.task import TaskError


class UserError(RuntimeError):
    """A mistake in how flanforge was called (paths, run directories, resume)."""


class TrainingStopped(RuntimeError):
    """The run stopped on purpose (e.g. too many non-finite losses); the message says why."""


USER_ERRORS = (UserError, ConfigError, TaskError, TrainingStopped)
