"""Step metrics to ``metrics.csv`` and TensorBoard (rank 0); a resumed run drops rows past its checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path


class MetricsLog:
    def __init__(self, run: Path, resume_step: int, tensorboard: bool = True):
        self.path = run / "metrics.csv"
        self.fields: list[str] | None = None
        if self.path.is_file():
            with open(self.path, newline="") as fh:
                reader = csv.DictReader(fh)
                self.fields = reader.fieldnames
                kept = [r for r in reader if int(r["step"]) <= resume_step]
            with open(self.path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, self.fields)
                writer.writeheader()
                writer.writerows(kept)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def write(self, row: dict) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"train/{key}", value, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
