"""The error types. Each message is one line that says what is wrong and how to fix it; the
command line prints it after `error:` and exits with code 2, with no traceback."""

from __future__ import annotations


class GhostsearchError(ValueError):
    """Base of every error the tool reports to a user as one line."""


class ConfigError(GhostsearchError):
    """A config, search space, budget or option that cannot be used; the message names the
    field and the value."""


class DataError(GhostsearchError):
    """A data set that is missing, unreadable or too large to hold in memory."""


class StudyError(GhostsearchError):
    """A study or storage that does not exist, cannot be opened or does not fit the request."""


class MissingExtraError(GhostsearchError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str, purpose: str) -> object:
    """Import an optional dependency, or raise MissingExtraError naming the pip extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{purpose} needs {module}, which is not installed: pip install "
            f"'ghostsearch[{extra}]'") from None


class WorkerError(GhostsearchError):
    """A spawned worker process of a search ended with an error (its own message is above)."""
