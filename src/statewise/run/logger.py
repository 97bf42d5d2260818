"""Run logging: CSV files (one per stream), TensorBoard events, nothing held back in memory."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from statewise.run.runio import atomic_write


class CSVWriter:
    """Appends rows to a CSV file. With ``fields`` the header is written at once and stays as it is (columns with no
    value yet, e.g. learning statistics during the random warm-up, are empty cells). A row with a column that was not
    declared rewrites the file once, atomically, with the widened header."""

    def __init__(self, path: Path, fields: list[str] | None = None):
        self.path = path
        self._fh = None
        self._writer: csv.DictWriter | None = None
        self._fields: list[str] = []
        if fields:
            self._widen(list(fields))

    def write(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self._fields]
        if new:
            self._widen(new)
        self._writer.writerow(row)
        self._fh.flush()

    def _widen(self, new: list[str]) -> None:
        old_rows = []
        if self._fh is not None:
            self._fh.close()
            with open(self.path, newline="") as fh:
                old_rows = list(csv.DictReader(fh))
        self._fields += new
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._fields, restval="")
        writer.writeheader()
        writer.writerows(old_rows)
        atomic_write(self.path, buf.getvalue())
        self._fh = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=self._fields, restval="")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def state(self) -> list[str]:
        """What :meth:`restore` needs: the header (rows are cut back by step, see there)."""
        return list(self._fields)

    def restore(self, fields: list[str], step: int) -> None:
        """Continue a file as it was at ``step`` with header ``fields``: rows logged after it are dropped (the file
        is rewritten atomically), later rows are appended."""
        self.close()
        rows = []
        if self.path.is_file():
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(float(r["step"])) <= step]
        self._fields = list(fields)
        if not self._fields:
            self.path.unlink(missing_ok=True)
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._fields, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path, buf.getvalue())
        self._fh = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=self._fields, restval="")


class RunLogger:
    """Writes ``metrics.csv`` (training statistics), ``eval.csv``, any ``extra`` streams (stream -> file name)
    and TensorBoard events under ``tb/``."""

    def __init__(self, run_dir: Path, train_csv: str, eval_csv: str, tensorboard: bool = True,
                 extra: dict[str, str] | None = None, resume: tuple[dict[str, list[str]], int] | None = None,
                 train_fields: list[str] | None = None):
        """``resume = (headers, step)`` continues the logs of a resumed run: CSV rows after ``step`` are dropped and
        TensorBoard purges its events after it. ``train_fields``: the columns of the training log, declared up front
        so that its header never changes."""
        self.csv = {"train": CSVWriter(run_dir / train_csv, None if resume else ["step", *(train_fields or [])]),
                    "eval": CSVWriter(run_dir / eval_csv)}
        self.csv.update({stream: CSVWriter(run_dir / name) for stream, name in (extra or {}).items()})
        if resume is not None:
            headers, step = resume
            for stream, writer in self.csv.items():
                writer.restore(headers.get(stream, []), step)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=None if resume is None else resume[1] + 1)

    def state(self) -> dict[str, list[str]]:
        return {stream: writer.state() for stream, writer in self.csv.items()}

    def log(self, stream: str, step: int, row: dict[str, Any]) -> None:
        self.csv[stream].write({"step": step, **row})
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and not math.isnan(value):
                    self.tb.add_scalar(f"{stream}/{key}", value, step)

    def close(self) -> None:
        for writer in self.csv.values():
            writer.close()
        if self.tb is not None:
            self.tb.close()
