"""Behaviours added to the rules so that they generalise beyond the hand-built cases, each on a
small hand-made day (same helpers and style as test_hard_cases.py).

A device counts as flagged for a family when it has an alert of that family at medium severity
or more (`Alert.actionable`); low alerts are notices.

  1  botnet: a shared beacon of the hosts that already ran the same agent against the same
     company and service on the baseline day, now at a new address of that company, is a notice
     (deployed_software: routine_share / routine_alpha); strangers and new companies stay alerts
  2  DNS: a tunnel paced on a strict clock is still exfiltration when its volume is extreme
     (_not_polling); a longish-query poller at a few times its DNS volume stays C&C (tunnel_like)
  3  external bulk_download: a service with only a handful of clients (a VPN) is bounded by the
     largest of its own clients (beyond_few), while web scraping is still found
  4  external off_hours: one late session is a person; a client that comes back at deep-night
     hours is a pattern (_visits: min_visits / min_presence_hours), and so is one awake all night
     (_all_night: all_night_share), while a late worker is not, nor an evening user whose device
     trickles a few flows an hour through the night (_awake: awake_share)
  5  exfiltration upload_volume: a big upload to a new address of the company the host already
     syncs to in bulk is a notice (bulk_org); to a company it only browsed it is an alert
  6  external request_flood, repeat path: copies of one request to a login service its users
     barely touch are password guessing; varied sizes or a volume busy clients reach are not
  7  external request_flood, burst path: a busy working day a little above the busiest client's
     is not a burst (burst_share_baseline); an hour holding much of a client's day is
  8  cnc: lookups on a host busy in most seconds, or only in sessions, are "followed by a
     connection" by coincidence, which is not name resolution (dns.followed_share: follow_alpha,
     follow_control_windows); an updater resolving its server before each check-in is
  9  botnet: a company's popular websites make a new address of it on the same service possibly
     the network's software (a notice), not a port nobody used with it (deployed_software)
 10  cnc: an outside resolver no host queried, no public resolver service and in a company the
     network does not use, is medium without a rhythm; Quad9 the same way is a notice
     (cnc.new_resolver: public_resolvers)
 11  external unusual_origin: a client from a rare origin active around the clock at an even rate
     is found even where clients abroad put the clients' tail of night shares above any flat
     rhythm (the population's tail is no bar there: around_rate_ratio alone)
 12  external request_flood, extreme path: a busy office a few times the clean day's busiest client
     is within how far two days' maxima of a heavy-tailed population differ by chance (tail_index,
     maxima_ratio); a flood far beyond that is still found
 13  cnc dns_silent_hours: on a machine left on (its agent polls at night on both days), a short
     regular run of lone lookups -- seven, every 15 minutes, through one evening -- is C&C on its
     rhythm alone (min_events: the rhythm's chance already counts the gaps); as many lone lookups
     at random times are not
 14  external request_flood, burst path: the baseline's busiest client, an evening regular, three
     times busier through the same evening is its day-to-day variation (judged by its daily total);
     a regular that puts a flood into one hour of its ordinary day is a burst (a known client's
     busiest hour against its own habit: busiest_ratio x its own busiest-hour share); around path:
     a heavy evening into the first quiet hours is not around the clock (max_window_share); a
     visitor grown beyond the known clients' day-to-day change is judged by today's shape alone
 15  external off_hours: "unlike its own baseline day" is judged against how far the known clients'
     hours move from one day to the next (_hours_moved), not by the fence alone: a night-leaning
     regular a little further into the night is not news, a daytime regular turned night client is
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import DNS_SERVER, HOUR, NET, POPULAR, PUBLIC_SERVER, hosts, make_clients_day, make_office_day, rows, with_lookups
from test_hard_cases import _periodic, _random

MINUTE = 6000  # centiseconds


def _clip(d: pd.DataFrame) -> pd.DataFrame:
    return d.assign(timestamp=d.timestamp.clip(0, 24 * HOUR - 1)).sort_values("timestamp", kind="stable")


def _detect(tmp_path_factory, name, base, test, servers=None, servers_base=None):
    """profile(base[, servers_base]) then detect(test[, servers]) once for a module fixture."""
    from flowsiem.detect import DetectOptions, detect
    from flowsiem.profile import ProfileOptions, build_profile

    d = tmp_path_factory.mktemp(name)
    files = {"data": base, "test": test, "servers_data": servers_base, "servers": servers}
    for f, df in files.items():
        if df is not None:
            _clip(df.reset_index(drop=True)).to_parquet(d / f"{f}.parquet", index=False)
    sb = d / "servers_data.parquet" if servers_base is not None else None
    sv = d / "servers.parquet" if servers is not None else None
    build_profile(d / "data.parquet", d / "profile", servers=sb, options=ProfileOptions())
    res = detect(d / "test.parquet", d / "profile", d / "out", servers=sv, options=DetectOptions(examples=0))
    assert not res.errors, res.errors
    return res


def _of(res, ips, family=None, rule_id=None):
    return [a for a in res.alerts if a.source_ip in set(ips)
            and (family is None or a.rule.family == family) and (rule_id is None or a.rule.id == rule_id)]


def _flagged(res, family):
    """Devices an analyst must act on for `family`: an alert of medium severity or more."""
    return {a.source_ip for a in res.alerts if a.rule.family == family and a.actionable}


# --- 1  botnet: the same agent answering from a new address of its company ---------------------------------

H100 = hosts(100)
TV_YESTERDAY, TV_TODAY, TV_OTHER = "185.188.32.10", "185.188.33.20", "185.188.34.30"  # TeamViewer 185.188.32.0/22
HETZNER_NEW = "94.130.2.2"                                                            # Hetzner Online GmbH
TV_USERS = H100[:8]            # poll TeamViewer on tcp/5938 every 5 min on both days (8 % of the hosts)
TV_STRANGERS = H100[40:44]     # never reached TeamViewer; today poll a new TeamViewer address the same way
NEWCOMERS = [f"{NET}.{200 + i}" for i in range(4)]  # new today; poll a Hetzner address nobody used


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    base = make_office_day(seed=1, n_hosts=100, flows_per_host=(100, 200))
    test = make_office_day(seed=2, n_hosts=100, flows_per_host=(100, 200))

    def poll(hosts_, dst, seed):  # the agent resolves its vendor's name before some check-ins
        return [with_lookups(rows(_periodic(300, 0, 24, seed=seed + i), s, dst, port=5938, up=400, down=300),
                             share=0.3, seed=seed + i) for i, s in enumerate(hosts_)]
    base = pd.concat([base, *poll(TV_USERS, TV_YESTERDAY, 1)])
    test = pd.concat([test, *poll(TV_USERS, TV_TODAY, 50), *poll(TV_STRANGERS, TV_OTHER, 80),
                      *poll(NEWCOMERS, HETZNER_NEW, 90)])
    return _detect(tmp_path_factory, "agents", base, test)


def test_1_known_agent_at_a_new_address_of_its_company_is_a_notice(agents):
    """Remote-support and management agents (TeamViewer, RMM tools) poll their vendor on a timer
    from every machine they are installed on, and the vendor rotates the server addresses from
    day to day. The hosts that polled TeamViewer on tcp/5938 yesterday polling a new TeamViewer
    address on the same port today are the same software, not a botnet -- even though TeamViewer
    is a company only 8 % of the hosts use (below familiar_host_share, so only the routine overlap
    makes it a notice)."""
    botnet = _of(agents, TV_USERS, family="botnet")
    assert {a.rule.id for a in botnet} == {"botnet.common_beacon", "botnet.coordinated_group"}
    assert {a.source_ip for a in botnet} == set(TV_USERS)
    for a in botnet:
        assert a.severity_name == "low", (a.rule.id, a.source_ip, a.message)
        assert "already reached TeamViewer" in a.message and "tcp/5938" in a.message
    beacon = [a for a in botnet if a.rule.id == "botnet.common_beacon"]
    assert all(a.destination_ip == TV_TODAY and a.details["known_routine"] for a in beacon)


def test_1_new_pollers_of_a_company_stay_actionable(agents):
    """A C2 new today has no users yesterday. Hosts that never ran the agent taking up the same
    rhythm towards a new address -- of a company nobody uses (Hetzner, a common C2 host) or of
    the agent's own company (a hijacked or look-alike service) -- are a group acting together."""
    for group, dst in ((NEWCOMERS, HETZNER_NEW), (TV_STRANGERS, TV_OTHER)):
        beacon = _of(agents, group, rule_id="botnet.common_beacon")
        assert {a.source_ip for a in beacon} == set(group)
        assert all(a.actionable and a.destination_ip == dst and not a.details["known_routine"] for a in beacon)
        assert set(group) <= _flagged(agents, "botnet")
        assert all("already reached" not in a.message for a in _of(agents, group, family="botnet"))


# --- 2  DNS: a paced tunnel is data at an extreme volume; a modest poller is C&C ------------------------

H30 = hosts(30)
TUNNEL = H30[5]                 # 09-12 h: one 200-byte query per second to an outside resolver
POLLER = H30[6]                 # 08-18 h: one 100-byte query per minute to an outside resolver
TUNNEL_RESOLVER, C2_RESOLVER = "45.33.32.156", "94.130.1.1"


def _dns_office_day(seed):
    """The office day with ordinary ~65-byte DNS queries (~130 lookups per host per day)."""
    d = make_office_day(seed=seed, flows_per_host=(300, 500))
    dns = (d.port == 53).to_numpy()
    d.loc[dns, "up_bytes"] = np.random.default_rng(seed + 100).integers(55, 76, int(dns.sum()))
    return d


@pytest.fixture(scope="module")
def dns_day(tmp_path_factory):
    test = pd.concat([
        _dns_office_day(2),
        rows(_periodic(1, 9, 12, seed=7, jitter=0.02), TUNNEL, TUNNEL_RESOLVER, proto="udp", port=53, up=200, down=120),
        rows(_periodic(60, 8, 18, seed=8), POLLER, C2_RESOLVER, proto="udp", port=53, up=100, down=150),
    ])
    return _detect(tmp_path_factory, "dns", _dns_office_day(1), test)


def test_2_tunnel_paced_on_a_clock_is_still_exfiltration(dns_day):
    """DNS tunnelling tools (iodine, dnscat2) can pace their queries on a fixed interval to look
    like a timer; they still move data, so the volume is hundreds of times the host's usual DNS
    (2 MB in 3 h against ~8 kB a day) in queries three times longer than the network's. A clock
    alone must not turn that into 'C&C polling'."""
    (a,) = _of(dns_day, [TUNNEL], rule_id="exfiltration.dns_tunnel")
    assert a.actionable and a.destination_ip == TUNNEL_RESOLVER
    assert not _of(dns_day, [TUNNEL], family="cnc"), "a tunnel is the exfiltration rule's, not cnc's"


def test_2_modest_longish_dns_on_a_timer_is_cnc_not_exfiltration(dns_day):
    """C&C over DNS encodes a bot id in its names (queries somewhat longer than ordinary lookups)
    and polls on a timer: 600 queries a day is a few times a host's usual DNS volume, nowhere near
    a tunnel's. It is C&C (a new outside resolver on a machine rhythm), not data leaving."""
    cnc = _of(dns_day, [POLLER], family="cnc")
    assert {a.rule.id for a in cnc} & {"cnc.periodic_dns", "cnc.new_resolver"}
    assert any(a.actionable and a.destination_ip == C2_RESOLVER for a in cnc)
    assert not _of(dns_day, [POLLER], family="exfiltration")


# --- 3  bulk_download: a service with a handful of clients --------------------------------------------

VPN_SERVER = "200.0.0.12"
VPN_CLIENTS = ["85.240.1.1", "85.240.1.2", "85.240.1.3", "85.240.1.4"]  # 4 < min_service_clients
NEW_VPN = "85.240.1.9"      # new today: 30 tunnels of ~10 MB, like the VPN's clients
VPN_DUMP = "85.240.1.10"    # new today: 30 connections of ~50 MB on the VPN port
SCRAPER = "85.240.2.2"      # new today: 30 web requests of 15 MB (web clients fetch ~80 kB)


def _vpn(ip, seed, n=12, per=10_000_000):
    rng = np.random.default_rng(seed)
    return rows(_random(n, 8, 20, seed), ip, VPN_SERVER, proto="udp", port=4500,
                up=rng.integers(200_000, 900_000, n), down=rng.integers(int(per * 0.7), int(per * 1.3), n))


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    sbase = pd.concat([make_clients_day(seed=1), *[_vpn(c, 10 + i) for i, c in enumerate(VPN_CLIENTS)]])
    stest = pd.concat([make_clients_day(seed=2), *[_vpn(c, 20 + i) for i, c in enumerate(VPN_CLIENTS[:3])],
                       _vpn(NEW_VPN, 30, n=30), _vpn(VPN_DUMP, 32, n=30, per=50_000_000),
                       rows(_random(30, 10, 16, 31), SCRAPER, PUBLIC_SERVER, up=2000, down=15_000_000)])
    return _detect(tmp_path_factory, "downloads", make_office_day(seed=1), make_office_day(seed=2),
                   servers=stest, servers_base=sbase)


def test_3_vpn_tunnels_of_a_small_service_are_not_bulk_download(downloads):
    """An IPsec/IKE VPN (udp/4500) with a handful of remote workers carries megabytes per
    connection, a thousand times a web page. Too few clients to judge them against each other,
    but the largest of them says what a tunnel carries: a new remote worker moving ~10 MB per
    tunnel (300 MB in all, more than any client of the baseline day) is not mass retrieval."""
    assert not _of(downloads, VPN_CLIENTS + [NEW_VPN], rule_id="external_abuse.bulk_download")


def test_3_beyond_the_small_service_and_web_scraping_are_bulk_download(downloads):
    """The bound is the small service's own largest client, not an exemption: 50 MB per
    connection on the VPN port is far beyond any tunnel seen, and a web client fetching 15 MB per
    request where web clients fetch ~80 kB is scraping or dumping the hosted content."""
    got = {a.source_ip: a for a in _of(downloads, [VPN_DUMP, SCRAPER], rule_id="external_abuse.bulk_download")}
    assert set(got) == {VPN_DUMP, SCRAPER}
    assert all(a.actionable for a in got.values())
    assert "tcp/443" in got[SCRAPER].message, "the scraper is judged against the web clients"


# --- 4  off_hours: one late session is a person, coming back is a pattern -------------------------------

ONE_SESSION = "85.241.7.7"   # new: 30 flows in one 20-minute session, 03:50-04:10 (two clock hours)
COMES_BACK = "85.241.8.8"    # new: three 15-minute sessions of 15 flows at 01:30, 03:00 and 04:30
AWAKE = "85.241.9.9"         # new: 40 flows 20-24 h, 100 spread evenly over 00-07 h, 10 by day (a typical volume)
LATE = "85.241.10.10"        # new: 70 flows 19-24 h and 35 after midnight until 02:30 (a late worker)
LEFT_ON = "85.241.11.11"     # new: 40 flows an hour 22-24 h, then 2 an hour 00-07 h (a page left open)


def _session(ip, start, minutes, n, seed):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(start, start + minutes * MINUTE, n))
    return rows(ts, ip, PUBLIC_SERVER, up=rng.integers(800, 20000, n), down=rng.integers(7000, 150000, n))


def _session_clients(seed, n, net, start_h, end_h, minutes, flows):
    """n clients (82.155.<net>.x and on), each with one session of `minutes` starting between
    start_h and end_h, of flows[0] to flows[1] flows."""
    rng = np.random.default_rng(seed)
    return pd.concat([_session(f"82.155.{net + i // 200}.{i % 200 + 1}", int(rng.uniform(start_h, end_h) * HOUR),
                               minutes, int(rng.integers(*flows)), seed * 1000 + i) for i in range(n)])


def _evening_users(seed, n=80):
    """Home users after work (18-24 h), as real web audiences have: the evening is not rare."""
    return _session_clients(seed, n, 120, 18, 22, 90, (5, 30))


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    stest = pd.concat([make_clients_day(seed=2, n_clients=300), _evening_users(2),
                       _session(ONE_SESSION, 3 * HOUR + 50 * MINUTE, 20, 30, 1),
                       *[_session(COMES_BACK, int(h * HOUR), 15, 15, 2 + k) for k, h in enumerate((1.5, 3.0, 4.5))],
                       _session(AWAKE, 20 * HOUR, 4 * 60, 40, 5), _session(AWAKE, 0, 7 * 60, 100, 6),
                       _session(AWAKE, 10 * HOUR, 6 * 60, 10, 7),
                       _session(LATE, 19 * HOUR, 5 * 60, 70, 8), _session(LATE, 0, 150, 35, 9),
                       *[_session(LEFT_ON, h * HOUR, 60, 40 if h >= 22 else 2, 10 + h) for h in (*range(7), 22, 23)]])
    return _detect(tmp_path_factory, "night", make_office_day(seed=1), make_office_day(seed=2),
                   servers=stest, servers_base=pd.concat([make_clients_day(seed=1, n_clients=300), _evening_users(1)]))


def test_4_one_deep_night_session_is_a_person(night):
    """People do visit a web site at 4 am (insomnia, a night shift, a baby): one session of a few
    minutes, even one that straddles two clock hours (so it passes min_active_hours), is a
    person. Hours alone are evidence only when the client comes back or stays for hours."""
    assert not _of(night, [ONE_SESSION], family="external_abuse")


def test_4_a_client_that_keeps_coming_back_at_night_is_flagged(night):
    """Automated probing and exploitation of public services is scheduled when nobody watches:
    a client that returns three times between 01 and 05 h, and never in the day, is a pattern
    (web analytics count a new visit after 30 minutes of silence)."""
    (a,) = _of(night, [COMES_BACK], rule_id="external_abuse.off_hours")
    assert a.actionable and "deep night" in a.details["cues"]


def test_4_a_client_awake_all_night_is_flagged_and_a_late_worker_is_not(night):
    """Steady use through 02-05 h is not a person's: people sleep. A client active in (nearly)
    every hour the clients hardly use, with a third of its flows in the evening (so not 'all of it
    in the deep night') and an ordinary volume on one port (neither heavy nor probing), was missed;
    a late worker whose night ends at 02:30 covers the start of the night only."""
    (a,) = _of(night, [AWAKE], rule_id="external_abuse.off_hours")
    assert a.actionable and a.details["cues"] == ["all night"], a.message
    assert not _of(night, [LATE], family="external_abuse")


def test_4_an_evening_user_whose_device_trickles_through_the_night_is_not_awake(night):
    """A page left open or an app syncing in the background keeps a few flows an hour going
    through an evening user's night. Counting every hour with a flow as awake made such a user
    'awake all night' (scale-3 evening clients: 400-960 flows an hour in the evening, 2-6 an hour
    at night); awake means at least awake_share of the client's busiest hour."""
    assert not _of(night, [LEFT_ON], family="external_abuse")


# --- 5  upload_volume: the host's bulk sync company at a new address ------------------------------------

SYNCER = H30[3]     # baseline: 40 MB to Dropbox (its sync); today 200 MB to a new Dropbox address, 10-16 h
BROWSER = H30[8]    # baseline: 6 small requests to Hetzner (5 kB up); today 200 MB to a new Hetzner address
DBX_YESTERDAY, DBX_TODAY = "162.125.19.131", "162.125.6.1"
HZ_YESTERDAY, HZ_TODAY = "94.130.1.1", "94.130.2.2"


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    # Volumes sit between the host's own bar (2x its whole baseline day: ~83 MB for the syncer)
    # and "extreme" (10x the peers' 99th percentile of a whole day: ~300 MB here), so that where
    # the data went decides the severity.
    base = pd.concat([make_office_day(seed=1),
                      rows(_random(40, 9, 18, 1), SYNCER, DBX_YESTERDAY, up=1_000_000, down=20_000),
                      rows(_random(6, 9, 18, 2), BROWSER, HZ_YESTERDAY, up=800, down=40_000)])
    test = pd.concat([make_office_day(seed=2),
                      rows(_random(100, 10, 16, 3), SYNCER, DBX_TODAY, up=2_000_000, down=30_000),
                      rows(_random(100, 10, 16, 4), BROWSER, HZ_TODAY, up=2_000_000, down=30_000)])
    return _detect(tmp_path_factory, "uploads", base, test)


def test_5_bulk_sync_to_a_new_address_of_its_company_is_a_notice(uploads):
    """Backup and sync clients (Dropbox, OneDrive, a backup provider) send a host's data to
    whichever of their provider's addresses answers today. A host that already sent its provider
    more than nearly any host sends one destination in a day is syncing, in its working hours,
    when a bigger batch goes to a new address of that provider."""
    (a,) = _of(uploads, [SYNCER], rule_id="exfiltration.upload_volume")
    assert a.severity_name == "low", a.message
    assert a.destination_ip == DBX_TODAY and a.details["new_address_for_host"] and not a.details["extreme"]
    assert "DROPBOX" in a.message and "in bulk" in a.message


def test_5_same_upload_to_a_company_only_browsed_stays_actionable(uploads):
    """Having browsed a company's site is no reason to send it 200 MB: the same volume to a new
    address of a hosting company the host only made a few small requests to is data leaving."""
    (a,) = _of(uploads, [BROWSER], rule_id="exfiltration.upload_volume")
    assert a.actionable and a.destination_ip == HZ_TODAY and not a.details["extreme"]
    assert "in bulk" not in a.message


# --- 6  request_flood, repeat path: copies of one request to a service its users barely touch -------------

SSH_SERVER = "200.0.0.22"
SSH_ADMINS = ["85.242.1.1", "85.242.1.2", "85.242.1.3"]   # a handful of admins: 5-10 SSH logins a day
GUESSER = "85.242.9.9"     # new: 150 logins of near-identical size (failed passwords) over 10 h
CHATTY = "85.242.9.10"     # new: the same 150 connections to SSH, sizes as varied as people's
WEB_REPEAT = "85.242.9.11"  # new: 150 identical web requests, within twice the busiest web client


def _ssh(ip, seed, n, cv=None):
    rng = np.random.default_rng(seed)
    up = (rng.normal(2400, 2400 * cv, n) if cv is not None else rng.integers(500, 60000, n)).clip(200).astype(int)
    return rows(_random(n, 8, 18, seed), ip, SSH_SERVER, port=22, up=up, down=rng.integers(2000, 4000, n))


@pytest.fixture(scope="module")
def logins(tmp_path_factory):
    admins = lambda s: [_ssh(c, s + i, 5 + 2 * i) for i, c in enumerate(SSH_ADMINS)]  # noqa: E731
    rng = np.random.default_rng(7)
    stest = pd.concat([make_clients_day(seed=2), *admins(20), _ssh(GUESSER, 40, 150, cv=0.03), _ssh(CHATTY, 41, 150),
                       rows(_random(150, 8, 18, 42), WEB_REPEAT, PUBLIC_SERVER, up=1500,
                            down=rng.integers(7000, 9000, 150))])
    return _detect(tmp_path_factory, "logins", make_office_day(seed=1), make_office_day(seed=2),
                   servers=stest, servers_base=pd.concat([make_clients_day(seed=1), *admins(10)]))


def test_6_password_guessing_on_a_quiet_login_service_is_a_flood(logins):
    """A login service has a few users who connect a handful of times a day; 150 connections
    whose requests are copies of each other (a failed password is the same exchange every time)
    are password guessing even though 150 is an ordinary day for a web client."""
    (a,) = _of(logins, [GUESSER], rule_id="external_abuse.request_flood")
    assert a.actionable and a.details["path"] == "repeat"
    assert "tcp/22" in a.message


def test_6_varied_or_ordinary_repeats_are_not(logins):
    """The cue is the copies on a service whose users barely touch it: the same number of SSH
    connections with sizes as varied as people's work (file transfers, sessions), or identical
    requests to the web server at a volume its busy clients reach, are not password guessing."""
    assert not _of(logins, [CHATTY, WEB_REPEAT], rule_id="external_abuse.request_flood")


# --- 7  request_flood, burst path: a busy working day is not a burst ----------------------------------------

REGULAR = "82.155.110.1"   # the busiest client of both days: 600 requests spread over 08-18 h
ABOVE = "85.243.1.1"       # new: 1,100 requests over 09:30-16:30 (1.8x the busiest's day, 2.2x its busiest hour)
SHORT = "85.243.1.2"       # new: 400 requests within 10:00-11:30 (an ordinary daily total for the busiest)


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    regular = lambda s: _session(REGULAR, 8 * HOUR, 600, 600, s)  # noqa: E731
    stest = pd.concat([make_clients_day(seed=2), regular(2), _session(ABOVE, int(9.5 * HOUR), 7 * 60, 1100, 3),
                       _session(SHORT, 10 * HOUR, 90, 400, 4)])
    return _detect(tmp_path_factory, "busy", make_office_day(seed=1), make_office_day(seed=2),
                   servers=stest, servers_base=pd.concat([make_clients_day(seed=1), regular(1)]))


def test_7_a_busy_working_day_above_the_busiest_is_not_a_burst(busy):
    """Its busiest hour is beyond twice the busiest client's, but only because its whole working
    day is busier (a seventh of it in that hour): day-to-day variation of the busiest clients,
    judged by its daily total, which is below the extreme bar. A client that puts most of its day
    into 90 minutes is a burst."""
    assert not _of(busy, [ABOVE, REGULAR], family="external_abuse")
    (a,) = _of(busy, [SHORT], rule_id="external_abuse.request_flood")
    assert a.actionable and a.details["path"] == "burst"


# --- 8  cnc: lookups "followed" on a host busy every second prove nothing ------------------------------

BUSY_HOST, UPDATER, IN_SESSIONS = H30[7], H30[8], H30[9]
BUSY_C2, QUAD9, SESSION_C2 = "94.130.1.2", "9.9.9.9", "94.130.1.3"  # Hetzner addresses nobody queried; a public resolver


def _busy_all_day(seed):
    """A host with a connection in about two seconds of three from 08 to 18 h (a heavy client)."""
    return rows(_random(40_000, 8, 18, seed), BUSY_HOST, POPULAR[0], up=800, down=4000)


def _sessions(seed):
    """08-18 h: sessions of 5-20 minutes with gaps of 5-25 minutes (about 45 % of the seconds)."""
    rng, t, out = np.random.default_rng(seed), 8 * HOUR, []
    while t < 18 * HOUR:
        length = int(rng.uniform(5, 20) * MINUTE)
        out.append((t, t + length))
        t += length + int(rng.uniform(5, 25) * MINUTE)
    return out


def _sessions_day(seed):
    """A connection every second through each session, nothing in between."""
    ts = np.concatenate([np.arange(a, b, 100) for a, b in _sessions(seed)])
    return rows(ts, IN_SESSIONS, POPULAR[1], up=600, down=3000)


def _while_in_session(ts, seed):
    return ts[np.any([(ts >= a) & (ts < b) for a, b in _sessions(seed)], axis=0)]


@pytest.fixture(scope="module")
def lookups(tmp_path_factory):
    polls = _periodic(300, 8, 18, seed=21, jitter=0.02)
    test = pd.concat([
        _dns_office_day(2), _busy_all_day(2),
        rows(_periodic(90, 8, 18, seed=20, jitter=0.05), BUSY_HOST, BUSY_C2, proto="udp", port=53, up=90, down=160),
        # an updater that finds its server through Quad9 before every check-in
        rows(polls, UPDATER, QUAD9, proto="udp", port=53, up=70, down=120),
        rows(polls + 100, UPDATER, POPULAR[3], up=900, down=5000),
        # an implant that polls its resolver every minute only while the user works (sessions)
        _sessions_day(2),
        rows(_while_in_session(_periodic(60, 8, 18, seed=22, jitter=0.02), 2), IN_SESSIONS, SESSION_C2,
             proto="udp", port=53, up=90, down=160),
    ])
    base = pd.concat([_dns_office_day(1), _busy_all_day(1), _sessions_day(1)])
    return _detect(tmp_path_factory, "lookups", base, test)


def test_8_lookups_on_a_busy_host_are_not_name_resolution(lookups):
    """A host with a connection in most seconds has one within three seconds of nearly any
    instant: its C&C lookups look 'followed by a connection' by coincidence. Counted against
    that chance (each second busy or not), they are not, and the new resolver on a machine
    rhythm stays an alert."""
    (a,) = _of(lookups, [BUSY_HOST], rule_id="cnc.new_resolver")
    assert a.actionable and a.destination_ip == BUSY_C2, a.message
    assert "followed by a connection" not in a.message


def test_8_lookups_only_while_the_user_is_busy_are_not_name_resolution(lookups):
    """An implant that polls only while the machine is in use (sessions of constant activity):
    every lookup falls in a busy session, so a connection follows it, far more often than the
    hour's busy share (under half) would say. The seconds just before each lookup are about as
    busy: the session, not the lookup, brings the connections. The alert stays."""
    (a,) = _of(lookups, [IN_SESSIONS], rule_id="cnc.new_resolver")
    assert a.actionable and a.destination_ip == SESSION_C2, a.message


def test_8_lookups_each_followed_by_a_check_in_are_name_resolution(lookups):
    """An updater resolving its server through a public resolver before each check-in: a rhythm
    to a new resolver, but every lookup leads to the connection it was for. A notice."""
    cnc = _of(lookups, [UPDATER], family="cnc")
    assert cnc and not any(a.actionable for a in cnc), [(a.rule.id, a.severity_name) for a in cnc]
    assert any("followed by a connection" in a.message for a in cnc)


# --- 9  botnet: a company's popular websites do not make every port of it the network's software -------

H60 = hosts(60)
OVH_SITE, OVH_AGENT, OVH_C2 = "92.222.115.5", "92.222.115.77", "92.222.115.234"  # OVH SAS addresses
OVH_READERS = H60[:30]          # browse a site hosted at OVH on tcp/443 on both days (half the hosts)
SAME_SERVICE = H60[40:44]       # today poll a new OVH address on tcp/443, as software hosted there would
NEW_PORT = H60[50:54]           # today poll another new OVH address on tcp/8443, a port nobody used with OVH


@pytest.fixture(scope="module")
def hosting(tmp_path_factory):
    def readers(seed):
        return [rows(_random(15, 9, 17, seed + i), s, OVH_SITE, up=700, down=20_000) for i, s in enumerate(OVH_READERS)]

    def poll(hosts_, dst, port, seed):
        return [with_lookups(rows(_periodic(300, 0, 24, seed=seed + i), s, dst, port=port, up=500, down=900),
                             share=0.3, seed=seed + i) for i, s in enumerate(hosts_)]
    base = pd.concat([make_office_day(seed=1, n_hosts=60), *readers(100)])
    test = pd.concat([make_office_day(seed=2, n_hosts=60), *readers(200), *poll(SAME_SERVICE, OVH_AGENT, 443, 300),
                      *poll(NEW_PORT, OVH_C2, 8443, 400)])
    return _detect(tmp_path_factory, "hosting", base, test)


def test_9_new_address_of_a_familiar_company_on_its_service_is_a_notice(hosting):
    """Half the hosts reach OVH on tcp/443 every day: a few hosts polling a new OVH address on that
    service may be software the network runs there (a notice, as for the big clouds)."""
    beacon = _of(hosting, SAME_SERVICE, rule_id="botnet.common_beacon")
    assert {a.source_ip for a in beacon} == set(SAME_SERVICE)
    assert not any(a.actionable for a in beacon)
    assert all(a.details["service_host_share"] >= 0.4 for a in beacon)


def test_9_a_port_nobody_used_with_that_company_is_not_its_software(hosting):
    """The same company on tcp/8443, which no host used with it: popular websites do not make a
    rented server's new port the network's software. A group beaconing there is a botnet alert."""
    beacon = _of(hosting, NEW_PORT, rule_id="botnet.common_beacon")
    assert {a.source_ip for a in beacon} == set(NEW_PORT)
    assert all(a.actionable and a.destination_ip == OVH_C2 for a in beacon)
    assert all(a.details["organisation_host_share"] >= 0.4 and a.details["service_host_share"] == 0 for a in beacon)
    assert set(NEW_PORT) <= _flagged(hosting, "botnet")


# --- 10  cnc: a resolver no one uses, public or private, is itself the evidence -----------------------------

JITTERY_C2, HAND_SET, RENTED_NS_USER = H30[10], H30[11], H30[12]
UNKNOWN_NS, QUAD9_NS = "94.130.1.9", "9.9.9.9"   # a Hetzner address nobody queried; Quad9 (no host uses its company)
CLOUD_SITE, RENTED_NS = "18.194.10.1", "18.194.10.53"  # AMAZON-02: a site a third of the hosts use; an address nobody queried
CLOUD_READERS = H30[:10]
CAMPAIGN, TEAM = H30[13:16], H30[16:19]   # three implants on 114DNS; three colleagues who set Google DNS by hand


@pytest.fixture(scope="module")
def resolvers(tmp_path_factory):
    """Two hosts each send 14 lookups at random times (no rhythm to speak of), 01-23 h, to a resolver
    nobody queried on the baseline day: one to an address of a hosting company, one to Quad9."""
    def readers(seed):
        return [rows(_random(15, 9, 17, seed + i), s, CLOUD_SITE, up=700, down=20_000) for i, s in enumerate(CLOUD_READERS)]

    test = pd.concat([
        _dns_office_day(2), *readers(200),
        rows(_random(14, 1, 23, 31), JITTERY_C2, UNKNOWN_NS, proto="udp", port=53, up=90, down=160),
        rows(_random(14, 1, 23, 32), HAND_SET, QUAD9_NS, proto="udp", port=53, up=70, down=140),
        rows(_random(14, 1, 23, 33), RENTED_NS_USER, RENTED_NS, proto="udp", port=53, up=90, down=160),
        *[rows(_periodic(1500, 8, 19, seed=34 + i, jitter=0.55), h, "114.114.114.114", proto="udp", port=53,
               up=80, down=150) for i, h in enumerate(CAMPAIGN)],
        *[rows(_random(25, 8, 19, 37 + i), h, "8.8.8.8", proto="udp", port=53, up=80, down=150)
          for i, h in enumerate(TEAM)],
    ])
    return _detect(tmp_path_factory, "resolvers", pd.concat([_dns_office_day(1), *readers(100)]), test)


def test_10_an_unknown_resolver_needs_no_rhythm(resolvers):
    """An outside address that no host queried, that is no public resolver service and belongs to
    a company the network does not use answers DNS for its owner only: a name server of the
    attacker's, however irregular (jittered, slow) the lookups."""
    (a,) = _of(resolvers, [JITTERY_C2], rule_id="cnc.new_resolver")
    assert a.actionable and a.destination_ip == UNKNOWN_NS, a.message
    assert "no public resolver service" in a.message


def test_10_a_resolver_rented_in_a_cloud_the_network_browses_is_not_a_public_one(resolvers):
    """The same lookups to an Amazon address while a third of the hosts use a site at Amazon:
    browsing a company's websites does not make any of its addresses a public resolver, and a
    cloud rents machines to anyone -- the attacker's name server too. The old rule took the
    familiar company for a public resolver and gave a notice."""
    (a,) = _of(resolvers, [RENTED_NS_USER], rule_id="cnc.new_resolver")
    assert a.actionable and a.destination_ip == RENTED_NS, a.message
    assert a.details["organisation_host_share"] >= 0.3 and "AMAZON" in a.message.upper()


def test_10_weak_rhythms_of_several_hosts_on_one_resolver_add_up(resolvers):
    """Three hosts poll a public resolver on one badly jittered timer: no single host's gaps pass
    the bar of a machine rhythm (rhythm_alpha), but random lookups would agree so on all three
    hardly ever (Fisher). Each host whose own gaps are unlikely for a person (channel_alpha) is on
    that channel. The old rule needed one host past the bar and left three notices."""
    alerts = {a.source_ip: a for a in _of(resolvers, CAMPAIGN, rule_id="cnc.new_resolver")}
    assert set(alerts) == set(CAMPAIGN)
    p = {h: a.details["beacon"]["rhythm_p"] for h, a in alerts.items()}
    assert min(p.values()) > 1e-4, "no host is a machine rhythm on its own"
    joined = {h for h in CAMPAIGN if p[h] <= 0.01}
    assert len(joined) >= 2
    for h in joined:
        assert alerts[h].actionable and "together" in alerts[h].message, alerts[h].message


def test_10_colleagues_on_a_public_resolver_by_hand_stay_notices(resolvers):
    alerts = _of(resolvers, TEAM, rule_id="cnc.new_resolver")
    assert {a.source_ip for a in alerts} == set(TEAM)
    assert not any(a.actionable for a in alerts), [a.message for a in alerts]


def test_10_a_public_resolver_without_rhythm_is_a_notice(resolvers):
    """The same lookups to Quad9, a public resolver even though no host reaches its company: a
    resolver set by hand, a policy matter."""
    (a,) = _of(resolvers, [HAND_SET], rule_id="cnc.new_resolver")
    assert not a.actionable and a.destination_ip == QUAD9_NS, a.message
    assert "public resolver service" in a.message


# --- 11  unusual_origin: clients abroad keep their own day; a flat rhythm is still flat -----------------

FLAT_RARE = "5.16.183.108"   # RU: one request every 20 minutes, around the clock (72 over the day)


def _abroad(seed, n=40):
    """Clients whose day is the site's night (another continent): a session in 01-06 h each."""
    return _session_clients(seed, n, 140, 1, 5, 60, (20, 40))


@pytest.fixture(scope="module")
def abroad(tmp_path_factory):
    stest = pd.concat([make_clients_day(seed=2, n_clients=300), _abroad(2),
                       rows(_periodic(1200, 0, 24, seed=41, jitter=0.1), FLAT_RARE, PUBLIC_SERVER,
                            up=900, down=9000)])
    return _detect(tmp_path_factory, "abroad", make_office_day(seed=1), make_office_day(seed=2), servers=stest,
                   servers_base=pd.concat([make_clients_day(seed=1, n_clients=300), _abroad(1)]))


def test_11_a_flat_client_from_a_rare_origin_is_found_among_clients_abroad(abroad):
    """A tenth of the clients live in the site's night, so the clients' 95th percentile of
    quiet-hour share is near 1 and no flat rhythm (at most the quiet hours' share of the day) can
    pass it: the old bar missed this low-and-slow client. From a rare origin, a quiet-hour rate
    at least half its daytime rate is the cue (around_rate_ratio); the population's tail is only
    shown."""
    (a,) = _of(abroad, [FLAT_RARE], rule_id="external_abuse.unusual_origin")
    assert a.actionable and "low and slow" in a.message, a.message
    assert not _flagged(abroad, "external_abuse") - {FLAT_RARE}


# --- 12  request_flood, extreme path: the busiest client of a heavy-tailed population varies by chance ---

BUSY_OFFICE = "85.241.20.20"   # a partner's office behind one address: 2.5x the clean day's busiest, 08-18 h
FLOODER = "85.241.21.21"       # 30x the clean day's busiest, the same hours


def _office_hours(ip, n, seed):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.normal(13 * HOUR, 2.2 * HOUR, int(n)).clip(8 * HOUR, 18 * HOUR - 1).astype(np.int64))
    return rows(ts, ip, PUBLIC_SERVER, up=rng.integers(800, 20000, len(ts)), down=rng.integers(7000, 150000, len(ts)))


def _heavy_tailed_clients(seed, n=400):
    """Clients whose daily flows follow a Pareto tail (index 1.8), as web audiences do: a few
    offices, NATs and power users far beyond the rest."""
    rng = np.random.default_rng(seed)
    counts = np.ceil(6 * (1 + rng.pareto(1.8, n))).astype(int)
    return pd.concat([_office_hours(f"82.155.{160 + i // 200}.{i % 200 + 1}", c, seed * 1000 + i)
                      for i, c in enumerate(counts)]), int(counts.max())


@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    sbase, busiest = _heavy_tailed_clients(1)
    stest, _ = _heavy_tailed_clients(2)
    stest = pd.concat([stest, _office_hours(BUSY_OFFICE, 2.5 * busiest, 51), _office_hours(FLOODER, 30 * busiest, 52)])
    return _detect(tmp_path_factory, "heavy", make_office_day(seed=1), make_office_day(seed=2), servers=stest,
                   servers_base=sbase)


def test_12_a_busy_office_a_few_times_the_busiest_is_not_a_flood(heavy):
    """Two days of a Pareto-tailed population have busiest clients that differ by a Frechet ratio:
    with tail index 1.8, today's busiest exceeds yesterday's 2.5 times on about one day in ten.
    A fixed 2x bar called that a flood; the bar is now where chance ends (maxima_ratio at
    extreme_false_alarm_rate), while a flood thirty times the busiest is still one."""
    assert not _of(heavy, [BUSY_OFFICE], family="external_abuse")
    (a,) = _of(heavy, [FLOODER], rule_id="external_abuse.request_flood")
    assert a.actionable and a.details["path"] == "extreme", a.message
    assert "differ by chance up to" in a.message


def test_12_maxima_ratio_is_the_chance_two_days_busiest_differ_that_much():
    """maxima_ratio(alpha, rate): two days of 300 Pareto(alpha) members see today's maximum beyond
    r x yesterday's on about `rate` of days; tail_index recovers alpha from the busiest 5 %."""
    from flowsiem.rules.common import maxima_ratio, tail_index

    rng = np.random.default_rng(7)
    alpha, rate = 1.8, 0.05
    m = (1 + rng.pareto(alpha, (2, 20000, 300))).max(axis=2)
    assert abs(np.mean(m[1] > maxima_ratio(alpha, rate) * m[0]) - rate) < 0.01
    est = [tail_index(1 + rng.pareto(alpha, 2000), 0.05, 10) for _ in range(20)]
    assert 1.4 < np.median(est) < 2.2
    assert np.isnan(tail_index([5.0, 3.0], 0.05, 10)) and np.isnan(maxima_ratio(float("nan"), rate))


# --- 13  dns_silent_hours: a short regular run of lone lookups on a machine left on ----------------------

H30 = hosts(30)
LEFT_ON_BEACON, LEFT_ON_STRAY = H30[0], H30[1]  # both left on overnight with an agent polling


def _left_on(ip, seed):
    """An agent polling every 30 minutes through the night (19-08 h), resolving its server before
    a third of the check-ins: nothing lone, a trickle against the host's working hours."""
    night = np.r_[_periodic(1800, 19, 24, seed=seed, jitter=0.2), _periodic(1800, 0, 8, seed=seed + 1, jitter=0.2)]
    return with_lookups(rows(night, ip, POPULAR[0], up=600, down=2000), share=0.3, seed=seed)


def _lone(ts, ip):
    return rows(ts, ip, DNS_SERVER, proto="udp", port=53, up=70, down=150)


@pytest.fixture(scope="module")
def left_on(tmp_path_factory):
    base = pd.concat([make_office_day(seed=1, n_hosts=30, flows_per_host=(300, 400)),
                      _left_on(LEFT_ON_BEACON, 10), _left_on(LEFT_ON_STRAY, 20)])
    beacon = _periodic(900, 20.5, 22.3, seed=3, jitter=0.03)[:7]
    test = pd.concat([make_office_day(seed=2, n_hosts=30, flows_per_host=(300, 400)),
                      _left_on(LEFT_ON_BEACON, 30), _left_on(LEFT_ON_STRAY, 40),
                      _lone(beacon, LEFT_ON_BEACON), _lone(_random(len(beacon), 20.5, 22.3, seed=4), LEFT_ON_STRAY)])
    return _detect(tmp_path_factory, "left_on", base, test), len(beacon)


def test_13_a_short_regular_run_of_lone_lookups_on_a_machine_left_on_is_cnc(left_on):
    """The lone lookups are too few among the agent's night traffic for the share test, so only
    their rhythm can tell: seven lookups 15 minutes apart are far too regular for random ones.
    The old rule asked for eight lone lookups on top of that chance and missed them."""
    res, n = left_on
    assert n == 7
    (a,) = _of(res, [LEFT_ON_BEACON], rule_id="cnc.dns_silent_hours")
    assert a.actionable and "regular every ~15 min" in a.message, a.message
    assert _flagged(res, "cnc") == {LEFT_ON_BEACON}  # the same number of lookups at random times is not


# --- 14  request_flood, burst path: a known client's busiest hour against its own habit --------------------

EVENING_REGULAR = "82.155.111.1"  # both days the busiest client, 19-22 h: 700 requests, today 2,300
DAY_REGULAR = "82.155.111.2"      # both days 200 requests over 08-18 h; today also 1,500 within one hour
LONG_EVENING = "82.155.111.3"     # baseline 80 requests over 08-18 h; today 1,500 from 20 h to 01 h
AFTERNOON = "82.155.111.4"        # baseline 160 requests, most at 12-15 h; today 2,000 at 12-15 h


@pytest.fixture(scope="module")
def habits(tmp_path_factory):
    day = lambda s: _session(DAY_REGULAR, 8 * HOUR, 600, 200, s)  # noqa: E731
    sbase = pd.concat([make_clients_day(seed=1), _evening_users(1), _session(EVENING_REGULAR, 19 * HOUR, 180, 700, 1), day(2),
                       _session(LONG_EVENING, 8 * HOUR, 600, 80, 6),
                       _session(AFTERNOON, 12 * HOUR, 180, 100, 9), _session(AFTERNOON, 8 * HOUR, 600, 60, 10)])
    stest = pd.concat([make_clients_day(seed=2), _evening_users(2), _session(EVENING_REGULAR, 19 * HOUR, 180, 2300, 3), day(4),
                       _session(DAY_REGULAR, 14 * HOUR, 50, 1500, 5),
                       _session(LONG_EVENING, 20 * HOUR, 239, 1200, 7), _session(LONG_EVENING, 0, 60, 300, 8),
                       _session(AFTERNOON, 12 * HOUR, 180, 2000, 11)])
    return _detect(tmp_path_factory, "habits", make_office_day(seed=1), make_office_day(seed=2),
                   servers=stest, servers_base=sbase)


def test_14_a_regular_busier_through_its_usual_evening_is_not_a_burst(habits):
    """Over three times its own day, and its busiest hour over twice the clients' busiest, but its
    evening has the same shape as on the baseline day (a third of it in each hour): the busiest
    client's day-to-day variation, below the extreme bar. The old rule called it a burst. A
    regular that puts most of its day into one hour is one. Nor is a long, heavy evening that
    reaches into the clients' first quiet hours "around the clock" (the old around path): all of
    it lies within eight hours, as people's use does."""
    assert not [a for a in _of(habits, [EVENING_REGULAR, LONG_EVENING], family="external_abuse") if a.actionable]
    (a,) = _of(habits, [DAY_REGULAR], rule_id="external_abuse.request_flood")
    assert a.actionable and a.details["path"] == "burst", a.message
    peak = [e for e in a.evidence if e.metric == "flows in its busiest hour"][0]
    assert peak.baseline is not None and peak.observed > 2 * peak.baseline


def test_14_a_visitor_grown_beyond_day_to_day_change_is_judged_by_todays_burst(habits):
    """An ordinary visitor of the afternoons (160 requests, a quarter of them in its busiest hour)
    makes 2,000 in three afternoon hours: the same shape, but twelve times its day, beyond how far
    the known clients' days change by chance (a size-aware fence on their own changes). Its own
    day is then no reference for today's shape, and a third of the day in one hour, three times
    the clients' busiest hour, is a burst. The old rule held it to its own shape and missed it
    (a flood of 20,000 requests filling a regular's afternoon, on a holdout day at scale 3)."""
    (a,) = _of(habits, [AFTERNOON], rule_id="external_abuse.request_flood")
    assert a.actionable and a.details["path"] == "burst", a.message
    grown = [e for e in a.evidence if e.metric.startswith("flows vs its own baseline day, against")][0]
    assert grown.observed > grown.threshold > 3


# --- 15  off_hours: a regular's hours against how far the known clients' hours move day to day ----------

def test_15_a_night_leaning_regular_a_little_later_is_not_unlike_its_own_day():
    """Known clients' hour rarity (log of how much less frequented their hours are than the
    busiest) moves a little from one day to the next; a regular whose own day was already 4.8x
    rarer and today's 6x (the fence crossed by a day's variation) has not changed its habits. The
    old check only asked that its own day was below the fence. A daytime regular now 240x rarer
    has; a client with no baseline day of its own is not held back."""
    from flowsiem.rules import load_rules
    from flowsiem.rules.external import ClientFeatures, _hours_moved

    rng = np.random.default_rng(1)
    n = 300
    own = rng.normal(0.4, 0.15, n)
    today = own + rng.normal(0.0, 0.1, n)
    own = np.r_[own, np.log(4.8), 0.3, np.nan]
    today = np.r_[today, np.log(6.0), np.log(240.0), np.log(50.0)]
    df = pd.DataFrame({"flows": 60.0, "own_flows": np.r_[np.full(n + 2, 60.0), np.nan]},
                      index=[f"82.155.1.{i}" for i in range(n + 3)])
    df["known"] = df.own_flows.notna()
    fx = ClientFeatures(df, df, None, None, None, None, [], "baseline")
    moved, thr = _hours_moved(fx, load_rules()["external_abuse.off_hours"], today, own)
    assert np.log(6.0 / 4.8) < thr < np.log(240.0 / 1.35)
    assert not moved[n] and moved[n + 1] and moved[n + 2]
    assert moved[:n].mean() < 0.01  # ordinary changes stay under the fence (size-aware: ~1 in 100 days)
