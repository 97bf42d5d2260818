"""Quiet by default: third-party messages that say nothing about the user's run are dropped where they are raised,
and shown with ``statewise --verbose`` (or ``STATEWISE_VERBOSE=1``, which worker processes inherit)."""

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
