"""Retention of raw pages: ``cxloop prune``.

Every extraction keeps what it received, raw, in ``<landing>/source=<name>/raw/<batch id>/``
(e-mail addresses, names: personal data). Nothing else needs them once the batch is gated, so
they are kept ``CXLOOP_RAW_RETENTION_DAYS`` days (default 30) and :func:`prune_raw` deletes
the older ones.

What it deletes, and nothing else: a folder directly under ``<landing>/source=<name>/raw/`` whose
name is a batch id of that source (``<name>-YYYYmmddTHHMMSS-<8 hex>``, as
:func:`cxloop.extract.run.new_batch_id` makes them) and whose extraction time is older than the
retention; inside it, the regular files and folders owned by the current user. A symbolic link
is never followed and never removed (cxloop makes none): a ``source=``, ``raw`` or batch folder
that is a link is skipped, a link inside a batch folder stays (and so does the folder). Any other
file or folder (a user's notes next to the batches, an unparseable name) is left alone. The
landed Parquet batches (``load_date=...``) are not touched: they are the record of what loaded.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

_BATCH_ID = re.compile(r"(?P<source>[a-z][a-z0-9_]*)-(?P<ts>\d{8}T\d{6})-[0-9a-f]{8}")


@dataclass
class Pruned:
    path: str
    extracted_at: str
    files: int
    bytes: int
    complete: bool = True  # False: something not cxloop's stayed, so the folder did too


@dataclass
class PruneResult:
    retention_days: int
    cutoff: str
    dry_run: bool
    pruned: list[Pruned] = field(default_factory=list)
    kept: int = 0  # batch folders younger than the retention
    skipped: list[str] = field(default_factory=list)  # what was not ours, with the reason

    @property
    def files(self) -> int:
        return sum(p.files for p in self.pruned)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.pruned)


def batch_time(name: str, source: str) -> datetime | None:
    """The extraction time (naive UTC) in a batch id of ``source``; None when it is not one."""
    m = _BATCH_ID.fullmatch(name)
    if m is None or m.group("source") != source:
        return None
    try:
        return datetime.strptime(m.group("ts"), "%Y%m%dT%H%M%S")
    except ValueError:
        return None


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _prune_batch(folder: Path, dry_run: bool, skipped: list[str]) -> tuple[int, int, bool]:
    """Delete (or count) the user's regular files and folders below ``folder``, bottom up,
    never following a link. (files, bytes, whether everything went)."""
    uid = os.getuid()
    files = size = 0
    complete = True
    for top, dirs, names, top_fd in os.fwalk(folder, topdown=False, follow_symlinks=False):
        for name in names + dirs:
            st = os.lstat(name, dir_fd=top_fd)
            where = os.path.join(top, name)
            if stat.S_ISLNK(st.st_mode):
                skipped.append(f"{where}: a symbolic link, not followed, not removed")
                complete = False
            elif st.st_uid != uid:
                skipped.append(f"{where}: not owned by this user")
                complete = False
            elif stat.S_ISDIR(st.st_mode):
                if not dry_run:
                    try:
                        os.rmdir(name, dir_fd=top_fd)
                    except OSError:  # something in it stayed
                        complete = False
            elif stat.S_ISREG(st.st_mode):
                files += 1
                size += st.st_size
                if not dry_run:
                    os.unlink(name, dir_fd=top_fd)
            else:
                skipped.append(f"{where}: not a regular file")
                complete = False
    if complete and not dry_run:
        try:
            os.rmdir(folder)
        except OSError:
            complete = False
    return files, size, complete


def prune_raw(
    landing_dir: Path | str, retention_days: int, *, now: datetime | None = None, dry_run: bool = False
) -> PruneResult:
    """Delete the raw pages of batches extracted more than ``retention_days`` days before
    ``now`` (UTC; default: now). ``dry_run`` deletes nothing and reports the same."""
    if retention_days < 1:
        raise ValueError(f"retention_days must be at least 1, got {retention_days}")
    now = now or datetime.now(UTC).replace(tzinfo=None)
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    cutoff = now - timedelta(days=retention_days)
    result = PruneResult(retention_days, cutoff.isoformat(), dry_run)
    landing = Path(landing_dir)
    if not _is_real_dir(landing):
        return result
    for source_dir in sorted(landing.iterdir()):
        if not source_dir.name.startswith("source="):
            continue
        if not _is_real_dir(source_dir):
            result.skipped.append(f"{source_dir}: not a folder (a link is not followed)")
            continue
        source = source_dir.name[len("source=") :]
        raw = source_dir / "raw"
        if not raw.exists() and not raw.is_symlink():
            continue
        if not _is_real_dir(raw):
            result.skipped.append(f"{raw}: not a folder (a link is not followed)")
            continue
        for batch in sorted(raw.iterdir()):
            extracted = batch_time(batch.name, source)
            if extracted is None:
                result.skipped.append(f"{batch}: not a batch folder of {source}")
                continue
            if not _is_real_dir(batch):
                result.skipped.append(f"{batch}: not a folder (a link is not followed)")
                continue
            if extracted >= cutoff:
                result.kept += 1
                continue
            files, size, complete = _prune_batch(batch, dry_run, result.skipped)
            result.pruned.append(Pruned(str(batch), extracted.isoformat(), files, size, complete))
    return result


def report_lines(result: PruneResult) -> list[str]:
    """What ``cxloop prune`` prints: one line a batch folder, then the totals."""
    verb = "would delete" if result.dry_run else "deleted"
    lines = []
    for p in result.pruned:
        stays = "" if p.complete else "; the folder stays: see below"
        lines.append(f"{verb} {p.path} ({p.files} files, {p.bytes} bytes){stays}")
    lines += [f"left alone: {s}" for s in result.skipped]
    lines.append(
        f"{verb} {len(result.pruned)} raw batch folder(s), {result.files} files, {result.bytes} bytes "
        f"older than {result.retention_days} days (before {result.cutoff} UTC); kept {result.kept}"
    )
    return lines
