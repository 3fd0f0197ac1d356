"""Rules as data: what to detect lives in rules.yaml, how it runs lives in one module per family.

A rule is a RuleSpec (id, name, family, ATT&CK technique, severity, risk, thresholds, allowlist;
loaded from the shipped rules.yaml, optionally overridden by the user's --rules file) plus a
function registered with @rule("<id>") in its family module:

    @rule("botnet.new_internal_peers")
    def new_internal_peers(ctx: DetectContext, spec: RuleSpec) -> list[Alert]:
        ...  # build an Ibis expression over ctx.flows / ctx.edges / ctx.base(...), run it,
             # score the (small) result in Python, return Alerts with baseline-vs-today evidence

Where things go: a new rule = an entry in rules.yaml + a function in the family's module.
A new family = a module here, imported in FAMILY_MODULES, and its category in FAMILIES.
"""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Callable

from ..alerts import FAMILIES, REFERENCES, SEVERITIES, RuleSpec
from ..errors import UsageError

FAMILY_MODULES = ("botnet", "exfiltration", "cnc", "external", "c2", "scans", "uploads")

SHIPPED_RULES = Path(__file__).with_name("rules.yaml")


class Allowlist:
    """Matches an address (and its ASN / organisation, when known) against a rule's allowlist."""

    def __init__(self, entries):
        self.nets, self.asns, self.orgs = [], set(), set()
        for e in entries or []:
            e = str(e).strip()
            if not e:
                continue
            if e.upper().startswith("AS") and e[2:].isdigit():
                self.asns.add(int(e[2:]))
            elif e.lower().startswith("org:"):
                self.orgs.add(e[4:].strip().lower())
            else:
                try:
                    self.nets.append(ipaddress.ip_network(e, strict=False))
                except ValueError:
                    raise UsageError(f"allowlist entry '{e}' is not an IP, CIDR, ASN (AS123) or org:NAME") from None

    def __bool__(self):
        return bool(self.nets or self.asns or self.orgs)

    def matches(self, ip: str | None, asn=None, org: str | None = None) -> bool:
        if ip:
            try:
                a = ipaddress.ip_address(ip)
                if any(a.version == n.version and a in n for n in self.nets):
                    return True
            except ValueError:
                pass
        if asn is not None and asn == asn and int(asn) in self.asns:  # asn == asn: not NaN
            return True
        return bool(org) and org.lower() in self.orgs


# --- loading --------------------------------------------------------------------------------

_FIELDS = {"id", "name", "family", "technique", "technique_name", "severity", "description",
           "false_positives", "thresholds", "enabled", "allowlist", "reference", "folds_into"}


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        # libyaml's parser when PyYAML has it: 20x faster than the pure-Python one, same documents
        data = yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except FileNotFoundError:
        raise UsageError(f"{path}: rules file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UsageError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rules") or [], (list, dict)):
        raise UsageError(f"{path}: expected a mapping with a 'rules' list")
    return data


def _as_list(rules) -> list[dict]:
    if isinstance(rules, dict):  # {id: {...}} form, handy for overrides
        return [{"id": k, **(v or {})} for k, v in rules.items()]
    return list(rules or [])


def load_rules(user_file: Path | None = None, disable: list[str] | None = None) -> dict[str, RuleSpec]:
    """The shipped rules, with the user's file merged over them by rule id.

    A user file may change any field of a shipped rule (thresholds are merged key by key),
    add rules for which a function exists, set `enabled: false`, and extend `allowlist`.
    A top-level `allowlist:` applies to every rule. `disable` takes rule ids or family names.
    """
    shipped = _read_yaml(SHIPPED_RULES)
    specs: dict[str, dict] = {}
    for r in _as_list(shipped.get("rules")):
        specs[r["id"]] = copy.deepcopy(r)
    global_allow: list[str] = list(shipped.get("allowlist") or [])
    if user_file:
        user = _read_yaml(Path(user_file))
        global_allow += list(user.get("allowlist") or [])
        for r in _as_list(user.get("rules")):
            rid = r.get("id")
            if not rid:
                raise UsageError(f"{user_file}: a rule without an 'id'")
            unknown = set(r) - _FIELDS
            if unknown:
                raise UsageError(f"{user_file}: rule {rid}: unknown field(s) {', '.join(sorted(unknown))}")
            base = specs.get(rid)
            if base is None:
                if rid not in REGISTRY:
                    raise UsageError(f"{user_file}: rule '{rid}' has no implementation "
                                     f"(known: {', '.join(sorted(specs))})")
                specs[rid] = copy.deepcopy(r)
                continue
            for k, v in r.items():
                if k == "thresholds":
                    unknown_t = set(v or {}) - set(base.get("thresholds", {}))
                    if unknown_t:
                        raise UsageError(f"{user_file}: rule {rid}: unknown threshold(s) {', '.join(sorted(unknown_t))}")
                    base.setdefault("thresholds", {}).update(v or {})
                elif k == "allowlist":
                    base["allowlist"] = list(base.get("allowlist") or []) + list(v or [])
                else:
                    base[k] = v
    out = {}
    for rid, r in specs.items():
        missing = {"id", "name", "family", "technique"} - set(r)
        if missing:
            raise UsageError(f"rule {rid}: missing field(s) {', '.join(sorted(missing))}")
        if r["family"] not in FAMILIES:
            raise UsageError(f"rule {rid}: family '{r['family']}' is not one of {', '.join(FAMILIES)}")
        if r.get("reference", "baseline") not in REFERENCES:
            raise UsageError(f"rule {rid}: reference must be one of {', '.join(REFERENCES)}")
        if r.get("folds_into") is not None and (r["folds_into"] not in FAMILIES or r["folds_into"] == r["family"]):
            raise UsageError(f"rule {rid}: folds_into must be another family ({', '.join(FAMILIES)})")
        if r.get("severity", "medium") not in SEVERITIES:
            raise UsageError(f"rule {rid}: severity must be one of {', '.join(SEVERITIES)}")
        spec = RuleSpec(**{k: v for k, v in r.items() if k in _FIELDS})
        spec.allowlist = list(spec.allowlist) + global_allow
        Allowlist(spec.allowlist)  # validate now, not mid-run
        out[rid] = spec
    for d in disable or []:
        hits = [s for s in out.values() if s.id == d or s.family == d]
        if not hits:
            raise UsageError(f"--disable: no rule or family '{d}'")
        for s in hits:
            s.enabled = False
    return out


# --- registry -------------------------------------------------------------------------------

REGISTRY: dict[str, Callable] = {}


def rule(rule_id: str):
    """Register the function implementing rule `rule_id`."""
    def deco(fn):
        REGISTRY[rule_id] = fn
        return fn
    return deco


def load_family_modules() -> None:
    import importlib

    for m in FAMILY_MODULES:
        importlib.import_module(f"{__name__}.{m}")
