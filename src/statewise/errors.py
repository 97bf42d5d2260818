"""Error types. Every error a user can cause derives from :class:`StatewiseError`;
the CLI turns it into a one-line message and exit code 2."""


class StatewiseError(Exception):
    """Base class of user-facing errors (bad input, missing files, ...)."""


class ConfigError(StatewiseError):
    """An invalid configuration value or key."""


class EnvError(StatewiseError):
    """An environment that cannot be used (unknown id, no cost signal, NaN cost, ...)."""


class EnvConstructionError(EnvError):
    """The environment's constructor raised; ``original`` is what it raised (e.g. an OpenGL backend failure)."""

    def __init__(self, message: str, original: BaseException):
        super().__init__(message)
        self.original = original

    def __reduce__(self):  # both arguments, so that it crosses process boundaries (worker pools, Ray)
        return type(self), (self.args[0], self.original)


class CheckpointError(StatewiseError):
    """A run directory or checkpoint that is missing or unreadable."""


class RunDirError(StatewiseError):
    """A run directory that already exists (nothing is overwritten)."""
