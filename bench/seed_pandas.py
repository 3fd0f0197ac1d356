"""The seed report's own analysis code, re-done in pandas, as the reference in speed benchmarks.

    python bench/seed_pandas.py DAYS_DIR [--quiet]

DAYS_DIR holds ``data.parquet`` (clean day), ``test.parquet`` (test day) and ``servers.parquet``
(external clients of the public servers), as written by ``flowsiem generate``. Timestamps are
hundredths of a second since midnight. The script prints what the seed's code prints (``--quiet``:
only the devices named per family), then one line ``seed_pandas: <seconds> s``: the wall time
from before the first Parquet read to the end of the last analysis.

The seed is the SRC final-project report (Univ. Aveiro, June 2024; shared/seed/000_*.txt). Its code
was extracted from a PDF: lines are broken and some are missing. This file rebuilds the code it
shows, function by function and in the same style -- pandas, a boolean mask over the whole frame
per host inside Python loops, ``Series.apply`` of a GeoIP lookup on every *row* -- because it is
meant to cost what the seed's code costs. Nothing the seed loops over has been vectorised.
Figures are not drawn (no matplotlib here), but the data each plot call would be handed is
computed.

Section 2 -- non-anomalous analysis (clean day)
    2.1 Internal servers: the internal network is the /24 of the first source address of the
        clean day (``get_network``). Each unique destination is tested for membership
        (``is_ip_in_network``, ipaddress), giving the internal and external servers, and
        ``remove_duplicates_set`` is applied. The PDF shows the ``else:`` one level too far left
        (a for/else that copies the internal list into the external one). We read it as the
        plain if/else that was evidently meant.
    Country column: the seed's frames carry a ``country`` column that ``nonAnomalousAnalysisData``
        counts, and that the report calls "destination country". It is filled, as the seed's
        other code does, with ``Series.apply`` of a per-address lookup on every row: ``dst_ip`` of
        the clean day and of the servers file.
    Traffic classes: rows whose ``dst_ip`` is inside the internal network (``is_ip_in_network``
        applied per row) are internal-internal, and the rest are internal-external. The same
        split is applied to the test day. The seed's later functions get exactly these frames:
        its botnet output lists only internal destinations, and its exfiltration baseline, about
        11.5 kB per flow, is the internal-external mean.
    2.2 / 2.3 / 2.4 ``nonAnomalousAnalysisData`` on internal-internal, internal-external and the
        servers file: ``describe()``, flows through time (``groupby(pd.Grouper(key='timestamp'))
        .size()``, the data of Figs 2.1/2.3/2.5), destination counts with the top 15 (Figs
        2.2/2.4/2.6), and country, protocol and port counts.
    2.3 Top uploaders (the head of the listing is missing from the PDF and was rebuilt from its
        output "IP: ..., Average Upload Bytes: ..."). Mean ``up_bytes`` per source on
        internal-external traffic, top 10. For each of them: upload per destination, then the
        organisation and country of every destination via ``Index.map`` (one lookup per
        address), summed in Python dicts, giving the top 10 organisations and countries.
    The seed's section 2 has no hour-of-day analysis. Hours appear only in 4.4 below.

Section 4 -- identifying devices with anomalous behaviour (test day)
    4.1 ``internalBotNetAnalysis(internal clean, internal test)``: for every source of each day,
        mask the frame and take its destinations (``value_counts().index``). Sources that are
        new, or that reach new destinations, are "suspicious". Those that name each other are
        "suspicious IPs that communicate with other suspicious internal IPs": the devices named.
        The communication timelines of Figs 4.1-4.3 (per sender and receiver: mask, timestamps,
        ``range(len)``) are computed.
    4.2 ``dataExfiltrationAnalysis(external clean, external test)``: mean ``up_bytes`` per source
        on each day. Sources whose mean grew by at least 100 % (or that are new, with an infinite
        increase) are listed. For each, the upload per destination, the organisation of each
        destination (one lookup per address), the top 3 organisations, and per organisation and
        destination a fresh mask-and-sum. Sources that uploaded more than 500 MB in total are the
        ones the report calls the most suspicious. The seed has no separate DNS-exfiltration code:
        DNS to outside resolvers is part of the internal-external frame this function reads, and
        DNS to the internal resolver is seen only by 4.3.
    4.3 The C&C-over-DNS script: a standalone script in the seed, so it reads its Parquet file
        itself. It keeps ``(udp, 53) | (tcp, 443)`` rows, adds src/dst country name and src/dst AS
        organisation with four per-row ``apply`` calls, then flags the destinations whose flow
        count is above mean + 3 std (the data of Fig 4.4). Figure 4.5's code is not in the
        report. From its captions we compute the top 10 (src, dst) pairs by flows and the top 10
        sources by number of distinct destinations. DEVIATION: the listing reads
        ``data{X}.parquet``, and its printed counts for the four internal servers add up exactly
        to the clean day's internal flows (284,995). Section 4 is about the test day, so we read
        ``test.parquet`` (a file of the same size, so the same work). The "devices" it names are
        destination addresses, as in the report.
    4.4 External users of the public services: ``detect_anomalies_in_external_accesses(
        servers_data)``. It keeps rows whose ``src_ip`` is outside the internal network (per-row
        ``is_ip_in_network``), counts flows per (src_ip, dst_ip), and runs
        ``IsolationForest(contamination=0.1).fit_predict`` on the count: -1 means anomalous. Then
        ``analyze_public_service_access``: the hour of each flow, flows before 08:00 or after
        18:00, and the top 20 sources by such flows (Fig 4.6). The report intersects the two
        lists by eye ("a match in the IPs 19 and 105"). We compute that intersection, and it
        gives the devices named. The servers file is read again here, as the seed's
        seaborn-style script does. DEVIATION: the seed calls ``pd.to_datetime(timestamp)`` on the
        integer column, which reads hundredths of a second as nanoseconds and puts every flow at
        00:00. We convert hundredths of a second since midnight (``* 10, unit='ms'``), which
        costs the same and keeps the rule's intent.

Substitutions
    * GeoIP: the seed uses pygeoip with MaxMind's legacy ``GeoIP.dat`` (country) and
      ``GeoIPASNum.dat`` (organisation, "AS15169 GOOGLE"). We use geoip2fast's shipped
      ``geoip2fast-asn.dat.gz`` (IPv4 country and AS organisation, offline) one address per call,
      behind pygeoip-like ``country_code_by_addr`` / ``country_name_by_addr`` / ``org_by_addr``.
      Only ONE ``GeoIP2Fast`` instance is created: geoip2fast keeps its tables in module globals,
      so a second instance would replace the first's data. Organisations carry no AS number
      ("GOOGLE"). Private, reserved and unknown addresses give '' (country code) and None
      (organisation), as pygeoip does.
    * IsolationForest: scikit-learn's is used when it is importable. It is not a flowsiem
      dependency, so otherwise ``_IsolationForest`` below re-implements the same algorithm:
      100 trees, max_samples=min(256, n) drawn without replacement, random split thresholds,
      max depth ceil(log2(max_samples)), average path length with the c(n) correction, and
      offset at the contamination percentile of the training scores. The seed gives no
      random_state, so its output varies per run. Ours is seeded (0), so runs are repeatable.
    * The servers file: the seed has one (``serversX.parquet``), used both for the profile (2.4)
      and for the detection (4.4). That is ``servers.parquet``, the test day's.
      ``servers_data.parquet``, the generator's clean-day servers file, is not read.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from geoip2fast import GeoIP2Fast

warnings.filterwarnings("ignore")          # the seed's SettingWithCopy warnings etc.
pd.options.mode.chained_assignment = None

QUIET = False


def say(*args, **kw) -> None:
    """The seed's print(), silenced by --quiet (the devices and the timing line always print)."""
    if not QUIET:
        print(*args, **kw)


# ── GeoIP: pygeoip-like wrappers over one geoip2fast instance ──────────────────────────────────

class _GeoDB:
    def __init__(self, g: GeoIP2Fast):
        self._g = g

    def country_code_by_addr(self, ip):
        cc = self._g.lookup(ip).country_code
        return "" if cc == "--" else cc

    def country_name_by_addr(self, ip):
        r = self._g.lookup(ip)
        return "" if r.country_code == "--" else r.country_name

    def org_by_addr(self, ip):
        org = self._g.lookup(ip).asn_name
        return None if org in ("", "<unknown>", "IANA.ORG") else org


gi = gi2 = None    # the seed's gi = pygeoip.GeoIP('GeoIP.dat'), gi2 = pygeoip.GeoIP('GeoIPASNum.dat')


def open_geoip():
    """Load the data once (inside the timed run); both names share the one instance."""
    global gi, gi2
    g = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn.dat.gz")
    gi, gi2 = _GeoDB(g), _GeoDB(g)


# ── the seed's helpers ────────────────────────────────────────────────────────────────────────

def get_network(ip):
    return ipaddress.ip_network(ip + "/24", strict=False)


def is_ip_in_network(ip, network):
    return ipaddress.ip_address(ip) in network


def remove_duplicates_set(lst):
    return list(set(lst))


def save_fig_adjusted(filename, dpi=300):
    """plt.savefig + plt.close in the seed; no figure is drawn here."""


# ── 2. non-anomalous analysis ─────────────────────────────────────────────────────────────────

FIGURES: dict[str, object] = {}   # the data each of the seed's plots would be handed


def nonAnomalousAnalysisData(dataFrame, name):
    # Descriptive stats
    say("\nStats: ")
    say(dataFrame.describe())
    # Traffic volume over time (Figs 2.1 / 2.3 / 2.5)
    traffic_time = dataFrame.groupby(pd.Grouper(key='timestamp')).size()
    FIGURES[f"{name}: traffic volume over time"] = (traffic_time.index, traffic_time.values)
    # Traffic distribution by destination IP (Figs 2.2 / 2.4 / 2.6)
    traffic_distribution = dataFrame['dst_ip'].value_counts()
    say("\nTraffic - destination count:\n", traffic_distribution)
    FIGURES[f"{name}: destination count"] = traffic_distribution.head(15)
    # Distribution by country
    traffic_countries = dataFrame['country'].value_counts()
    say("\nTraffic - destination country:\n", traffic_countries)
    # Distribution by protocols
    traffic_protocols = dataFrame["proto"].value_counts()
    say("\nTraffic - protocols:\n", traffic_protocols)
    # Distribution by port
    traffic_port = dataFrame["port"].value_counts()
    say("\nTraffic - port:\n", traffic_port)


def topUploadersAnalysis(normalDataFrame):
    # (head of the listing missing from the PDF; rebuilt from its output)
    top_uploaders = normalDataFrame.groupby('src_ip')['up_bytes'].mean().sort_values(ascending=False).head(10)
    say("Top 10 uploaders:")
    for ip, avg in top_uploaders.items():
        say(f"IP: {ip}, Average Upload Bytes: {avg}")
    org_uploads = {}
    country_uploads = {}
    say("\n")
    for ip in top_uploaders.index:
        ip_data = normalDataFrame[normalDataFrame['src_ip'] == ip]
        dst_ip_bytes = ip_data.groupby('dst_ip')['up_bytes'].sum().sort_values(ascending=False)
        orgs = dst_ip_bytes.index.map(lambda x: gi2.org_by_addr(x))
        countries = dst_ip_bytes.index.map(lambda x: gi.country_code_by_addr(x))
        for org, bytes_received in zip(orgs, dst_ip_bytes):
            if org in org_uploads:
                org_uploads[org] += bytes_received
            else:
                org_uploads[org] = bytes_received
        for country, bytes_received in zip(countries, dst_ip_bytes):
            if country in country_uploads:
                country_uploads[country] += bytes_received
            else:
                country_uploads[country] = bytes_received
    top_orgs = sorted(org_uploads.items(), key=lambda x: x[1], reverse=True)[:10]
    top_countries = sorted(country_uploads.items(), key=lambda x: x[1], reverse=True)[:10]
    say("Top 10 Organizations Receiving Uploads:")
    for org, bytes_received in top_orgs:
        say(f"Organization: {org}, Total Bytes: {bytes_received}")
    say("\nTop 10 Countries Receiving Uploads:")
    for country, bytes_received in top_countries:
        say(f"Country: {country}, Total Bytes: {bytes_received}")


# ── 4.1 internal botnet ───────────────────────────────────────────────────────────────────────

def internalBotNetAnalysis(dataFrameData, dataFrameTest):
    # Gets all dst ips for each src ip in normal data
    normal_src_to_dst_dict = {}
    for src_ip in dataFrameData['src_ip'].unique():
        src_data = dataFrameData[dataFrameData['src_ip'] == src_ip]
        top_dst_ips = src_data['dst_ip'].value_counts().index.tolist()
        normal_src_to_dst_dict[src_ip] = top_dst_ips
    # Gets all dst ips for each src ip in test data
    test_src_to_dst_dict = {}
    for src_ip in dataFrameTest['src_ip'].unique():
        src_data = dataFrameTest[dataFrameTest['src_ip'] == src_ip]
        top_dst_ips = src_data['dst_ip'].value_counts().index.tolist()
        test_src_to_dst_dict[src_ip] = top_dst_ips
    # Gets, for each new src ip or src ip that communicates with new dst ips, the dst ips that
    # dont match the normal data dst ips
    suspicious_ips = {}
    for src_ip in test_src_to_dst_dict:
        if src_ip not in normal_src_to_dst_dict:
            suspicious_ips[src_ip] = test_src_to_dst_dict[src_ip]
            say(f"Source IP {src_ip} not found in normal data.")
        else:
            normal_dst_ips = set(normal_src_to_dst_dict[src_ip])
            test_dst_ips = set(test_src_to_dst_dict[src_ip])
            if normal_dst_ips != test_dst_ips:
                different_ips = test_dst_ips - normal_dst_ips
                if different_ips:
                    say(f"Source IP {src_ip} has mismatched destination IPs: {different_ips}")
                suspicious_ips[src_ip] = different_ips   # (PDF indentation: also when empty)
    say("\nSUSPICIOIUS IPS:")
    say(suspicious_ips)
    first_stage = [ip for ip, dst in suspicious_ips.items() if len(dst)]
    # Filter suspicious IPs based on mutual communication
    filtered_suspicious_ips = {}
    for src_ip, dst_ips in suspicious_ips.items():
        for dst_ip in dst_ips:
            if dst_ip in suspicious_ips and src_ip in suspicious_ips[dst_ip]:
                if src_ip not in filtered_suspicious_ips:
                    filtered_suspicious_ips[src_ip] = []
                filtered_suspicious_ips[src_ip].append(dst_ip)
    suspicious_ips = filtered_suspicious_ips
    say("\nSUSPICIOUS IPS THAT COMMUNICATE WITH OTHER SUSPICIOUS INTERNAL IPS:")
    say(suspicious_ips)
    return first_stage, suspicious_ips


def botnetTimelines(suspicious_ips, dataFrameTest):
    """The data of Figs 4.1-4.3 (the seed's plt.plot loop)."""
    for sender_ip, receiver_ips in suspicious_ips.items():
        for receiver_ip in receiver_ips:
            sender_data = dataFrameTest[dataFrameTest['src_ip'] == sender_ip]
            receiver_data = sender_data[sender_data['dst_ip'] == receiver_ip]
            FIGURES[f"timeline {sender_ip} -> {receiver_ip}"] = (
                receiver_data['timestamp'].to_numpy(), np.asarray(range(len(receiver_data))))


# ── 4.2 data exfiltration ─────────────────────────────────────────────────────────────────────

def dataExfiltrationAnalysis(normalDataFrame, testDataFrame):
    normal_up_bytes = normalDataFrame.groupby('src_ip')['up_bytes'].mean()
    test_up_bytes = testDataFrame.groupby('src_ip')['up_bytes'].mean()
    increases = []
    for ip in test_up_bytes.index:
        normal_bytes = normal_up_bytes.get(ip, 0)
        test_bytes = test_up_bytes[ip]
        increase_percentage = ((test_bytes - normal_bytes) / normal_bytes * 100) if normal_bytes > 0 else float('inf')
        if increase_percentage >= 100:
            increases.append((ip, normal_bytes, test_bytes, increase_percentage))
    increases.sort(key=lambda x: x[3], reverse=True)
    IpsByOrgBySrcIp = {}
    for ip, normal_bytes, test_bytes, increase_percentage in increases:
        say(f"IP: {ip}, Normal: {normal_bytes}, Test: {test_bytes}, Increase: {increase_percentage:.2f}%")
        ip_data = testDataFrame[testDataFrame['src_ip'] == ip]
        dst_ip_bytes = ip_data.groupby('dst_ip')['up_bytes'].sum().sort_values(ascending=False)
        # Orgs receiving the most bits
        orgs = dst_ip_bytes.index.map(lambda x: gi2.org_by_addr(x))
        org_bytes = dst_ip_bytes.groupby(orgs).sum().sort_values(ascending=False)
        # IPs by org
        org_dst_map = {}
        for org, dst_ip in zip(orgs, dst_ip_bytes.index):
            if org not in org_dst_map:
                org_dst_map[org] = {}
            org_dst_map[org][dst_ip] = ip_data[ip_data['dst_ip'] == dst_ip]['up_bytes'].sum()
        finalOrgMap = {}
        for org, bytes_received in org_bytes.head(3).items():
            if bytes_received > 0:
                finalOrgMap[org] = org_dst_map[org]
        IpsByOrgBySrcIp[ip] = finalOrgMap
    say("\n")
    over_500mb = []
    for srcIp, orgDic in IpsByOrgBySrcIp.items():
        total_uploaded_bytes = testDataFrame[testDataFrame['src_ip'] == srcIp]['up_bytes'].sum()
        if total_uploaded_bytes > 500 * 1000000:  # total uploaded bytes exceed 500 MB
            over_500mb.append(srcIp)
            say("Src IP: " + srcIp + " Total upload: " + str(total_uploaded_bytes))
            for org, ipDict in orgDic.items():
                say("    Org: " + str(org))
                for dstIp, dstBytes in ipDict.items():
                    say("        Dst IP: " + dstIp + ", Total bytes: " + str(dstBytes))
    return [x[0] for x in increases], over_500mb


# ── 4.3 C&C over DNS (the seed's standalone script) ───────────────────────────────────────────

def cncDnsScript(datafile):
    data = pd.read_parquet(datafile)
    # Filtragem ajustada
    dns_traffic_data = data[((data['proto'].str.lower() == 'udp') & (data['port'] == 53)) |
                            ((data['proto'].str.lower() == 'tcp') & (data['port'] == 443))]
    if dns_traffic_data.empty:
        say("No DNS records found. Check the data and filtering.")
        return [], []
    gi_country, gi_asn = gi, gi2

    def get_country(ip):
        try:
            return gi_country.country_name_by_addr(ip) or 'Unknown'
        except Exception:
            return 'Unknown'

    def get_asn(ip):
        try:
            return gi_asn.org_by_addr(ip) or 'Unknown'
        except Exception:
            return 'Unknown'

    # Add country and ASN information
    dns_traffic_data['src_country'] = dns_traffic_data['src_ip'].apply(get_country)
    dns_traffic_data['dst_country'] = dns_traffic_data['dst_ip'].apply(get_country)
    dns_traffic_data['src_asn'] = dns_traffic_data['src_ip'].apply(get_asn)
    dns_traffic_data['dst_asn'] = dns_traffic_data['dst_ip'].apply(get_asn)

    # Count the number of queries per destination IP
    dst_ip_counts = dns_traffic_data['dst_ip'].value_counts()
    # Statistical analysis to find outliers
    mean_count = dst_ip_counts.mean()
    std_count = dst_ip_counts.std()
    threshold = mean_count + 3 * std_count  # Define a threshold as mean + 3 * standard deviation
    # Detect suspicious IPs
    suspicious_ips = dst_ip_counts[dst_ip_counts > threshold].index.tolist()
    suspicious_counts = dst_ip_counts[dst_ip_counts > threshold]
    if suspicious_ips:
        say("Suspicious IPs detected:")
        for ip, count in suspicious_counts.items():
            say(f"IP: {ip}, Queries: {count}")
    else:
        say("No suspicious IPs detected.")
    # Fig 4.4 (sns.barplot of suspicious_counts)
    FIGURES["suspicious destination IPs"] = (suspicious_counts.values, suspicious_counts.index)
    save_fig_adjusted('suspicious_dst_ips.png')
    # Fig 4.5 (code not in the report; rebuilt from its two captions)
    top_pairs = dns_traffic_data.groupby(['src_ip', 'dst_ip']).size().sort_values(ascending=False).head(10)
    FIGURES["top 10 src-dst pairs"] = top_pairs
    top_src_many_servers = dns_traffic_data.groupby('src_ip')['dst_ip'].nunique().sort_values(ascending=False).head(10)
    FIGURES["top 10 sources querying many servers"] = top_src_many_servers
    say("\nTop 10 Source-Destination IP Pairs with the Most Queries:\n", top_pairs)
    say("\nTop 10 Source IPs Querying Many Servers:\n", top_src_many_servers)
    return suspicious_ips, list(dict.fromkeys(s for s, _ in top_pairs.index))


# ── 4.4 external users of the public services ─────────────────────────────────────────────────

class _IsolationForest:
    """scikit-learn's IsolationForest algorithm (defaults + contamination), for when sklearn is absent."""

    def __init__(self, contamination=0.1, n_estimators=100, random_state=0):
        self.contamination = contamination
        self.n_estimators = n_estimators
        self.rng = np.random.default_rng(random_state)

    @staticmethod
    def _c(n):
        n = np.asarray(n, dtype=float)
        out = np.zeros_like(n)
        out[n == 2] = 1.0
        big = n > 2
        out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
        return out

    def _build(self, X, depth, max_depth, nodes):
        i = len(nodes)
        nodes.append(None)
        n = len(X)
        if depth >= max_depth or n <= 1:
            nodes[i] = (-1, 0.0, -1, -1, n, depth)
            return i
        f = self.rng.integers(X.shape[1])
        lo, hi = X[:, f].min(), X[:, f].max()
        if lo == hi:
            nodes[i] = (-1, 0.0, -1, -1, n, depth)
            return i
        thr = self.rng.uniform(lo, hi)
        mask = X[:, f] <= thr
        left = self._build(X[mask], depth + 1, max_depth, nodes)
        right = self._build(X[~mask], depth + 1, max_depth, nodes)
        nodes[i] = (f, thr, left, right, n, depth)
        return i

    def _path_lengths(self, nodes, X):
        feat = np.array([nd[0] for nd in nodes])
        thr = np.array([nd[1] for nd in nodes])
        left = np.array([nd[2] for nd in nodes])
        right = np.array([nd[3] for nd in nodes])
        size = np.array([nd[4] for nd in nodes])
        depth = np.array([nd[5] for nd in nodes], dtype=float)
        at = np.zeros(len(X), dtype=int)
        rows = np.arange(len(X))
        while True:
            inner = feat[at] >= 0
            if not inner.any():
                break
            r = rows[inner]
            a = at[inner]
            go_left = X[r, feat[a]] <= thr[a]
            at[r] = np.where(go_left, left[a], right[a])
        return depth[at] + self._c(size[at])

    def fit_predict(self, X):
        X = np.asarray(X, dtype=float)
        n = len(X)
        m = min(256, n)
        max_depth = max(int(math.ceil(math.log2(max(m, 2)))), 1)
        total = np.zeros(n)
        for _ in range(self.n_estimators):
            sample = X[self.rng.choice(n, size=m, replace=False)]
            nodes: list = []
            self._build(sample, 0, max_depth, nodes)
            total += self._path_lengths(nodes, X)
        scores = -np.power(2.0, -(total / self.n_estimators) / self._c([m])[0])
        offset = np.percentile(scores, 100.0 * self.contamination)
        return np.where(scores - offset < 0, -1, 1)


try:
    from sklearn.ensemble import IsolationForest
except ImportError:  # not a flowsiem dependency
    IsolationForest = _IsolationForest


def detect_anomalies_in_external_accesses(servers_data, internalNetwork):
    # Filter external accesses (rows whose source is not in the internal network)
    external_accesses = servers_data[~servers_data['src_ip'].apply(lambda ip: is_ip_in_network(ip, internalNetwork))]
    # Analyze access patterns (you can customize this based on your specific requirements)
    access_patterns = external_accesses.groupby(['src_ip', 'dst_ip']).size().reset_index(name='access_count')
    # Use Isolation Forest for anomaly detection
    model = IsolationForest(contamination=0.1)  # Adjust contamination based on expected anomaly rate
    access_patterns['anomaly_score'] = model.fit_predict(access_patterns[['access_count']])
    # Identify potential anomalies
    potential_anomalies = access_patterns[access_patterns['anomaly_score'] == -1]
    return potential_anomalies


def analyze_public_service_access(access_data):
    # Analyze access outside business hours. (Seed: pd.to_datetime(timestamp), which reads the
    # integer hundredths of a second as nanoseconds; see the module docstring.)
    access_data['timestamp'] = pd.to_datetime(access_data['timestamp'] * 10, unit='ms')
    access_data['hour'] = access_data['timestamp'].dt.hour
    out_of_hours = access_data[(access_data['hour'] < 8) | (access_data['hour'] > 18)]
    ip_counts = out_of_hours['src_ip'].value_counts().head(20)
    FIGURES["top out-of-hours sources"] = (ip_counts.values, ip_counts.index)   # Fig 4.6
    save_fig_adjusted('top_out_of_hours_access.png')
    return ip_counts


# ── main ──────────────────────────────────────────────────────────────────────────────────────

def devices(family: str, ips, note: str = "") -> None:
    ips = list(ips)
    print(f"{family}{note}: {len(ips)}: {', '.join(ips) if ips else '-'}")


def run(days: Path) -> float:
    t0 = time.perf_counter()
    open_geoip()
    data = pd.read_parquet(days / "data.parquet")
    test = pd.read_parquet(days / "test.parquet")
    servers = pd.read_parquet(days / "servers.parquet")

    ### NON-ANOMALOUS BEHAVIOR ------
    # Identify internal servers/services
    data_srcIPs = data['src_ip'].unique()
    data_dstIPs = data['dst_ip'].unique()
    internalNetwork = get_network(data_srcIPs[0])
    internalServers = []
    externalServers = []
    for ip in data_dstIPs:
        isInternal = is_ip_in_network(ip, internalNetwork)
        if isInternal:
            internalServers.append(ip)
        else:
            externalServers.append(ip)
    internalServers = remove_duplicates_set(internalServers)
    externalServers = remove_duplicates_set(externalServers)
    say("Internal servers: " + str(internalServers))

    # destination country of every flow
    data['country'] = data['dst_ip'].apply(lambda ip: gi.country_code_by_addr(ip))
    servers['country'] = servers['dst_ip'].apply(lambda ip: gi.country_code_by_addr(ip))

    # traffic classes
    isInternalDst = data['dst_ip'].apply(lambda ip: is_ip_in_network(ip, internalNetwork))
    internalData = data[isInternalDst]
    externalData = data[~isInternalDst]
    isInternalDstTest = test['dst_ip'].apply(lambda ip: is_ip_in_network(ip, internalNetwork))
    internalTest = test[isInternalDstTest]
    externalTest = test[~isInternalDstTest]

    say("\n### 2.2 Traffic internal-internal")
    nonAnomalousAnalysisData(internalData, "internal-internal")
    say("\n### 2.3 Traffic internal-external")
    nonAnomalousAnalysisData(externalData, "internal-external")
    topUploadersAnalysis(externalData)
    say("\n### 2.4 Traffic external-public servers")
    nonAnomalousAnalysisData(servers, "external-servers")

    ### ANOMALOUS BEHAVIOR ------
    say("\n### 4.1 Internal BotNet activities")
    botnet_first, botnet = internalBotNetAnalysis(internalData, internalTest)
    botnetTimelines(botnet, internalTest)

    say("\n### 4.2 Data exfiltration")
    exfil_increase, exfil_500mb = dataExfiltrationAnalysis(externalData, externalTest)

    say("\n### 4.3 C&C activities using DNS")
    cnc_dst, cnc_pair_src = cncDnsScript(days / "test.parquet")

    say("\n### 4.4 External users using the corporate public services in an anomalous way")
    servers_data = pd.read_parquet(days / "servers.parquet")
    ### EXECUTE ANALYSIS -----
    potential_anomalies = detect_anomalies_in_external_accesses(servers_data, internalNetwork)
    ### PRINT POTENTIAL ANOMALIES
    say("Potential Anomalies:")
    say(potential_anomalies)
    ip_counts = analyze_public_service_access(servers_data)
    say("\nTop IPs with access outside business hours:\n", ip_counts)
    iso_src = list(dict.fromkeys(potential_anomalies['src_ip']))
    both = [ip for ip in iso_src if ip in ip_counts.index]
    secs = time.perf_counter() - t0

    print("\n## devices named (seed's rules)")
    devices("botnet", botnet, " (suspicious and talking to each other)")
    devices("botnet", botnet_first, " [first stage: new source or new destinations]")
    devices("exfiltration", exfil_500mb, " (>=100% avg upload increase and >500 MB uploaded)")
    devices("exfiltration", exfil_increase, " [>=100% avg upload increase]")
    devices("cnc", cnc_dst, " (DESTINATIONS with flows > mean + 3 std)")
    devices("cnc", cnc_pair_src, " [sources of the top 10 src-dst pairs]")
    devices("external_abuse", both, " (IsolationForest anomaly and top-20 out-of-hours)")
    devices("external_abuse", iso_src, " [IsolationForest anomalies]")
    devices("external_abuse", ip_counts.index, " [top 20 out-of-hours sources]")
    return secs


def main(argv=None) -> int:
    global QUIET
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("days", type=Path, help="directory with data.parquet, test.parquet, servers.parquet")
    ap.add_argument("--quiet", action="store_true", help="print only the devices named and the time")
    a = ap.parse_args(argv)
    QUIET = a.quiet
    for f in ("data.parquet", "test.parquet", "servers.parquet"):
        if not (a.days / f).exists():
            print(f"error: {a.days / f}: not found", file=sys.stderr)
            return 2
    secs = run(a.days)
    print(f"seed_pandas: {secs:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
