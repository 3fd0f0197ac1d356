"""Which family a device belongs to when one finding is the means of another.

The channel decides the family, and a device is in two families only with separate evidence for
each. A relay of an internal botnet (a workstation the bots poll) also checks in with the C2
outside: that beacon is the group's way out, part of the botnet finding, not a second family.
A rule says so with `folds_into: <family>` in rules.yaml: when the same device has an alert of
that family at medium or more, this rule's alert becomes a low notice that names it, and its
destination joins that alert's related addresses. A DNS alert folds only into a finding on the
same resolver: a host tunnelling data through an outside resolver is flagged there as new, periodic
or silent-hours DNS too, and that is the tunnel's channel, not C&C; DNS to another resolver is C&C
over DNS, a family of its own.
"""

from __future__ import annotations

from .common import DNS_PORT


def fold(alerts: list) -> list:
    """The alerts, with those that are the means of another family's finding on the same device
    turned into notices pointing at it (in place; returned for chaining)."""
    owners: dict[tuple[str, str], list] = {}
    for a in alerts:
        if a.actionable:
            owners.setdefault((a.source_ip, a.rule.family), []).append(a)
    for a in alerts:
        target = a.rule.folds_into
        if not target or not a.actionable:
            continue
        found = owners.get((a.source_ip, target))
        if found and a.example_port == DNS_PORT:
            found = [b for b in found if b.destination_ip == a.destination_ip]
        if not found:
            continue
        main = max(found, key=lambda b: (b.severity_number, b.risk_score))
        a.severity = "low"
        a.message += f"; part of the {target} finding on this host ({main.rule.id}), not a family of its own"
        a.details["folded_into"] = main.rule.id
        for b in found:
            if a.destination_ip and a.destination_ip not in b.related:
                b.related.append(a.destination_ip)
    return alerts
