"""The report's figures as plotly figure dicts (data + layout), drawn in the page by plotly.js.

Each function takes the small tables of report_data/ and returns a figure, or None when there is
nothing to draw. Every string that comes from the data goes through `esc`: plotly renders a few
HTML tags in labels, so an organisation named "<script>" must reach it as text.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd


FAMILY_COLOURS = {"botnet": "#d62728", "exfiltration": "#9467bd", "cnc": "#ff7f0e", "external_abuse": "#1f77b4"}
SEVERITY_COLOURS = {"low": "#9e9e9e", "medium": "#f0ad4e", "high": "#e4572e", "critical": "#8b0000"}
CLASS_NAMES = {"internal_internal": "internal → internal", "internal_external": "internal → outside",
               "external_internal": "outside → internal", "external_external": "outside → outside"}
TODAY, BASELINE, FLAGGED = "#1f77b4", "#aaaaaa", "#d62728"


def esc(x) -> str:
    return html.escape("" if x is None or x != x else str(x), quote=False)


def _layout(title: str, x: str = "", y: str = "", height: int = 320, **kw) -> dict:
    base = {"title": {"text": esc(title), "font": {"size": 14}}, "height": height,
            "margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "xaxis": {"title": {"text": x}},
            "yaxis": {"title": {"text": y}}, "legend": {"orientation": "h", "y": -0.25},
            "template": None, "hovermode": "closest"}
    base.update(kw)
    return base


def _times(buckets) -> list[str]:
    return pd.to_datetime(pd.Series(buckets, dtype="int64"), unit="s").dt.strftime("%Y-%m-%d %H:%M:%S").tolist()


def classes_bar(classes: pd.DataFrame, baseline: dict | None) -> dict | None:
    """Flows per traffic class, today and (when there is one) on the baseline day."""
    if classes is None or not len(classes):
        return None
    names = [CLASS_NAMES.get(c, c) for c in classes.traffic_class]
    data = [{"type": "bar", "name": "analysed", "x": names, "y": classes.flows.tolist(), "marker": {"color": TODAY}}]
    if baseline:
        data.append({"type": "bar", "name": "baseline day", "x": names, "marker": {"color": BASELINE},
                     "y": [baseline["traffic"].get(c, {}).get("flows", 0) for c in classes.traffic_class]})
    return {"data": data, "layout": _layout("Flows per traffic class", y="flows", barmode="group")}


def families_bar(devices: pd.DataFrame) -> dict | None:
    """Flagged devices per family, stacked by severity (a device counts in each of its families)."""
    if devices is None or not len(devices):
        return None
    rows = devices.assign(family=devices.families.str.split(";")).explode("family")
    data = []
    for sev, colour in SEVERITY_COLOURS.items():
        s = rows[rows.severity == sev].groupby("family").size()
        if len(s):
            data.append({"type": "bar", "name": sev, "x": s.index.tolist(), "y": s.tolist(),
                         "marker": {"color": colour}})
    return {"data": data, "layout": _layout("Flagged devices per family and severity", y="devices",
                                            barmode="stack")}


def class_timeline(tl: pd.DataFrame, cls: str, baseline: dict | None, bucket_s: int) -> dict | None:
    """Flows through time of one traffic class (the seed's 2.1, 2.3, 2.5); the baseline day drawn
    at the same times of day when both are single days."""
    t = tl[tl.traffic_class == cls]
    if not len(t):
        return None
    data = [{"type": "scatter", "mode": "lines", "name": f"analysed (per {bucket_s // 60} min)",
             "x": _times(t.bucket), "y": t.flows.tolist(), "line": {"color": TODAY}}]
    pts = ((baseline or {}).get("traffic", {}).get(cls, {}).get("timeline") or {}).get("points") or []
    start = pd.to_datetime(int(t.bucket.min()), unit="s")
    span_days = (int(t.bucket.max()) - int(t.bucket.min())) / 86400
    if pts and span_days < 1:
        b = pd.DataFrame(pts, columns=["ts", "flows", "up", "down"])
        ts = pd.to_datetime(b.ts)
        shifted = start.normalize() + (ts - ts.dt.normalize())
        scale = bucket_s / float(baseline["traffic"][cls]["timeline"]["bucket_seconds"])
        data.append({"type": "scatter", "mode": "lines", "name": "baseline day (same time of day)",
                     "x": shifted.dt.strftime("%Y-%m-%d %H:%M:%S").tolist(), "y": (b.flows * scale).round(1).tolist(),
                     "line": {"color": BASELINE, "dash": "dot"}})
    return {"data": data, "layout": _layout(f"Flows through time: {CLASS_NAMES.get(cls, cls)}", y="flows")}


def top_bar(df: pd.DataFrame, label: str, value: str, title: str, unit: str = "flows",
            hover_cols: tuple = ()) -> dict | None:
    """A horizontal bar of a top-N table (destinations, countries, organisations, ports)."""
    if df is None or not len(df):
        return None
    d = df.sort_values(value)
    hover = ["<br>".join(f"{c}: {esc(v)}" for c, v in zip(hover_cols, r)) for r in d[list(hover_cols)].itertuples(index=False)] \
        if hover_cols else None
    bar = {"type": "bar", "orientation": "h", "x": d[value].tolist(), "y": [esc(v) for v in d[label]],
           "marker": {"color": TODAY}, "name": unit}
    if hover:
        bar["hovertext"] = hover
    return {"data": [bar], "layout": _layout(title, x=unit, height=max(220, 22 * len(d) + 80),
                                             margin={"l": 230, "r": 20, "t": 40, "b": 50},
                                             yaxis={"type": "category", "automargin": True})}


def uploaders_bar(up: pd.DataFrame) -> dict | None:
    """Top uploaders to the outside, each bar split by destination organisation."""
    if up is None or not len(up):
        return None
    order = up.groupby("src_ip").up_bytes.sum().sort_values().index.tolist()
    top_orgs = up.groupby("as_org").up_bytes.sum().nlargest(8).index
    u = up.assign(as_org=up.as_org.where(up.as_org.isin(top_orgs), "other"))
    u = u.groupby(["src_ip", "as_org"], as_index=False).up_bytes.sum()
    data = [{"type": "bar", "orientation": "h", "name": esc(org), "y": [esc(h) for h in g.src_ip],
             "x": (g.up_bytes / 1e6).round(3).tolist()} for org, g in u.groupby("as_org")]
    return {"data": data, "layout": _layout("Top uploaders to the outside, by destination organisation",
                                            x="MB sent", barmode="stack", height=max(260, 24 * len(order) + 120),
                                            yaxis={"type": "category", "categoryorder": "array",
                                                   "categoryarray": [esc(h) for h in order], "automargin": True})}


def device_timeline(dt: pd.DataFrame, ip: str, bucket_s: int) -> dict | None:
    """One device's flows through time per channel (the seed's 4.1-4.3): a dot per time bucket
    with traffic, sized by flows, darker for more bytes sent; a beacon is an evenly spaced row, a
    scan a cloud, an upload a dark dot. Numbers, not strings, per point: the page stays small."""
    d = dt[dt.ip == ip]
    if not len(d):
        return None
    channels = d.groupby("channel").flows.sum().sort_values().index.tolist()
    y = d.channel.map({c: i for i, c in enumerate(channels)})
    size = 4 + 10 * np.sqrt(d.flows / max(d.flows.max(), 1))
    data = [{"type": "scatter", "mode": "markers", "x": (d.bucket.astype("int64") * 1000).tolist(), "y": y.tolist(),
             "customdata": np.c_[d.flows, (d.up_bytes / 1e6).round(3), (d.down_bytes / 1e6).round(3)].tolist(),
             "hovertemplate": "%{x}<br>%{customdata[0]} flows, %{customdata[1]} MB sent, "
                              "%{customdata[2]} MB received<extra></extra>", "name": "flows",
             "marker": {"size": size.round(1).tolist(), "color": (d.up_bytes / 1e6).round(3).tolist(),
                        "colorscale": "Viridis", "reversescale": True, "cmin": 0,
                        "cmax": max(float(d.up_bytes.max()) / 1e6, 0.001),
                        "colorbar": {"title": {"text": "MB sent"}, "thickness": 10}}}]
    return {"data": data, "layout": _layout(f"{ip}: flows through time per destination (per {bucket_s // 60} min)",
                                            height=max(220, 28 * len(channels) + 110), showlegend=False,
                                            margin={"l": 230, "r": 20, "t": 40, "b": 50}, xaxis={"type": "date"},
                                            yaxis={"tickmode": "array", "tickvals": list(range(len(channels))),
                                                   "ticktext": [esc(c) for c in channels], "automargin": True})}


def device_compare(df: pd.DataFrame, ip: str, key: str, value: str, title: str, unit: str,
                   scale: float = 1.0) -> dict | None:
    """Today against the baseline day for one device, per organisation or resolver."""
    if df is None:
        return None
    d = df[df.ip == ip]
    if not len(d):
        return None
    labels = d[d.day == "today"].sort_values(value)[key].tolist()
    labels += [k for k in d[key].unique() if k not in labels]
    data = []
    for day, colour in (("baseline", BASELINE), ("today", TODAY)):
        g = d[d.day == day].set_index(key)[value].reindex(labels).fillna(0)
        if day == "today" or len(d[d.day == day]):
            data.append({"type": "bar", "orientation": "h", "name": "baseline day" if day == "baseline" else "analysed",
                         "y": [esc(k) for k in labels], "x": (g / scale).round(3).tolist(), "marker": {"color": colour}})
    return {"data": data, "layout": _layout(title, x=unit, barmode="group", height=max(200, 30 * len(labels) + 110),
                                            margin={"l": 230, "r": 20, "t": 40, "b": 50},
                                            yaxis={"type": "category", "automargin": True})}


def internal_graph(g: pd.DataFrame, groups: dict[str, str], servers: set[str]) -> dict | None:
    """Internal hosts and their links: new links (absent from the baseline day) in red, flagged
    hosts coloured by family; a force layout computed here (a few hundred nodes at most)."""
    if g is None or not len(g):
        return None
    nodes = sorted(set(g.src_ip) | set(g.dst_ip))
    pos = _layout_force(nodes, list(zip(g.src_ip, g.dst_ip)))
    data = []
    for new, colour, name in ((False, "#cccccc", "link"), (True, FLAGGED, "new link (not on the baseline day)")):
        e = g[g.new == new]
        if not len(e):
            continue
        xs, ys = [], []
        for s, d in zip(e.src_ip, e.dst_ip):
            xs += [pos[s][0], pos[d][0], None]
            ys += [pos[s][1], pos[d][1], None]
        data.append({"type": "scatter", "mode": "lines", "x": xs, "y": ys, "name": name, "hoverinfo": "skip",
                     "line": {"color": colour, "width": 1.5 if new else 0.7}})
    kinds = {}
    for n in nodes:
        kinds.setdefault(groups.get(n) or ("server" if n in servers else "host"), []).append(n)
    for kind, ns in sorted(kinds.items()):
        colour = FAMILY_COLOURS.get(kind, "#2ca02c" if kind == "server" else "#7f7f7f")
        data.append({"type": "scatter", "mode": "markers", "name": esc(kind), "x": [pos[n][0] for n in ns],
                     "y": [pos[n][1] for n in ns], "hovertext": [esc(n) for n in ns], "hoverinfo": "text",
                     "marker": {"size": 11 if kind in FAMILY_COLOURS else 7, "color": colour}})
    hidden = {"visible": False, "showgrid": False, "zeroline": False}
    return {"data": data, "layout": _layout("Internal hosts and their links", height=560, xaxis=hidden, yaxis=hidden)}


def _layout_force(nodes: list[str], edges: list[tuple[str, str]], steps: int = 120) -> dict:
    """Fruchterman-Reingold on a small graph, seeded for a stable picture."""
    n = len(nodes)
    idx = {v: i for i, v in enumerate(nodes)}
    rng = np.random.default_rng(0)
    p = rng.uniform(-1, 1, (n, 2))
    e = np.array([(idx[a], idx[b]) for a, b in edges if a != b], dtype=int).reshape(-1, 2)
    k = 1.0 / np.sqrt(max(n, 1))
    t = 0.1
    for _ in range(steps):
        delta = p[:, None, :] - p[None, :, :]
        dist = np.maximum(np.linalg.norm(delta, axis=-1), 1e-3)
        disp = (delta / dist[..., None] * (k * k / dist)[..., None]).sum(axis=1)
        if len(e):
            d = p[e[:, 0]] - p[e[:, 1]]
            dl = np.maximum(np.linalg.norm(d, axis=1), 1e-3)
            f = d / dl[:, None] * (dl * dl / k)[:, None]
            np.add.at(disp, e[:, 0], -f)
            np.add.at(disp, e[:, 1], f)
        length = np.maximum(np.linalg.norm(disp, axis=1), 1e-6)
        p += disp / length[:, None] * np.minimum(length, t)[:, None]
        t *= 0.97
    return {v: (round(float(p[i, 0]), 4), round(float(p[i, 1]), 4)) for v, i in idx.items()}


def client_hours(h: pd.DataFrame) -> dict | None:
    """Active outside clients per hour, flagged ones apart (the seed's 4.6)."""
    if h is None or not len(h):
        return None
    data = []
    for flagged, colour, name in ((False, TODAY, "other clients"), (True, FLAGGED, "flagged clients")):
        g = h[h.flagged == flagged].set_index("hour").clients.reindex(range(24), fill_value=0)
        if flagged and not g.sum():
            continue
        data.append({"type": "bar", "name": name, "x": list(range(24)), "y": g.tolist(), "marker": {"color": colour}})
    return {"data": data, "layout": _layout("Outside clients active per hour of day", x="hour", y="clients",
                                            barmode="stack", xaxis={"title": {"text": "hour"}, "dtick": 1})}


def client_countries(c: pd.DataFrame) -> dict | None:
    """Outside clients per country, flagged ones apart."""
    if c is None or not len(c):
        return None
    d = c.sort_values("clients")
    data = [{"type": "bar", "orientation": "h", "name": "clients", "y": [esc(x) for x in d.country],
             "x": (d.clients - d.flagged).tolist(), "marker": {"color": TODAY}}]
    if d.flagged.sum():
        data.append({"type": "bar", "orientation": "h", "name": "flagged clients", "y": [esc(x) for x in d.country],
                     "x": d.flagged.tolist(), "marker": {"color": FLAGGED}})
    return {"data": data, "layout": _layout("Outside clients per country", x="clients", barmode="stack",
                                            height=max(240, 22 * len(d) + 110), yaxis={"type": "category"})}


def flagged_client_hours(f: pd.DataFrame) -> dict | None:
    """Each flagged outside client's flows per hour of day."""
    if f is None or not len(f):
        return None
    ips = sorted(f.ip.unique())
    z = f.pivot_table(index="ip", columns="hour", values="flows", aggfunc="sum").reindex(index=ips, columns=range(24))
    return {"data": [{"type": "heatmap", "x": list(range(24)), "y": [esc(i) for i in ips],
                      "z": [[None if v != v else int(v) for v in row] for row in z.values.tolist()],
                      "colorscale": "Reds", "colorbar": {"title": {"text": "flows"}, "thickness": 10}}],
            "layout": _layout("Flagged outside clients: flows per hour of day", x="hour",
                              height=max(200, 24 * len(ips) + 110), xaxis={"dtick": 1, "title": {"text": "hour"}},
                              yaxis={"type": "category", "automargin": True})}
