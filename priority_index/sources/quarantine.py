"""One collector for rejected records, with reason codes, and the per-source reconciliation.

Every record a reader sees ends up either used or rejected with a reason: nothing is dropped
silently, and ``rows read = rows used + rows rejected`` is checked per source before the run goes
on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: reason code -> what it means (shown in the report and the GeoPackage field description)
REASONS: dict[str, str] = {
    "malformed_row": "the CSV line has the wrong number of fields",
    "no_coordinates": "no longitude/latitude (police.uk withholds some locations)",
    "bad_coordinates": "longitude/latitude are not numbers",
    "coordinates_out_of_range": "coordinates outside Great Britain or exactly (0, 0)",
    "no_lsoa": "no LSOA code and no coordinates to place the record",
    "malformed_lsoa_code": "the LSOA code is not of the ONS form (E01/W01 + 6 digits)",
    "unknown_lsoa_code": "the LSOA code is in neither boundary vintage of the study area",
    "outside_study_area": "the record's LSOA is outside the study area",
    "lsoa_mismatch": "the point lies farther from its stated LSOA than the tolerance",
    "malformed_month": "the month is not of the form YYYY-MM",
    "month_mismatch": "the row's month differs from the month in the file name",
    "outside_period": "the month falls in none of the analysis periods",
    "missing_crime_type": "the crime type is empty",
    "unknown_crime_type": "the crime type is not one the pipeline knows",
    "duplicate_crime_id": "a Crime ID seen before (ASB rows without an ID are never duplicates)",
    "bad_count": "the count is not a number",
    "negative_count": "the count is negative",
    "duplicate_area_row": "the same LSOA and category appear twice in the table",
    "bad_date": "the date is not a date",
    "bad_weight": "the weight is not a non-negative number",
}

COLUMNS = [
    "source",
    "file",
    "line",
    "n_records",
    "reason",
    "detail",
    "crime_id",
    "month",
    "crime_type",
    "longitude",
    "latitude",
    "lsoa_code",
    "location",
]


@dataclass
class SourceTally:
    """Rows (and, for count tables, offences) read, used and rejected for one source."""

    source: str
    rows_read: int = 0
    rows_used: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    files: int = 0
    offences_read: float | None = None
    offences_used: float | None = None
    #: rows whose LSOA code was of the other vintage (2011/2021) and were carried across
    codes_converted: int = 0

    @property
    def rows_rejected(self) -> int:
        return int(sum(self.rejected.values()))

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_used + self.rows_rejected

    def as_dict(self) -> dict:
        out = {
            "source": self.source,
            "files": self.files,
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "rows_rejected": self.rows_rejected,
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "reconciles": self.reconciles,
            "codes_converted": self.codes_converted,
        }
        if self.offences_read is not None:
            out["offences_read"] = self.offences_read
            out["offences_used"] = self.offences_used
        return out


class Quarantine:
    """Collects rejected records from every reader and keeps the tallies."""

    def __init__(self) -> None:
        self._parts: list[pd.DataFrame] = []
        self.tallies: dict[str, SourceTally] = {}

    def tally(self, source: str) -> SourceTally:
        """The tally of one source (created on first use)."""
        if source not in self.tallies:
            self.tallies[source] = SourceTally(source)
        return self.tallies[source]

    def reject(
        self,
        source: str,
        file: str,
        reason: str,
        rows: pd.DataFrame,
        *,
        lines: np.ndarray | pd.Series | list[int],
        detail: str | pd.Series | np.ndarray = "",
    ) -> None:
        """Quarantine ``rows`` of ``file`` for ``reason``.

        Parameters
        ----------
        source
            The source's label (one tally per source).
        file
            The file (or zip member) the rows came from.
        reason
            A key of :data:`REASONS`.
        rows
            The rejected rows; columns named like :data:`COLUMNS` are kept, others ignored.
        lines
            1-based line numbers in ``file`` (header = line 1).
        detail
            A short explanation, one for all rows or one per row.
        """
        if reason not in REASONS:
            raise KeyError(f"unknown rejection reason {reason!r}")
        n = len(rows)
        if n == 0:
            return
        part = pd.DataFrame(index=range(n))
        part["source"] = source
        part["file"] = file
        part["line"] = np.asarray(lines, dtype="int64")
        part["reason"] = reason
        part["detail"] = (
            detail if isinstance(detail, str) else np.asarray(detail, dtype=object).astype(str)
        )
        part["n_records"] = 1
        for col in COLUMNS[6:]:
            part[col] = rows[col].to_numpy(dtype=object) if col in rows else None
        self._parts.append(part)
        t = self.tally(source)
        t.rejected[reason] = t.rejected.get(reason, 0) + n

    def reject_summary(
        self, source: str, file: str, reason: str, lines: np.ndarray, *, detail: str = ""
    ) -> None:
        """Quarantine many rows of one file as one summary row (``n_records`` > 1).

        Used for rows that are not faulty but belong elsewhere (another area's records in a
        force-wide file): they are counted exactly, and the summary names the file and the first
        and last line, without listing hundreds of thousands of rows one by one.
        """
        if reason not in REASONS:
            raise KeyError(f"unknown rejection reason {reason!r}")
        n = len(lines)
        if n == 0:
            return
        part = pd.DataFrame({c: [None] for c in COLUMNS})
        part["source"], part["file"], part["reason"] = source, file, reason
        part["line"] = int(np.min(lines))
        part["n_records"] = n
        part["detail"] = f"{n:,} rows (lines {int(np.min(lines))}-{int(np.max(lines))})" + (
            f": {detail}" if detail else ""
        )
        self._parts.append(part)
        t = self.tally(source)
        t.rejected[reason] = t.rejected.get(reason, 0) + n

    def add_frames(self, frames: Iterable[pd.DataFrame]) -> None:
        """Add rejected records already laid out as :meth:`reject` and :meth:`reject_summary`
        lay them out (a bulk reader's), whose rows the caller has counted in the tallies.

        Parameters
        ----------
        frames
            Frames with the columns of :data:`COLUMNS` and ``n_records``.
        """
        self._parts.extend(frames)

    def frame(self) -> pd.DataFrame:
        """Every rejected record, ordered by source, file and line."""
        if not self._parts:
            return pd.DataFrame(
                {c: pd.Series(dtype="int64" if c == "line" else "str") for c in COLUMNS}
            )
        out = pd.concat(self._parts, ignore_index=True)
        for col in COLUMNS:
            if col not in ("line", "n_records"):
                out[col] = out[col].astype("str").where(out[col].notna(), None)
        out["line"] = out["line"].astype("int64")
        out["n_records"] = out["n_records"].astype("int64")
        return out.sort_values(["source", "file", "line", "reason"], kind="stable").reset_index(
            drop=True
        )

    def summary(self) -> pd.DataFrame:
        """One row per source and reason: the counts the report shows."""
        rows = []
        for t in self.tallies.values():
            for reason, n in sorted(t.rejected.items()):
                rows.append(
                    {"source": t.source, "reason": reason, "rows": n, "meaning": REASONS[reason]}
                )
        return pd.DataFrame(rows, columns=["source", "reason", "rows", "meaning"])

    def unreconciled(self) -> list[str]:
        """Sources whose rows read differ from rows used + rejected."""
        return [s for s, t in self.tallies.items() if not t.reconciles]
