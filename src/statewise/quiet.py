"""Quiet by default: third-party messages that say nothing about the user's run are dropped where they are raised,
and shown with ``statewise --verbose`` (or ``STATEWISE_VERBOSE=1``, which worker processes inherit).

Two kinds say something, but not before statewise's own one line: gymnasium's env checker warnings are held while
statewise checks the environment (:func:`held_warnings`) and shown only if it accepts it (:func:`show_warnings`), and
the echo by which gymnasium's async vector env reports a worker's error is silenced (:func:`worker_errors`): statewise
reports that error itself."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import os
import sys
import warnings
from collections.abc import Iterator

VERBOSE_ENV = "STATEWISE_VERBOSE"

# Printed to stderr by gymnasium-robotics 1.2.1-1.4.2 when it is imported, which gymnasium 0.29 does while loading its
# plugins (in the Safety-Gymnasium environment, twice): a note about three Adroit tasks that statewise never uses.
NOTICES = ("AdroitHandRelocateDense-v1",)
QUIET_IMPORTS = ("gymnasium", "gymnasium_robotics")  # modules whose import may print a notice
# numpy's float-info warning after a library switched on flush-to-zero (MuJoCo and torch builds do): numpy cannot find
# the smallest subnormal. Harmless for training; repeated by every worker.
WARNINGS = ("The value of the smallest subnormal for",)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def install_filters() -> None:
    """Filter the known harmless warnings and notices (unless verbose). Idempotent."""
    if verbose():
        return
    for message in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Runs the import of the modules in QUIET_IMPORTS inside :func:`third_party_notices`, wherever it happens."""

    def find_spec(self, name, path, target=None):
        if name not in QUIET_IMPORTS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            with third_party_notices():
                run(module)

        spec.loader.exec_module = exec_module
        return spec


def set_verbose() -> None:
    """Show what :func:`install_filters` and :func:`third_party_notices` hide, here and in worker processes."""
    os.environ[VERBOSE_ENV] = "1"
    for message in WARNINGS:
        warnings.filterwarnings("default", message=message, category=UserWarning)


@contextlib.contextmanager
def third_party_notices() -> Iterator[None]:
    """Run an import that prints known notices to stderr; anything else it prints is passed on."""
    if verbose():
        yield
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        kept = [line for line in captured.getvalue().splitlines(keepends=True)
                if not any(notice in line for notice in NOTICES)]
        sys.stderr.write("".join(kept))


@contextlib.contextmanager
def held_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Keep the warnings raised inside in the list it yields instead of showing them (show them now when verbose): the
    caller shows them with :func:`show_warnings` once they turn out worth seeing, or drops them, e.g. when statewise
    refuses the environment that raised them in one line of its own."""
    if verbose():
        yield []
        return
    with warnings.catch_warnings(record=True) as held:
        warnings.simplefilter("always")  # whether to show them is decided when they are shown
        yield held


def show_warnings(held: list[warnings.WarningMessage], shown: set | None = None) -> None:
    """Show warnings kept by :func:`held_warnings` as if raised now, where they were raised (the filters apply).
    ``shown`` remembers what was shown, so that a warning that several environments raise shows once."""
    for w in held:
        key = (str(w.message), w.category, w.filename, w.lineno)
        if shown is not None:
            if key in shown:
                continue
            shown.add(key)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, module=_module_of(w.filename))
    held.clear()


def _module_of(filename: str) -> str | None:
    """The name of the imported module at ``filename`` (filters may name it, e.g. gymnasium's), else None."""
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return None


@contextlib.contextmanager
def worker_errors() -> Iterator[None]:
    """Calls into gymnasium's AsyncVectorEnv: an error in a worker is raised again here, and statewise reports it in
    one line; gymnasium's own echo of it (several 'ERROR: ...' lines and the worker's traceback) is silenced."""
    if verbose():
        yield
        return
    from gymnasium import logger

    level = logger.min_level
    logger.min_level = max(level, logger.ERROR + 1)
    try:
        yield
    finally:
        logger.min_level = level
