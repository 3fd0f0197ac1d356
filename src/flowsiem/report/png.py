"""`flowsiem report --png DIR`: each figure of the page as a PNG file, for people who write their
own reports. Plotly's static export (kaleido) drives a local Chrome or Chromium, started once."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError


def write_pngs(figures: dict[str, dict], out: Path) -> list[Path]:
    """One <name>.png per figure (names as in the page: classes, tl-internal_external, dev0-tl...)."""
    try:
        import kaleido  # noqa: F401
        import plotly.graph_objects as go
        import plotly.io as pio
    except ImportError:
        raise UsageError("--png needs kaleido: pip install 'flowsiem[png]' (and Chrome or Chromium on the machine)") \
            from None
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(figures)
    paths = [out / f"{n}.png" for n in names]
    figs = [go.Figure(figures[n]) for n in names]
    for f in figs:
        f.update_layout(width=1000, template="plotly_white")
    try:
        pio.write_images(figs, paths, format="png", width=1000)
    except Exception as exc:  # kaleido reports a missing browser with its own exception types
        raise UsageError(f"could not draw the PNGs ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                         "--png needs Chrome or Chromium installed (Debian: apt install chromium)") from None
    return paths
