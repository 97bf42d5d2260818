"""Run logging: CSV files (one per stream), TensorBoard events, nothing held back in memory."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any


class CSVWriter:
    """Appends rows to a CSV file; the columns are fixed by the first row."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None
        self._writer: csv.DictWriter | None = None

    def write(self, row: dict[str, Any]) -> None:
        if self._writer is None:
            self._fh = open(self.path, "w", newline="")
            self._writer = csv.DictWriter(self._fh, fieldnames=list(row), restval="")
            self._writer.writeheader()
        self._writer.writerow(row)
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


class RunLogger:
    """Writes ``metrics.csv`` (training statistics), ``eval.csv`` and TensorBoard events under ``tb/``."""

    def __init__(self, run_dir: Path, train_csv: str, eval_csv: str, tensorboard: bool = True):
        self.csv = {"train": CSVWriter(run_dir / train_csv), "eval": CSVWriter(run_dir / eval_csv)}
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(run_dir / "tb"))

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
