"""What a rule is and what it finds: RuleSpec (a rule as data), Evidence (baseline vs today, with
units) and Alert, and the outputs: alerts.jsonl in Elastic Common Schema, devices.csv, and a
terminal table. This module imports no rule: the rules import it."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .atomic import open_replacing
from .errors import UsageError

# The four families and their exact ECS rule.category strings.
FAMILIES = ("botnet", "exfiltration", "cnc", "external_abuse")
REFERENCES = ("baseline", "capture")
SEVERITIES = {"low": 21, "medium": 47, "high": 73, "critical": 99}  # Elastic's severity -> risk mapping
ACTIONABLE = SEVERITIES["medium"]  # alerts at or above this severity are what an analyst must act on


@dataclass
class RuleSpec:
    id: str
    name: str
    family: str
    technique: str                  # ATT&CK technique id, e.g. "T1071.004"
    technique_name: str = ""
    severity: str = "medium"
    description: str = ""
    false_positives: list[str] = field(default_factory=list)
    thresholds: dict = field(default_factory=dict)
    enabled: bool = True
    allowlist: list[str] = field(default_factory=list)   # IPs, CIDRs or ASNs ("AS15169") or AS orgs ("org:GOOGLE")
    # What the rule judges against: "baseline" = change from the clean day (detect only);
    # "capture" = the analysed flows' own population and time course (detect and hunt).
    reference: str = "baseline"
    # A family whose medium-or-more alert on the same device this finding is part of (e.g. a botnet
    # relay's beacon out): the alert is then a notice there (rules/attribution.py). None: never.
    folds_into: str | None = None

    @property
    def severity_number(self) -> int:
        return SEVERITIES[self.severity]

    def t(self, name: str):
        """A threshold by name; a missing one is a bug in rules.yaml, said clearly."""
        try:
            return self.thresholds[name]
        except KeyError:
            raise UsageError(f"rule {self.id}: threshold '{name}' missing from the rules file") from None

    def num(self, name: str) -> float:
        """A numeric threshold (a user file may spell 1e9 so that YAML reads it as text)."""
        v = self.t(name)
        if isinstance(v, bool):
            return float(v)
        try:
            return float(v)
        except (TypeError, ValueError):
            raise UsageError(f"rule {self.id}: threshold '{name}' must be a number, not {v!r}") from None


@dataclass
class Evidence:
    """One measured quantity: what the baseline says, what today shows, and the threshold crossed."""

    metric: str                 # e.g. "upload to external destinations"
    unit: str                   # "bytes", "flows", "hosts", "share", "score", ...
    observed: object
    baseline: object = None     # the host's own baseline (None: the host is new)
    reference: object = None    # the peers'/population's value the threshold is built on
    threshold: object = None

    def as_dict(self) -> dict:
        return {k: _plain(v) for k, v in self.__dict__.items() if v is not None}


@dataclass
class Alert:
    rule: RuleSpec
    source_ip: str                      # the flagged device (for external_abuse: the external client)
    message: str                        # one sentence: "baseline X -> today Y"
    evidence: list[Evidence]
    score: float = 1.0                  # 0..1: how far past the thresholds (scales the risk score)
    destination_ip: str | None = None
    timestamp: datetime | None = None   # first flow of the evidence
    related: list[str] = field(default_factory=list)   # e.g. the other members of a group
    details: dict = field(default_factory=dict)        # rule-specific extras (sub-scores, ...)
    examples: list[dict] = field(default_factory=list)  # a few flows, filled in by detect
    example_port: int | None = None     # restrict example flows to this destination port
    severity: str | None = None         # this alert's severity when the evidence is weaker than the
                                        # rule's own (e.g. "low": a notice); None = the rule's

    @property
    def severity_name(self) -> str:
        return self.severity or self.rule.severity

    @property
    def severity_number(self) -> int:
        return SEVERITIES[self.severity_name]

    @property
    def actionable(self) -> bool:
        """Medium or more: evidence an analyst must act on (low alerts are notices)."""
        return self.severity_number >= ACTIONABLE

    @property
    def risk_score(self) -> int:
        """Severity's base risk (low 21, medium 47, high 73, critical 99) scaled by 0.6–1.0 with the score."""
        s = min(max(float(self.score), 0.0), 1.0)
        return int(round(self.severity_number * (0.6 + 0.4 * s)))

    def to_ecs(self) -> dict:
        r = self.rule
        doc = {
            "@timestamp": _iso(self.timestamp),
            "message": self.message,
            "event": {
                "kind": "alert",
                "category": ["network"],
                "type": ["info"],
                "module": "flowsiem",
                "dataset": "flowsiem.alerts",
                "severity": self.severity_number,
                "risk_score": self.risk_score,
            },
            "rule": {
                "id": r.id,
                "name": r.name,
                "category": r.family,
                "description": r.description,
                "ruleset": "flowsiem",
            },
            "source": {"ip": self.source_ip},
            "threat": {
                "framework": "MITRE ATT&CK",
                "technique": {"id": [r.technique], "name": [r.technique_name] if r.technique_name else []},
            },
            "flowsiem": {
                "family": r.family,
                "severity": self.severity_name,
                "score": round(float(self.score), 3),
                "evidence": [e.as_dict() for e in self.evidence],
                "related_ips": list(self.related),
                "details": {k: _plain(v) for k, v in self.details.items()},
                "examples": self.examples,
            },
        }
        if self.destination_ip:
            doc["destination"] = {"ip": self.destination_ip}
        return doc


def _plain(v):
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float):
        return round(v, 4) if v == v else None
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def _iso(ts) -> str | None:
    if ts is None:
        return None
    try:
        return ts.isoformat()
    except AttributeError:
        return str(ts)


# --- outputs --------------------------------------------------------------------------------

def write_jsonl(alerts: list[Alert], path: Path) -> None:
    with open_replacing(path, "w", encoding="utf-8") as fh:
        for a in alerts:
            fh.write(json.dumps(a.to_ecs(), default=str) + "\n")


DEVICE_COLUMNS = ("ip", "severity", "families", "risk_score", "rules", "alerts", "evidence")


def devices(alerts: list[Alert]) -> list[dict]:
    """One row per flagged device, most severe then riskiest first; its severity is its most severe
    alert's, its families those of its alerts at that severity or more (notices do not add a family
    to a device with actionable alerts), the evidence its strongest alert's sentence."""
    by_ip: dict[str, list[Alert]] = {}
    for a in alerts:
        by_ip.setdefault(a.source_ip, []).append(a)
    rows = []
    for ip, al in by_ip.items():
        top = max(al, key=lambda a: (a.severity_number, a.risk_score, a.score))
        shown = [a for a in al if a.actionable] or al
        rows.append({
            "ip": ip,
            "severity": top.severity_name,
            "families": ";".join(sorted({a.rule.family for a in shown})),
            "risk_score": top.risk_score,
            "rules": ";".join(sorted({a.rule.id for a in al})),
            "alerts": len(al),
            "evidence": top.message,
        })
    rows.sort(key=lambda r: (-SEVERITIES[r["severity"]], -r["risk_score"], r["ip"]))
    return rows


def write_devices_csv(rows: list[dict], path: Path) -> None:
    with open_replacing(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(DEVICE_COLUMNS))
        w.writeheader()
        w.writerows(rows)


def print_devices(rows: list[dict], console, limit: int = 50) -> None:
    from rich.table import Table

    if not rows:
        console.print("[green]No device flagged.[/]")
        return
    acting = sum(1 for r in rows if SEVERITIES[r["severity"]] >= ACTIONABLE)
    t = Table(title=f"Flagged devices: {acting} to act on (medium or more), {len(rows) - acting} with notices only",
              title_justify="left", show_lines=False)
    t.add_column("device")
    t.add_column("severity")
    t.add_column("families")
    t.add_column("risk", justify="right")
    t.add_column("alerts", justify="right")
    t.add_column("strongest evidence", overflow="fold")
    for r in rows[:limit]:
        sev = SEVERITIES[r["severity"]]
        colour = "red" if sev >= SEVERITIES["high"] else "yellow" if sev >= ACTIONABLE else "dim"
        t.add_row(r["ip"], f"[{colour}]{r['severity']}[/]", r["families"].replace(";", ", "), str(r["risk_score"]),
                  str(r["alerts"]), r["evidence"])
    console.print(t)
    if len(rows) > limit:
        console.print(f"… and {len(rows) - limit} more in devices.csv")
