"""Real public address ranges used by the simulator, so GeoIP/ASN enrichment gives real answers.

Every range below was checked against the geoip2fast 1.2.2 data shipped with flowsiem: addresses
sampled from each block resolve to the organisation named (wide CDN/cloud blocks resolve to several
countries of the same organisation, as anycast and regional ranges really do). Ranges are only *sampled* from: the simulator never claims a given
address hosts a given service today, only that the address belongs to that organisation's block.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Org:
    """An organisation whose addresses internal hosts visit over HTTPS."""

    name: str
    country: str
    head_cidrs: tuple[str, ...]  # narrow blocks the popular ("head") addresses come from
    tail_cidrs: tuple[str, ...]  # wider blocks for rarely visited ("tail") addresses
    head_ips: tuple[int, int]  # how many head addresses this org contributes (min, max)
    weight: float  # relative popularity of the org (head ordering and tail sampling)


# Popular destinations of a Portuguese company (the seed's top destinations are in these blocks).
DEST_ORGS: tuple[Org, ...] = (
    Org("GOOGLE", "US", ("142.250.184.0/24", "142.250.200.0/24", "142.250.201.0/24", "172.217.17.0/24",
                         "216.58.215.0/24"),
        ("142.250.0.0/15", "172.217.0.0/19", "216.58.192.0/19", "208.68.108.0/22", "199.36.154.0/23"),
        (2, 5), 1.0),
    Org("FACEBOOK", "PT/US", ("157.240.212.0/24", "179.60.193.0/24", "31.13.83.0/24"),
        ("157.240.192.0/18", "179.60.192.0/22", "31.13.64.0/18"), (2, 4), 0.8),
    Org("MEO (Servicos De Comunicacoes E Multimedia)", "PT", ("213.13.146.0/24", "62.28.254.0/24"),
        ("213.13.128.0/17", "62.28.0.0/16"), (1, 3), 0.6),
    Org("NOS Comunicacoes", "PT", ("88.157.217.0/24", "193.126.240.0/24"),
        ("88.157.192.0/19", "193.126.0.0/16"), (1, 3), 0.6),
    Org("TWITTER", "US", ("104.244.42.0/24",), ("104.244.42.0/24",), (1, 2), 0.45),
    Org("MICROSOFT", "US/NL", ("13.107.42.0/24", "13.107.21.0/24", "204.79.197.0/24", "20.190.160.0/24"),
        ("13.107.0.0/17", "204.79.197.0/24", "20.190.128.0/18"), (1, 3), 0.45),
    Org("AMAZON-02 (CloudFront)", "US", ("3.160.132.0/24", "13.32.1.0/24"),
        ("3.160.128.0/21", "13.32.1.0/24"), (1, 2), 0.35),
    Org("WIKIMEDIA", "US", ("185.15.58.0/24",), ("185.15.56.0/22",), (1, 1), 0.3),
    Org("Hetzner Online", "DE", ("176.9.67.0/24",), ("176.9.0.0/16",), (0, 1), 0.25),
    Org("SERVERSTACK", "NL", ("185.88.181.0/24",), ("185.88.180.0/22",), (0, 2), 0.25),
    Org("CLOUDFLARENET", "US", ("104.26.3.0/24", "104.16.1.0/24", "172.67.1.0/24"),
        ("104.16.0.0/13", "104.24.0.0/14", "172.67.0.0/16"), (1, 2), 0.35),
    Org("FCCN (RCTS)", "PT", ("193.137.20.0/24",), ("193.137.0.0/16",), (0, 1), 0.2),
    Org("Infocomunicacoes", "PT", ("185.31.158.0/24",), ("185.31.156.0/22",), (0, 1), 0.15),
    Org("Akamai", "DE/US", ("2.16.1.0/24", "23.52.1.0/24"), ("2.16.0.0/23", "23.52.0.0/22"), (0, 1), 0.2),
    Org("APPLE", "US", ("17.253.1.0/24",), ("17.253.0.0/20",), (0, 1), 0.15),
    Org("GITHUB", "US", ("140.82.112.0/24",), ("140.82.112.0/20",), (0, 1), 0.12),
    Org("FASTLY", "US", ("151.101.1.0/24",), ("151.101.0.0/16",), (0, 1), 0.15),
    Org("LINKEDIN", "US", ("108.174.10.0/24",), ("108.174.10.0/24",), (0, 1), 0.1),
    Org("AMAZON-02 (eu-west-1)", "IE", ("54.72.1.0/24", "52.210.1.0/24"), ("54.72.0.0/14", "52.208.0.0/13"),
        (0, 1), 0.12),
    Org("BBC", "GB", ("212.58.224.0/24",), ("212.58.224.0/19",), (0, 1), 0.08),
    Org("AS-SSI", "GB", ("45.57.1.0/24",), ("45.57.0.0/21",), (0, 1), 0.06),
    Org("Telefonica De Espana", "ES", ("80.58.1.0/24",), ("80.58.0.0/17", "195.235.0.0/22"), (0, 1), 0.08),
    Org("Universo Online", "BR", ("200.147.1.0/24",), ("200.147.0.0/16",), (0, 1), 0.06),
    Org("Reliance Jio", "IN", ("49.36.1.0/24",), ("49.32.0.0/12",), (0, 0), 0.02),
    Org("OVH SAS", "FR", ("51.38.1.0/24",), ("51.38.0.0/16",), (0, 0), 0.04),
    Org("Akamai Connected Cloud", "SG", ("139.162.1.0/24",), ("139.162.0.0/18",), (0, 0), 0.02),
    Org("Vodafone Portugal", "PT", ("148.69.1.0/24",), ("148.69.0.0/16", "213.30.0.0/17"), (0, 1), 0.1),
    Org("Claranet", "PT", ("195.22.1.0/24",), ("195.22.0.0/19",), (0, 0), 0.05),
)

# Where an attacker's servers live: never used by the clean day (VPS and "bulletproof" hosters).
ATTACKER_CIDRS: tuple[str, ...] = (
    "167.99.0.0/16",     # US DIGITALOCEAN
    "134.209.0.0/16",    # US DIGITALOCEAN
    "68.183.0.0/16",     # NL DIGITALOCEAN
    "46.101.0.0/16",     # GB DIGITALOCEAN
    "178.62.0.0/16",     # GB DIGITALOCEAN
    "159.89.0.0/19",     # DE DIGITALOCEAN
    "45.32.0.0/16",      # US AS-CHOOPA (Vultr)
    "92.222.0.0/16",     # FR OVH SAS
    "37.187.0.0/16",     # FR OVH SAS
    "62.210.0.0/21",     # FR Scaleway
    "172.105.0.0/17",    # CA Akamai Connected Cloud (Linode)
    "23.95.0.0/18",      # US ColoCrossing
    "185.225.1.0/24",    # HK M247
    "89.248.160.0/21",   # NL IP Volume
    "194.26.29.0/24",    # RU Media Land
    "176.123.0.0/21",    # MD Alexhost
    "141.98.10.0/23",    # LT Host Baltic
    "91.240.118.0/24",   # HK Chang Way
)

# Well-known public resolvers: a host sending DNS straight to one of them bypasses the company DNS.
PUBLIC_RESOLVERS: tuple[str, ...] = (
    "8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "208.67.222.222", "77.88.8.8",
    "114.114.114.114",
)

# Vendors whose agents (updaters, telemetry, endpoint protection) poll a cloud service on a timer:
# names (first word) of DEST_ORGS entries.
UPDATE_VENDORS: tuple[str, ...] = ("MICROSOFT", "GOOGLE", "AMAZON-02", "CLOUDFLARENET", "Akamai", "APPLE",
                                   "FASTLY", "GITHUB")

# Public NTP services' published addresses (time.google.com, time.cloudflare.com, time.windows.com,
# NIST time-a-g) ...
NTP_SERVERS: tuple[str, ...] = ("216.239.35.4", "216.239.35.8", "216.239.35.12", "162.159.200.1",
                                "162.159.200.123", "20.101.57.9", "129.6.15.28")
# ... and blocks where pool.ntp.org volunteers often live (hosting providers, a Portuguese university).
NTP_POOL_CIDRS: tuple[str, ...] = (
    "95.216.0.0/17",     # FI Hetzner
    "5.9.0.0/16",        # DE Hetzner
    "51.38.0.0/16",      # FR OVH SAS
    "213.251.128.0/18",  # FR OVH SAS
    "193.137.0.0/16",    # PT FCCN
)

# File sync / backup services (org, address blocks): OneDrive, Google Drive, Dropbox, iCloud.
SYNC_SERVICES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("OneDrive", "MICROSOFT", ("13.107.136.0/24", "40.97.0.0/16", "52.98.0.0/16")),
    ("Google Drive", "GOOGLE", ("142.250.0.0/16", "172.217.0.0/16")),
    ("Dropbox", "DROPBOX", ("162.125.0.0/20", "162.125.64.0/20")),
    ("iCloud", "APPLE", ("17.248.128.0/18",)),
)

# Uptime-monitoring services probing public web servers (UptimeRobot's Limestone Networks blocks,
# a probe network at ANEXIA, checks run from AWS eu-central-1).
MONITOR_CIDRS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("UptimeRobot", ("216.144.248.0/21", "69.162.124.0/24", "63.143.42.0/24")),
    ("probe network (ANEXIA)", ("178.255.152.0/24",)),
    ("synthetic checks (AWS eu-central-1)", ("54.93.0.0/16", "18.184.0.0/16", "3.68.0.0/14")),
)

# Clients of the public servers: Portuguese ISPs (residential) ...
PT_CLIENT_CIDRS: tuple[tuple[str, float], ...] = (
    ("85.240.0.0/13", 3.0),   # MEO
    ("188.80.0.0/14", 2.0),   # MEO
    ("2.80.0.0/14", 1.5),     # MEO
    ("82.154.0.0/15", 1.5),   # MEO (the seed's clients were in 82.155.121.0/24)
    ("176.78.0.0/15", 0.8),   # MEO
    ("37.189.0.0/16", 0.5),   # MEO
    ("188.250.0.0/15", 1.0),  # MEO
    ("89.152.0.0/14", 2.0),   # NOS
    ("89.180.0.0/15", 1.0),   # NOS
    ("94.132.0.0/15", 1.0),   # NOS
    ("95.92.0.0/14", 1.5),    # NOS
    ("81.84.0.0/16", 0.6),    # NOS
    ("83.132.0.0/16", 0.5),   # NOS
    ("213.22.0.0/16", 0.5),   # NOS
    ("109.48.0.0/14", 1.0),   # NOS
    ("89.114.0.0/15", 1.0),   # Vodafone PT
    ("94.60.0.0/14", 1.2),    # Vodafone PT
    ("148.63.0.0/16", 0.6),   # Vodafone PT
    ("77.54.0.0/16", 0.5),    # Vodafone PT
    ("87.103.0.0/17", 0.3),   # Vodafone PT
)
# ... some ordinary foreign residential clients ...
FOREIGN_CLIENT_CIDRS: tuple[tuple[str, float], ...] = (
    ("81.32.0.0/13", 1.0),    # ES Telefonica
    ("2.136.0.0/13", 0.8),    # ES Telefonica
    ("90.0.0.0/13", 0.8),     # FR Orange
    ("93.0.0.0/13", 0.5),     # FR SFR
    ("86.0.0.0/13", 0.6),     # GB Virgin Media
    ("79.0.0.0/13", 0.4),     # IT Telecom Italia
    ("46.189.0.0/17", 0.3),   # DE 1&1 Versatel
    ("31.184.0.0/18", 0.2),   # DE EWE-Tel
    ("177.0.0.0/15", 0.4),    # BR V tal
)
# ... search-engine crawlers (busy, flat 24 h rhythm, present every day) ...
CRAWLER_CIDRS: tuple[str, ...] = (
    "66.249.64.0/20",    # US GOOGLE (Googlebot)
    "40.77.166.0/23",    # US MICROSOFT (Bingbot)
    "157.55.32.0/21",    # US MICROSOFT (Bingbot)
    "185.191.171.0/24",  # GB SEMrush
    "5.255.224.0/21",    # RU YANDEX
)
# ... and origins that are unusual for a Portuguese company's public services.
UNUSUAL_CLIENT_CIDRS: tuple[str, ...] = (
    "5.16.0.0/14",       # RU ER-Telecom
    "95.24.0.0/13",      # RU PVimpelCom
    "115.239.0.0/17",    # CN Chinanet
    "36.110.0.0/17",     # CN China Networks Inter-Exchange
    "113.160.0.0/11",    # VN VNPT
    "175.45.176.0/22",   # KP Ryugyong-dong
    "194.26.29.0/24",    # RU Media Land
    "80.82.76.0/22",     # NL IP Volume
    "185.220.101.0/24",  # DE Tor exits
    "141.98.10.0/23",    # LT Host Baltic
    "176.123.0.0/21",    # MD Alexhost
    "91.240.118.0/24",   # HK Chang Way
    "41.216.0.0/19",     # CI MTN
    "190.2.0.0/20",      # AR NSS
)

# Where the company's public servers live (Portuguese business/hosting blocks), by /16 or so.
PUBLIC_SERVER_CIDRS: tuple[str, ...] = (
    "193.126.0.0/16",    # PT NOS
    "213.13.0.0/17",     # PT MEO
    "195.22.0.0/19",     # PT Claranet
    "185.31.156.0/22",   # PT Infocomunicacoes
    "193.136.0.0/16",    # PT FCCN
)

# A company that numbers its LAN with public addresses (universities do): FCCN's block.
PUBLIC_LAN_CIDR = "193.136.0.0/16"


# --- helpers ------------------------------------------------------------------------------------


def org_is(name: str, names) -> bool:
    """An org named exactly one of `names`, or one of its regions ("AMAZON-02 (CloudFront)")."""
    return any(name == n or name.startswith(n + " (") for n in names)


def net_bounds(cidr: str) -> tuple[int, int]:
    net = ipaddress.ip_network(cidr)
    return int(net.network_address), int(net.num_addresses)


def ip_str(value: int) -> str:
    return f"{(value >> 24) & 255}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def ip_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def random_in(rng: np.random.Generator, cidr: str, n: int = 1) -> np.ndarray:
    """n addresses (ints) inside cidr, avoiding .0 and .255 in the last octet."""
    base, size = net_bounds(cidr)
    out = base + rng.integers(0, size, n, dtype=np.int64)
    last = out & 255
    out = np.where(last == 0, out + 1, out)
    out = np.where(last == 255, out - 1, out)
    return out


def _is_ordinary_public(value: int) -> bool:
    ip = ipaddress.IPv4Address(value)
    return ip.is_global and not ip.is_multicast and (value & 255) not in (0, 255)


def random_public(rng: np.random.Generator, avoid: set[int], avoid_nets: list[tuple[int, int]]) -> int:
    """A random globally routable unicast address outside every catalogue block (for 'never seen')."""
    while True:
        value = int(rng.integers(1 << 24, 224 << 24))
        if value in avoid or not _is_ordinary_public(value):
            continue
        if any(base <= value < base + size for base, size in avoid_nets):
            continue
        return value


def catalogue_nets() -> list[tuple[int, int]]:
    """Every block the ordinary traffic can come from (a 'random public' address avoids all)."""
    cidrs: list[str] = []
    for org in DEST_ORGS:
        cidrs += list(org.head_cidrs) + list(org.tail_cidrs)
    cidrs += list(ATTACKER_CIDRS) + list(CRAWLER_CIDRS) + list(UNUSUAL_CLIENT_CIDRS)
    cidrs += [c for c, _ in PT_CLIENT_CIDRS] + [c for c, _ in FOREIGN_CLIENT_CIDRS]
    cidrs += list(PUBLIC_SERVER_CIDRS) + [PUBLIC_LAN_CIDR] + list(NTP_POOL_CIDRS)
    cidrs += [c for _, _, cs in SYNC_SERVICES for c in cs] + [c for _, cs in MONITOR_CIDRS for c in cs]
    cidrs += [ip + "/32" for ip in NTP_SERVERS]
    cidrs += [r + "/24" for r in (".".join(p.split(".")[:3]) + ".0" for p in PUBLIC_RESOLVERS)]
    return [net_bounds(c) for c in cidrs]
