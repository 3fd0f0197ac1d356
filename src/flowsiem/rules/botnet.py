"""botnet rules (see rules.yaml)."""

from __future__ import annotations
