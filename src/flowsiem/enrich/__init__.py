"""Enrichment of unique IP addresses (country, ASN). See :mod:`flowsiem.enrich.geo`."""

from flowsiem.enrich.geo import PRIVATE, SCHEMA, UNKNOWN, GeoResolver

__all__ = ["GeoResolver", "SCHEMA", "PRIVATE", "UNKNOWN"]
