"""Render OUT/report.html from OUT/report_data/, alerts.jsonl and devices.csv.

One self-contained page: plotly.js, styles, scripts and the figures' data inline (no CDN, opens
offline, printable). Text from the data is escaped by Jinja2's autoescape in the page and by
figures.esc inside figures; the figures' JSON is embedded with <, > and & as \\u escapes so no
string can close its <script> element.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import write_text
from ..errors import InputError
from ..fmt import fmt_bytes
from . import DATA_DIR, REPORT_FILE
from . import figures as F

TEMPLATES = Path(__file__).with_name("templates")


def build(out: Path, png_dir: Path | None = None) -> Path:
    """Write OUT/report.html (atomically) and, with png_dir, each figure as a PNG there."""
    out = Path(out)
    ctx = _page_context(out, _load(out))
    html_text = _render(ctx)
    path = out / REPORT_FILE
    write_text(path, html_text)
    if png_dir is not None:
        from .png import write_pngs

        write_pngs(ctx["figures"], Path(png_dir))
    return path


def _load(out: Path) -> dict:
    import pandas as pd

    d = out / DATA_DIR
    if not (d / "meta.json").exists():
        raise InputError("no report data here: run `flowsiem run`, `detect` or `hunt` with this --out first",
                         file=str(out))
    data = {"meta": json.loads((d / "meta.json").read_text())}
    for p in d.glob("*.parquet"):
        data[p.stem] = pd.read_parquet(p)
    alerts_path, devices_path = out / "alerts.jsonl", out / "devices.csv"
    data["alerts"] = [json.loads(line) for line in alerts_path.read_text().splitlines() if line.strip()] \
        if alerts_path.exists() else []
    data["devices"] = pd.read_csv(devices_path, dtype=str, keep_default_na=False) \
        if devices_path.exists() and devices_path.stat().st_size else pd.DataFrame(
            columns=["ip", "severity", "families", "risk_score", "rules", "alerts", "evidence"])
    return data


def anchor(ip: str) -> str:
    return "dev-" + re.sub(r"[^0-9A-Za-z]", "-", str(ip))


def _page_context(out: Path, d: dict) -> dict:
    meta, devices, alerts = d["meta"], d["devices"], d["alerts"]
    base, bucket = meta.get("baseline"), int(meta.get("bucket_seconds", 600))
    figs: dict[str, dict] = {}

    def add(name, fig):
        if fig is not None:
            figs[name] = fig
            return name
        return None

    overview = {"classes": add("classes", F.classes_bar(d.get("classes"), base)),
                "families": add("families", F.families_bar(devices))}
    network = []
    for cls in (d["classes"].traffic_class.tolist() if "classes" in d else []):
        row = d["classes"][d["classes"].traffic_class == cls].iloc[0]
        sub = {"id": cls, "name": F.CLASS_NAMES.get(cls, cls), "stats": row.to_dict(),
               "baseline": (base or {}).get("traffic", {}).get(cls), "figs": []}
        sub["figs"].append(add(f"tl-{cls}", F.class_timeline(d["timeline"], cls, base, bucket)))
        peer_word = "sources" if cls == "external_internal" else "destinations"
        for table, label, title in (("peers", "ip", f"Top {peer_word}"), ("countries", "country", "Countries"),
                                    ("orgs", "as_org", "AS organisations"), ("ports", "port", "Ports")):
            t = d.get(table)
            if t is None or (table in ("countries", "orgs") and cls == "internal_internal"):
                continue
            t = t[t.traffic_class == cls]
            if table == "ports":
                t = t.assign(port=t.proto.astype(str) + "/" + t.port.astype("Int64").astype(str))
            hover = ("country", "as_org", "hosts") if table == "peers" else ()
            sub["figs"].append(add(f"{table}-{cls}", F.top_bar(t, label, "flows", f"{title}: {sub['name']}",
                                                                hover_cols=hover)))
        sub["figs"] = [f for f in sub["figs"] if f]
        network.append(sub)
    uploaders = add("uploaders", F.uploaders_bar(d.get("uploaders")))

    by_ip: dict[str, list] = {}
    for a in alerts:
        by_ip.setdefault(a["source"]["ip"], []).append(a)
    drawn = set(d["device_timeline"].ip) if "device_timeline" in d else set()
    sections = []
    for r in devices.to_dict("records"):
        ip = r["ip"]
        if ip not in drawn:
            continue
        n = len(sections)
        sections.append({"ip": ip, "anchor": anchor(ip), "row": r, "alerts": sorted(
            by_ip.get(ip, []), key=lambda a: -a["event"]["risk_score"]), "figs": [f for f in (
                add(f"dev{n}-tl", F.device_timeline(d["device_timeline"], ip, bucket)),
                add(f"dev{n}-up", F.device_compare(d.get("device_uploads"), ip, "org", "up_bytes",
                                                   f"{ip}: bytes sent per destination organisation", "MB", 1e6)),
                add(f"dev{n}-dns", F.device_compare(d.get("device_dns"), ip, "resolver", "flows",
                                                    f"{ip}: DNS flows per resolver", "flows"))) if f]})
    families = {}
    for a in alerts:
        if a["event"]["severity"] >= 47 and a["flowsiem"]["family"] != "external_abuse":
            families.setdefault(a["source"]["ip"], a["flowsiem"]["family"])
    servers = {s["ip"] for s in meta.get("internal_servers", [])}
    findings = {"graph": add("graph", F.internal_graph(d.get("graph"), families, servers)),
                "client_hours": add("client-hours", F.client_hours(d.get("client_hours"))),
                "client_countries": add("client-countries", F.client_countries(d.get("client_countries"))),
                "flagged_clients": add("flagged-clients", F.flagged_client_hours(d.get("flagged_client_hours")))}
    counts = devices.groupby("severity").size().to_dict() if len(devices) else {}
    return {"meta": meta, "devices": devices.to_dict("records"), "anchors": {s["ip"]: s["anchor"] for s in sections},
            "sections": sections, "overview": overview, "network": network, "uploaders": uploaders,
            "findings": findings, "figures": figs, "heights": {k: f["layout"]["height"] for k, f in figs.items()}, "severity_counts": counts,
            "class_names": F.CLASS_NAMES, "family_colours": F.FAMILY_COLOURS,
            "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "n_alerts": len(alerts), "out": str(out)}


def evidence_value(v, unit: str = "") -> str:
    """An evidence value for people: hours as ranges, lists shortened, numbers with separators."""
    from ..fmt import fmt_hours, fmt_list

    if v is None or v == "":
        return "—"
    if isinstance(v, list):
        return fmt_hours(v) if unit == "hours" and all(isinstance(x, int) for x in v) else fmt_list(v, 8)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) or float(v).is_integer() and abs(v) >= 1000:
        return f"{int(v):,}"
    return f"{v:.4g}"


def _script_json(obj) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' left to close or open a tag."""
    s = json.dumps(obj, separators=(",", ":"), default=str, allow_nan=False)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _plotly_js() -> str:
    from importlib.resources import files

    return files("plotly").joinpath("package_data", "plotly.min.js").read_text(encoding="utf-8")


def _render(ctx: dict) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["bytes"] = fmt_bytes
    env.filters["value"] = evidence_value
    env.filters["num"] = lambda v: f"{int(float(v)):,}" if v not in (None, "") and v == v else "—"
    page = env.get_template("report.html.j2")
    return page.render(**ctx, figures_json=_markup(_script_json(_clean(ctx["figures"]))),
                       plotly_js=_markup(_plotly_js().replace("</script", "<\\/script")),
                       style=_markup((TEMPLATES / "report.css").read_text()),
                       script=_markup((TEMPLATES / "report.js").read_text()))


def _markup(s: str):
    from markupsafe import Markup

    return Markup(s)


def _clean(obj):
    """NaN and infinities become null (JSON has neither)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if hasattr(obj, "item"):  # numpy scalars
        return _clean(obj.item())
    return obj
