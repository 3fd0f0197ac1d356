"""OUT/rejected.parquet: the input rows `--on-bad-rows skip` left out, so nothing is lost silently.

One row per skipped input row: its raw values as text (as read, before conversion), `reason`
(its first problem) and `input` (which input it came from: test, servers, baseline...)."""

from __future__ import annotations

from pathlib import Path


def write_rejected(reads: dict, path: Path) -> int:
    """Write the skipped rows of `reads` ({input name: ReadResult or None}) to `path`; return how many.

    Without skipped rows, a rejected.parquet left by an earlier run is removed: the output
    directory describes this run only."""
    import ibis

    from ..atomic import replacing
    from ..console import info

    parts = [r.rejected.mutate(input=ibis.literal(name)) for name, r in reads.items()
             if r is not None and r.rejected is not None and r.rejected_rows]
    path = Path(path)
    if not parts:
        path.unlink(missing_ok=True)
        return 0
    table = parts[0] if len(parts) == 1 else ibis.union(*parts)
    with replacing(path) as tmp:
        table.to_parquet(tmp)
    n = sum(r.rejected_rows for r in reads.values() if r is not None)
    # Said here, where the file is written: a reader's "skipped N rows" note cannot know whether
    # (or where) the command keeps them (explain writes no files).
    info(f"note: the {n:,} skipped row{'s are' if n != 1 else ' is'} kept in {path}")
    return n
