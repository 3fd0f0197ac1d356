"""The analyst's report (OUT/report.html): drawn in headless Chromium, self-contained, escaped."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from browser import Page, chromium
from conftest import make_office_day

HOSTILE_ORG = "<script>alert('org')</script>"
HOSTILE_CSV = "<img src=x onerror=alert('csv')>"
HOSTILE_FILE = "<img src=x onerror=alert('file')>.parquet"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "flowsiem.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def generated_run(tmp_path_factory):
    """`flowsiem run` on a small generated day with every family: the page a new user gets."""
    d = tmp_path_factory.mktemp("report")
    g = _cli("generate", "--scenario", "obvious", "--seed", 5, "--scale", 0.1, "--out", d / "days", "-q")
    assert g.returncode == 0, g.stderr
    days = d / "days"
    r = _cli("run", days / "data.parquet", days / "test.parquet", "--servers", days / "servers.parquet",
             "--servers-baseline", days / "servers_data.parquet", "--out", d / "run")
    assert r.returncode == 0, r.stderr
    assert "report.html" in r.stdout
    return d / "run"


def test_report_draws_every_figure_and_names_every_device(generated_run, tmp_path):
    out = generated_run
    devices = list(csv.DictReader(open(out / "devices.csv")))
    assert devices and any(r["severity"] != "low" for r in devices)
    with Page(out / "report.html") as p:
        p.draw_all()
        marks = p.marks()
        text = p.page.inner_text("body")
        p.page.screenshot(path=str(tmp_path / "report.png"))
        links = p.page.eval_on_selector_all("#devices-table a", "els => els.map(e => e.getAttribute('href'))")
        targets = p.page.eval_on_selector_all(".device", "els => els.map(e => '#' + e.id)")
        assert p.errors == [] and p.dialogs == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
    # The seed's figures: flows through time per class, top destinations, countries, each flagged
    # device's timeline, the internal graph, outside clients by hour and country.
    for name in ("classes", "families", "tl-internal_external", "tl-internal_internal", "peers-internal_external",
                 "countries-internal_external", "orgs-internal_external", "uploaders", "dev0-tl", "graph",
                 "client-hours", "client-countries"):
        assert name in marks, f"figure {name} missing"
    assert {k: v for k, v in marks.items() if v == 0} == {}, "figures without marks"
    assert all(r["ip"] in text for r in devices)
    assert links and set(links) == set(targets)  # each device section is linked from the table
    acted = [r["ip"] for r in devices if r["severity"] != "low"]
    assert len(targets) == min(len(acted), 30)


def test_report_is_self_contained(generated_run):
    html = (generated_run / "report.html").read_text()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html, re.I), "no external resources"
    assert "cdn" not in re.findall(r"<script[^>]*>", html)[0].lower()
    with Page(generated_run / "report.html") as p:
        requests = []
        p.page.on("request", lambda r: requests.append(r.url))
        p.page.reload(wait_until="load")
        p.draw_all()
        assert p.errors == []
    assert all(u.startswith(("file:", "data:", "blob:")) for u in requests), requests


def test_report_rebuilds_from_outputs(generated_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(generated_run, out)
    (out / "report.html").unlink()
    r = _cli("report", out)
    assert r.returncode == 0, r.stderr
    assert (out / "report.html").stat().st_size > 1_000_000  # plotly.js is inline
    assert not list(out.glob("*.partial"))
    empty = _cli("report", tmp_path / "nothing")
    assert empty.returncode == 2 and "no report data here" in empty.stderr and "Traceback" not in empty.stderr


def test_hostile_strings_come_out_escaped(tmp_path):
    """A file name, an organisation name and a CSV field holding markup are shown as text: no
    script runs, no element is injected."""
    d = tmp_path / "in"
    d.mkdir()
    day = make_office_day(seed=4, n_hosts=12)
    day.to_parquet(d / HOSTILE_FILE, index=False)
    out = tmp_path / "out"
    r = _cli("hunt", d / HOSTILE_FILE, "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    rd = out / "report_data"
    orgs = pd.read_parquet(rd / "orgs.parquet")
    orgs.loc[orgs.index[0], "as_org"] = HOSTILE_ORG
    orgs.to_parquet(rd / "orgs.parquet", index=False)
    with open(out / "devices.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ip", "severity", "families", "risk_score", "rules", "alerts", "evidence"])
        w.writerow(["10.9.8.1", "medium", "cnc", "47", "cnc.beacon", "1", HOSTILE_CSV])
    r = _cli("report", out)
    assert r.returncode == 0, r.stderr
    html = (out / "report.html").read_text()
    assert html.count("<script") == 3  # plotly.js, the figures' JSON, the page's script: nothing else
    assert HOSTILE_CSV not in html and HOSTILE_ORG not in html and HOSTILE_FILE not in html
    with Page(out / "report.html") as p:
        p.draw_all()
        text = p.page.inner_text("body")
        svg_text = p.page.eval_on_selector_all(".fig text", "els => els.map(e => e.textContent).join('|')")
        injected = p.page.eval_on_selector_all("main img, main script", "els => els.length")
        assert p.dialogs == [] and p.errors == []
    assert HOSTILE_CSV in text and HOSTILE_FILE in text  # shown, as text
    assert HOSTILE_ORG in svg_text                        # plotly draws it as a label, not markup
    assert injected == 0


def test_png_export_writes_each_figure(tmp_path):
    chromium()  # kaleido draws through the machine's Chromium
    d = tmp_path / "in"
    d.mkdir()
    make_office_day(seed=6, n_hosts=10).to_parquet(d / "day.parquet", index=False)
    out = tmp_path / "out"
    assert _cli("hunt", d / "day.parquet", "--out", out, "-q").returncode == 0
    r = _cli("report", out, "--png", tmp_path / "png")
    assert r.returncode == 0, r.stderr
    pngs = sorted((tmp_path / "png").glob("*.png"))
    meta = json.loads((out / "report_data" / "meta.json").read_text())
    assert meta["command"] == "flowsiem hunt"
    html = (out / "report.html").read_text()
    figs = set(re.findall(r'data-fig="([^"]+)"', html))
    assert {p.stem for p in pngs} == figs
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000 for p in pngs)
