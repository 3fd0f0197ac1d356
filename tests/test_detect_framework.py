"""The rules framework: rules as data, overrides, allowlists, ECS layout, devices, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import pytest

from flowsiem.alerts import Alert, Evidence, devices
from flowsiem.errors import UsageError
from flowsiem.rules import FAMILIES, REGISTRY, Allowlist, RuleSpec, load_family_modules, load_rules


def _spec(**kw):
    base = dict(id="x.test", name="Test rule", family="exfiltration", technique="T1048", severity="high",
                thresholds={"ratio": 3})
    base.update(kw)
    return RuleSpec(**base)


def test_shipped_rules_are_complete():
    load_family_modules()
    specs = load_rules()
    assert specs, "the shipped rules file defines rules"
    for s in specs.values():
        assert s.family in FAMILIES
        assert s.id in REGISTRY, f"{s.id} has no implementation"
        assert s.technique.startswith("T") and s.name and s.description
        assert s.thresholds, f"{s.id}: every rule documents its thresholds"
    assert {s.family for s in specs.values()} == set(FAMILIES)


def test_override_file_merges_thresholds_and_allowlists(tmp_path):
    specs = load_rules()
    rid, spec = next(iter(specs.items()))
    key = next(iter(spec.thresholds))
    f = tmp_path / "r.yaml"
    f.write_text(f"allowlist: ['10.0.0.0/8']\nrules:\n  - id: {rid}\n    severity: low\n    thresholds: {{{key}: 12345}}\n"
                 f"    allowlist: ['AS15169']\n")
    over = load_rules(f)
    assert over[rid].thresholds[key] == 12345 and over[rid].severity == "low"
    assert set(over[rid].thresholds) == set(spec.thresholds)  # merged key by key
    assert "AS15169" in over[rid].allowlist and "10.0.0.0/8" in over[rid].allowlist
    other = [s for r, s in over.items() if r != rid]
    assert all("10.0.0.0/8" in s.allowlist for s in other)  # top-level allowlist applies to every rule


@pytest.mark.parametrize("text,needle", [
    ("rules:\n  - id: nope.rule\n    name: x\n", "no implementation"),
    ("rules: [", "not valid YAML"),
    ("rules:\n  - name: x\n", "without an 'id'"),
    ("rules:\n  - id: cnc.beacon\n    folds_into: cnc\n", "folds_into must be another family"),
])
def test_bad_override_files(tmp_path, text, needle):
    f = tmp_path / "r.yaml"
    f.write_text(text)
    with pytest.raises(UsageError, match=needle):
        load_rules(f)


def test_unknown_threshold_is_an_error(tmp_path):
    rid = next(iter(load_rules()))
    f = tmp_path / "r.yaml"
    f.write_text(f"rules:\n  {rid}:\n    thresholds: {{no_such_threshold: 1}}\n")
    with pytest.raises(UsageError, match="unknown threshold"):
        load_rules(f)


def test_disable_by_id_and_family():
    specs = load_rules(disable=["botnet"])
    assert all(not s.enabled for s in specs.values() if s.family == "botnet")
    assert any(s.enabled for s in specs.values() if s.family != "botnet")
    rid = next(iter(specs))
    assert not load_rules(disable=[rid])[rid].enabled
    with pytest.raises(UsageError, match="no rule or family"):
        load_rules(disable=["nothing"])


def test_allowlist_matching():
    al = Allowlist(["10.1.0.0/16", "192.0.2.7", "AS15169", "org:Cloudflarenet", "2001:db8::/32"])
    assert al.matches("10.1.2.3") and al.matches("192.0.2.7") and al.matches("2001:db8::1")
    assert not al.matches("10.2.0.1")
    assert al.matches("8.8.8.8", asn=15169) and al.matches("1.1.1.1", org="CLOUDFLARENET")
    assert not al.matches("1.1.1.1", asn=float("nan"), org="OTHER")
    with pytest.raises(UsageError):
        Allowlist(["not-an-ip"])


def test_ecs_layout_and_risk():
    a = Alert(rule=_spec(), source_ip="10.0.0.5", destination_ip="142.250.184.243",
              message="uploaded 4.6 GB today; baseline 31 MB",
              evidence=[Evidence("upload to external", "bytes", observed=4.6e9, baseline=3.1e7, reference=8e7,
                                 threshold=2.4e8)],
              score=1.0, timestamp=datetime(2024, 6, 17, 10, 0))
    doc = json.loads(json.dumps(a.to_ecs()))
    assert doc["@timestamp"] == "2024-06-17T10:00:00"
    assert doc["event"]["kind"] == "alert" and doc["event"]["category"] == ["network"]
    assert doc["rule"]["id"] == "x.test" and doc["rule"]["category"] == "exfiltration"
    assert doc["source"]["ip"] == "10.0.0.5" and doc["destination"]["ip"] == "142.250.184.243"
    assert doc["threat"]["technique"]["id"] == ["T1048"]
    assert doc["event"]["severity"] == 73 and doc["event"]["risk_score"] == 73
    ev = doc["flowsiem"]["evidence"][0]
    assert ev["observed"] == 4.6e9 and ev["baseline"] == 3.1e7 and ev["unit"] == "bytes"
    weak = Alert(rule=_spec(severity="low"), source_ip="10.0.0.6", message="m", evidence=[], score=0.0)
    assert 0 <= weak.risk_score < a.risk_score <= 100
    assert "destination" not in weak.to_ecs()


def test_devices_rows_one_per_device():
    s1, s2 = _spec(), _spec(id="y.test", family="cnc", severity="critical")
    al = [Alert(s1, "10.0.0.5", "strong", [], 1.0), Alert(s2, "10.0.0.5", "stronger", [], 1.0),
          Alert(s1, "10.0.0.9", "other", [], 0.5)]
    rows = devices(al)
    assert [r["ip"] for r in rows] == ["10.0.0.5", "10.0.0.9"]
    assert rows[0]["families"] == "cnc;exfiltration" and rows[0]["evidence"] == "stronger"
    assert rows[0]["rules"] == "x.test;y.test" and rows[0]["alerts"] == 2
    assert rows[0]["severity"] == "critical" and rows[1]["severity"] == "high"


def test_notices_rank_below_actionable_alerts_and_add_no_family():
    """Severity means evidence: a device with a medium alert ranks above one with only a strong
    notice, and a notice of another family does not add that family to an actionable device."""
    med, high = _spec(severity="medium"), _spec(id="y.test", family="cnc", severity="high")
    al = [Alert(med, "10.0.0.5", "medium, weak", [], 0.0),
          Alert(high, "10.0.0.5", "a notice", [], 1.0, severity="low"),
          Alert(high, "10.0.0.7", "only a notice", [], 1.0, severity="low")]
    rows = devices(al)
    assert [(r["ip"], r["severity"]) for r in rows] == [("10.0.0.5", "medium"), ("10.0.0.7", "low")]
    assert rows[0]["families"] == "exfiltration" and rows[1]["families"] == "cnc"
    assert al[1].to_ecs()["event"]["severity"] == 21 and al[1].to_ecs()["flowsiem"]["severity"] == "low"
    assert not al[1].actionable and al[0].actionable


def test_a_relay_beacon_folds_into_its_botnet_finding():
    """The channel decides the family: a botnet relay's own check-in with the C2 is part of the
    botnet finding (a notice naming it), not a second family; DNS stays C&C over DNS, and a host
    with no botnet finding keeps its beacon in cnc."""
    from flowsiem.rules.attribution import fold

    hub = _spec(id="botnet.coordinated_group", family="botnet", severity="medium")
    beacon = _spec(id="cnc.beacon", family="cnc", severity="medium", folds_into="botnet")
    al = [Alert(hub, "10.0.0.9", "polled by 4 hosts", [], 1.0),
          Alert(beacon, "10.0.0.9", "beacon", [], 1.0, destination_ip="203.0.113.7", example_port=443),
          Alert(beacon, "10.0.0.9", "DNS beacon", [], 1.0, destination_ip="198.51.100.1", example_port=53),
          Alert(beacon, "10.0.0.5", "beacon of a lone host", [], 1.0, destination_ip="203.0.113.7", example_port=443)]
    fold(al)
    assert al[1].severity_name == "low" and "botnet.coordinated_group" in al[1].message
    assert al[0].related == ["203.0.113.7"]
    assert al[2].actionable and al[3].actionable
    fams = {r["ip"]: r["families"] for r in devices(al)}
    assert fams == {"10.0.0.9": "botnet;cnc", "10.0.0.5": "cnc"}  # cnc on .9 only by its DNS evidence
    fold(al[1:2] + al[3:])  # no botnet finding at all: nothing folds
    assert al[3].actionable


def test_a_resolver_carrying_a_dns_tunnel_is_the_tunnels_channel():
    """A host tunnelling data through an outside resolver is also seen querying a new resolver:
    that is the tunnel's channel (a notice naming it), while DNS to another resolver on the same
    host is separate evidence and stays C&C over DNS."""
    from flowsiem.rules.attribution import fold

    tunnel = _spec(id="exfiltration.dns_tunnel", family="exfiltration", severity="high")
    new = _spec(id="cnc.new_resolver", family="cnc", severity="medium", folds_into="exfiltration")
    al = [Alert(tunnel, "10.0.0.5", "tunnel", [], 1.0, destination_ip="198.51.100.1", example_port=53),
          Alert(new, "10.0.0.5", "new resolver", [], 1.0, destination_ip="198.51.100.1", example_port=53),
          Alert(new, "10.0.0.5", "another resolver", [], 1.0, destination_ip="203.0.113.9", example_port=53)]
    fold(al)
    assert al[1].severity_name == "low" and "exfiltration.dns_tunnel" in al[1].message
    assert al[2].actionable
    assert devices(al)[0]["families"] == "cnc;exfiltration"
    fold([al[0], al[2]])  # different resolver only: nothing folds
    assert al[2].actionable and devices(al[:2])[0]["families"] == "exfiltration"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "flowsiem.cli", *map(str, args)], capture_output=True, text=True)


def test_rules_command_lists_every_rule():
    r = _cli("rules")
    assert r.returncode == 0, r.stderr
    for rid in load_rules():
        assert rid.split(".")[0] in r.stdout


def test_detect_without_profile_is_a_clear_error(tmp_path):
    (tmp_path / "t.csv").write_text("timestamp,src_ip,dst_ip,proto,port,up_bytes,down_bytes\n1,10.0.0.1,10.0.0.2,tcp,443,1,2\n")
    r = _cli("detect", tmp_path / "t.csv", "--baseline", tmp_path / "nothing", "--out", tmp_path / "o")
    assert r.returncode == 2 and "run `flowsiem profile` first" in r.stderr and "Traceback" not in r.stderr
