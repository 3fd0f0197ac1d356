"""Named scenarios: which anomaly families to inject, how strongly, and how much benign drift."""

from __future__ import annotations

from dataclasses import dataclass, field

# anomaly kinds per family (truth.json "family" / "kind")
FAMILY_KINDS: dict[str, tuple[str, ...]] = {
    "botnet": ("p2p_mesh", "star", "slow_star", "coordinated_beacon"),
    "exfiltration": ("https_upload", "dns_tunnel"),
    "cnc": ("dns_new_resolver", "dns_off_hours"),
    "external_abuse": ("flood", "bulk_download", "off_hours", "unusual_origin", "low_and_slow", "deep_night",
                       "brute_force"),
}

# benign look-alikes (truth.json "benign" kind). The world's routines are present on both days
# (details.days == "both"); the others are the test day's changes (details.days == "test").
WORLD_BENIGN_KINDS: tuple[str, ...] = (
    "periodic_updater", "ntp_sync", "monitoring_poller", "nas_backup", "cloud_sync", "public_resolver",
    "night_worker", "search_crawler", "uptime_monitor", "evening_client", "ssh_admin",
)
PLANNED_BENIGN_KINDS: tuple[str, ...] = (
    "new_device", "volume_increase", "new_popular_destinations", "late_worker", "night_worker",
    "busy_external_client", "new_cdn_addresses", "periodic_updater", "monitoring_poller", "cloud_backup",
    "public_resolver", "shared_service", "evening_client", "late_night_client",
)
BENIGN_KINDS: tuple[str, ...] = tuple(dict.fromkeys(PLANNED_BENIGN_KINDS + WORLD_BENIGN_KINDS))


@dataclass(frozen=True)
class Scenario:
    """A recipe for the test day.

    families: family -> (min, max) number of distinct kinds of that family to inject.
    pick_families: when set, (min, max) number of the listed families actually used (drawn per seed).
    strength: range of the per-anomaly strength s in [0, 1] (0 = stealthiest, 1 = most obvious);
        each anomaly draws its own s, and every knob (rates, volumes, periods, jitter, size
        regularity, group size) is interpolated from it, then jittered.
    benign: benign change kind -> (min, max) count.
    """

    name: str
    description: str
    families: dict[str, tuple[int, int]] = field(default_factory=dict)
    pick_families: tuple[int, int] | None = None
    strength: tuple[float, float] = (0.0, 1.0)
    benign: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.families


# every scenario, clean included, has the world's routines (updaters, NTP, monitoring, backups, sync,
# crawlers, uptime monitors, evening clients) and a dose of the test day's look-alikes
_LIGHT_BENIGN = {"new_device": (1, 2), "volume_increase": (1, 2), "new_popular_destinations": (1, 2),
                 "late_worker": (0, 1), "night_worker": (0, 1), "busy_external_client": (1, 2),
                 "new_cdn_addresses": (2, 5), "periodic_updater": (0, 1), "monitoring_poller": (0, 1),
                 "cloud_backup": (0, 1), "public_resolver": (0, 1), "shared_service": (0, 1),
                 "evening_client": (1, 2), "late_night_client": (0, 1)}
_DRIFT_BENIGN = {"new_device": (2, 4), "volume_increase": (4, 8), "new_popular_destinations": (5, 10),
                 "late_worker": (2, 4), "night_worker": (1, 2), "busy_external_client": (3, 6),
                 "new_cdn_addresses": (5, 12), "periodic_updater": (1, 2), "monitoring_poller": (0, 1),
                 "cloud_backup": (1, 2), "public_resolver": (1, 2), "shared_service": (1, 2),
                 "evening_client": (2, 4), "late_night_client": (1, 2)}

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("obvious", "strong anomalies of every family (botnet, exfiltration, C&C over DNS, external abuse) + light benign drift",
             families={"botnet": (2, 3), "exfiltration": (2, 2), "cnc": (2, 2), "external_abuse": (3, 5)},
             strength=(0.7, 1.0), benign=_LIGHT_BENIGN),
    Scenario("stealthy", "weak but real anomalies of every family (low rates, small volumes, jittery beacons) + light benign drift",
             families={"botnet": (1, 2), "exfiltration": (1, 2), "cnc": (1, 2), "external_abuse": (1, 3)},
             strength=(0.0, 0.3), benign=_LIGHT_BENIGN),
    Scenario("drift", "noisy day: many benign look-alikes (new devices and agents, busier hosts, new sites, late and night workers, backups, shared services, busy clients) + anomalies of 2-3 families",
             families={"botnet": (1, 1), "exfiltration": (1, 1), "cnc": (1, 1), "external_abuse": (1, 2)},
             pick_families=(2, 3), strength=(0.25, 0.8), benign=_DRIFT_BENIGN),
    Scenario("clean", "no anomaly: ordinary day-to-day variation and benign look-alikes only",
             benign=_LIGHT_BENIGN),
    Scenario("botnet", "botnet only: peer-to-peer links, relays (star, slow SMB star) and coordinated beacons, random strength",
             families={"botnet": (2, 3)}, benign=_LIGHT_BENIGN),
    Scenario("exfil", "exfiltration only: HTTPS uploads (day or night) and DNS tunnelling, random strength",
             families={"exfiltration": (2, 2)}, benign=_LIGHT_BENIGN),
    Scenario("cnc", "C&C over DNS only: periodic DNS to an outside resolver (1-3 hosts) and DNS at silent hours, random strength",
             families={"cnc": (2, 2)}, benign=_LIGHT_BENIGN),
    Scenario("abuse", "external abuse of the public servers only: floods, bulk downloads, off-hours, unusual origins, low-and-slow, deep-night, brute force",
             families={"external_abuse": (2, 4)}, benign=_LIGHT_BENIGN),
)}
