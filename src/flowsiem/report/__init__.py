"""The analyst's report: one self-contained HTML page (OUT/report.html).

Two steps, so that `flowsiem report OUT` can rebuild the page without the flows:
- data.py   runs at the end of run/detect/hunt: a few small aggregates of the analysed day, computed
            in the engine, written to OUT/report_data/ (parquet + meta.json);
- page.py   reads OUT/report_data/, alerts.jsonl and devices.csv, draws the figures (figures.py,
            plotly) and renders templates/report.html.j2 with plotly.js, styles and data inline.
"""

REPORT_FILE = "report.html"
DATA_DIR = "report_data"
