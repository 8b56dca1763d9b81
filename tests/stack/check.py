#!/usr/bin/env python3
"""Drives the stack tests/stack/run.sh started and proves, with real programs:

1. bookings through the gateway (TLS) succeed, and reads are answered by the replica (its
   own pg_stat_database and pg_stat_activity say so);
2. a client's 101st request in a minute gets the gateway's 429; a webhook flood of 50/s from
   one source is held to 10/s;
3. every Prometheus target is up, a query on the request histogram returns data, and every
   metric the dashboard and the alert rules read is exported by a running process;
4. with the replica stopped the instances keep serving reads and /readyz never flaps;
5. one NATS node killed during a booking storm: no event lost or applied twice — every
   booking is in the read model once, and the read models equal a rebuild;
6. backups (scripts/backup.sh, restore.sh): one taken under a booking storm is encrypted (no
   event readable in the file) and restores into a fresh server whose hash chains verify; one
   of the settled store restores into read models equal to the original's;
and prints the measurements (requests/s and p99 through nginx against direct at 64
connections; replica lag during the storm).

Standard library only; `zhilego` and `psql` come from the stack.
"""
import concurrent.futures as cf
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid

cfg = json.load(open(sys.argv[1]))
ZHILEGO = cfg["zhilego"]
TLS = ssl._create_unverified_context()  # the gateway's development certificate
local = threading.local()


def step(msg):
    print(f"-- {msg}", flush=True)


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def request(method, path, body=None, token=None, port=None, source="127.0.0.2", tls=None, headers=None):
    """(status, headers, body bytes) over a kept-alive connection per thread, source and target."""
    gateway = port is None
    port = port or cfg["gateway_https"]
    tls = gateway if tls is None else tls
    key = (port, source, tls)
    conns = getattr(local, "conns", None)
    if conns is None:
        conns = local.conns = {}
    for attempt in range(2):
        conn = conns.get(key)
        if conn is None:
            if tls:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=TLS, timeout=30, source_address=(source, 0))
            else:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
            conns[key] = conn
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=h)
            res = conn.getresponse()
            return res.status, dict(res.getheaders()), res.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            conns.pop(key, None)
            if attempt:
                raise
    raise AssertionError("unreachable")


def token(role, sub=None):
    return subprocess.run([ZHILEGO, "token", "--role", role, "--sub", str(sub or uuid.uuid4())],
                          check=True, capture_output=True, text=True).stdout.strip()


def psql(port, sql, db="zhilego_read"):
    return subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", db, "-Atc", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def pg_ctl(action, datadir):
    subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(cfg["pgbin"], "pg_ctl"), "-D", datadir,
                    "-w", "-m", "immediate", "-l", os.path.join(cfg["work"], "logs", "pg2.log"), action],
                   check=True, capture_output=True)


def day(n):
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() + n * 86400))


LISTING = {"title": "Stack flat", "city": "Almaty", "address": "Abay 1", "location": {"lat": 43.2, "lon": 76.9},
           "rooms": 1, "max_guests": 4, "nightly_price_kzt": 15000, "cleaning_fee_kzt": 2000, "min_nights": 1,
           "cancellation_policy": "flexible", "photos": [], "amenities": []}


def create_listing(host, **kw):
    status, _, body = request("POST", "/api/v1/listings", LISTING, host, **kw)
    if status != 201:
        fail(f"creating a listing: {status} {body[:300]!r}")
    return json.loads(body)


def book(guest, listing, start, nights=2, **kw):
    return request("POST", "/api/v1/bookings",
                   {"listing_id": listing, "check_in": day(start), "check_out": day(start + nights), "guests": 2},
                   guest, **kw)


# 1 --------------------------------------------------------------------------------------
step("bookings through the gateway; reads from the replica")
host = token("host")
listing = create_listing(host)
status, _, body = request("GET", f"/api/v1/listings/{listing['id']}?min_position={listing['position']}")
if status != 200:
    fail(f"the new listing is not readable through the gateway: {status} {body[:200]!r}")
status, _, body = book(token("guest"), listing["id"], 10)
if status != 201 or json.loads(body)["status"] != "held":
    fail(f"booking through the gateway: {status} {body[:300]!r}")
before = int(psql(cfg["pg_replica"], "select tup_returned from pg_stat_database where datname = 'zhilego_read'"))
for _ in range(20):
    status, _, body = request("GET", "/api/v1/listings?city=Almaty")
    if status != 200:
        fail(f"catalogue through the gateway: {status} {body[:200]!r}")
for _ in range(100):
    after = int(psql(cfg["pg_replica"], "select tup_returned from pg_stat_database where datname = 'zhilego_read'"))
    if after > before:
        break
    time.sleep(0.2)
else:
    fail("the replica's pg_stat_database saw no reads")
sessions = int(psql(cfg["pg_replica"], "select count(*) from pg_stat_activity where datname = 'zhilego_read' and backend_type = 'client backend' and pid <> pg_backend_pid()"))
if sessions < 1:
    fail("no instance holds a connection to the replica")
print(f"   replica: {after - before} tuples returned to {sessions} instance connections", flush=True)

# 2 --------------------------------------------------------------------------------------
step("the gateway's limits: 100 requests a minute per client, 10/s per webhook source")
path = f"/api/v1/listings/{listing['id']}"
with cf.ThreadPoolExecutor(16) as pool:
    answers = list(pool.map(lambda _: request("GET", path, source="127.0.0.3"), range(101)))
codes = [a[0] for a in answers]
if codes.count(200) != 100 or codes.count(429) != 1:
    fail(f"101 requests of one client: {codes.count(200)} × 200, {codes.count(429)} × 429, others {set(codes) - {200, 429}}")
limited = next(a for a in answers if a[0] == 429)
if "text/html" not in limited[1].get("Content-Type", ""):
    fail(f"the 429 did not come from the gateway: {limited[1]}")
status, _, _ = request("GET", path, source="127.0.0.6")
if status != 200:
    fail(f"another client was limited too: {status}")

accepted, sent, t0 = [0], [0], time.time()


def flood_one(i):
    time.sleep(max(0, t0 + i / 50 - time.time()))
    s, _, _ = request("POST", "/telegram/webhook/", {"update_id": i}, source="127.0.0.4")
    sent[0] += 1
    if s != 429:
        accepted[0] += 1


with cf.ThreadPoolExecutor(8) as pool:
    list(pool.map(flood_one, range(200)))  # 50/s for 4 s
elapsed = time.time() - t0
ceiling = 10 * elapsed + 5 + 1  # the rate, the burst, one in flight
if not (accepted[0] <= ceiling and accepted[0] >= 8 * elapsed):
    fail(f"webhook flood: {accepted[0]} of {sent[0]} accepted in {elapsed:.1f} s (10/s allows {ceiling:.0f})")
print(f"   webhook flood: {accepted[0]} of {sent[0]} accepted in {elapsed:.1f} s", flush=True)

# 3 --------------------------------------------------------------------------------------
step("Prometheus: every target up, the request histogram queried, every named metric exported")


def prom(path):
    s, _, b = request("GET", path, port=cfg["prometheus"], source="127.0.0.1", tls=False)
    if s != 200:
        fail(f"Prometheus {path}: {s} {b[:200]!r}")
    return json.loads(b)["data"]


for _ in range(150):
    targets = prom("/api/v1/targets")["activeTargets"]
    if len(targets) == 5 and all(t["health"] == "up" for t in targets):
        break
    time.sleep(0.2)
else:
    fail(f"targets not all up: {[(t['labels']['job'], t['health'], t.get('lastError')) for t in targets]}")
for _ in range(50):
    result = prom("/api/v1/query?query=sum(zhilego_http_request_duration_seconds_count)")["result"]
    if result and float(result[0]["value"][1]) > 0:
        break
    time.sleep(0.2)
else:
    fail("the request histogram has no data in Prometheus")
time.sleep(11)  # the inventory gauge's first report after the listing
urls = [f"http://127.0.0.1:{p}/metrics" for p in cfg["ops"]]
names = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "check-metrics-names.py"), *urls])
if names.returncode != 0:
    fail("a metric the dashboard or the rules read is not exported")

# 4 --------------------------------------------------------------------------------------
step("the replica stops: the instances keep serving, /readyz does not flap")
replica_dir = os.path.join(cfg["work"], "pg2")
pg_ctl("stop", replica_dir)
stopped_at, failures, late_failures, ready = time.time(), 0, 0, []
while time.time() - stopped_at < 6:
    for port in cfg["api"]:
        s, _, _ = request("GET", "/readyz", port=port, source="127.0.0.1")
        ready.append(s)
    s, _, _ = request("GET", "/api/v1/listings?city=Almaty", source="127.0.0.5")
    if s != 200:
        failures += 1
        if time.time() - stopped_at > 2.5:
            late_failures += 1
    time.sleep(0.1)
if any(s != 200 for s in ready):
    fail(f"/readyz flapped while the replica was down: {ready}")
if late_failures:
    fail(f"reads failed {late_failures} times more than 2.5 s after the replica stopped")
s, _, body = request("GET", "/readyz", port=cfg["api"][0], source="127.0.0.1")
if b'"down"' not in body:
    fail(f"/readyz does not show the replica down: {body!r}")
print(f"   {len(ready)} readiness checks all 200; {failures} reads failed while the replica was being marked down", flush=True)
pg_ctl("start", replica_dir)

TABLES = ("select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' "
          "and table_name not like '%\\_faults' and table_name <> 'projection_checkpoints' order by 1")


def digest(port=None, db="zhilego_read"):
    port = port or cfg["pg_primary"]
    out = {}
    for t in psql(port, TABLES, db=db).split():
        out[t] = psql(port, f"select count(*) || ':' || coalesce(md5(string_agg(x, ',' order by x)), '') "
                            f"from (select t::text as x from \"{t}\" t) s", db=db)
    return out


def caught_up(env):
    for _ in range(300):
        out = subprocess.run([ZHILEGO, "projections", "status", "--json"], capture_output=True, text=True, env=env)
        try:
            status = json.loads(out.stdout)
        except json.JSONDecodeError:
            status = None
        if out.returncode == 0 and status and all(p.get("behind_events", 1) == 0 for p in status):
            return
        time.sleep(0.2)
    fail(f"the projections did not catch up: {out.stdout} {out.stderr}")


# 5 --------------------------------------------------------------------------------------
step("a NATS node killed during a booking storm: nothing lost, nothing applied twice")
listings = [create_listing(host, port=cfg["api"][i % 2], tls=False)["id"] for i in range(20)]
lag_samples, storm_done = [], threading.Event()


def sample_lag():
    while not storm_done.is_set():
        row = psql(cfg["pg_primary"], "select coalesce(max(extract(epoch from replay_lag)), 0), "
                   "coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0) from pg_stat_replication", db="postgres")
        seconds, lag_bytes = row.split("|")
        lag_samples.append((float(seconds), float(lag_bytes)))
        time.sleep(0.2)


sampler = threading.Thread(target=sample_lag)
sampler.start()
guest_tokens = [token("guest") for _ in range(40)]
made, killed = [], []


def storm_one(i):
    if i == 300 and not killed:
        pid = int(open(cfg["nats_pids"][1]).read())
        os.kill(pid, signal.SIGKILL)
        killed.append(time.time())
    l, k = listings[i % len(listings)], i // len(listings)
    s, _, b = book(guest_tokens[i % len(guest_tokens)], l, 30 + 3 * k, port=cfg["api"][i % 2], tls=False)
    if s == 201:
        made.append(json.loads(b)["id"])
    elif s not in (409, 503):
        fail(f"storm booking {i}: {s} {b[:200]!r}")


t0 = time.time()
with cf.ThreadPoolExecutor(16) as pool:
    list(pool.map(storm_one, range(1000)))
storm_seconds = time.time() - t0
storm_done.set()
sampler.join()
if not killed:
    fail("the NATS node was never killed")
print(f"   {len(made)} bookings in {storm_seconds:.1f} s; NATS node 2 killed at booking 300", flush=True)
env = dict(os.environ)
caught_up(env)
in_model = int(psql(cfg["pg_primary"], "select count(*) from booking_list where booking_id in ('" + "','".join(made) + "')"))
duplicates = int(psql(cfg["pg_primary"], "select count(*) - count(distinct booking_id) from booking_list"))
if in_model != len(made) or duplicates:
    fail(f"{len(made)} bookings made, {in_model} in the read model, {duplicates} twice")

incremental = digest()
rebuild = subprocess.run([ZHILEGO, "projections", "rebuild", "all"], capture_output=True, text=True, env=env)
if rebuild.returncode != 0:
    fail(f"rebuild failed: {rebuild.stdout} {rebuild.stderr}")
rebuilt = digest()
if incremental != rebuilt:
    diff = {t: (incremental.get(t), rebuilt.get(t)) for t in set(incremental) | set(rebuilt) if incremental.get(t) != rebuilt.get(t)}
    fail(f"read models differ from a rebuild: {diff}")
print(f"   read models equal a rebuild ({len(rebuilt)} tables)", flush=True)

# 6 --------------------------------------------------------------------------------------
step("backups: encrypted under a booking storm, restored into a fresh server")
work = cfg["work"]
key = os.path.join(work, "backup-key.txt")
subprocess.run(["age-keygen", "-o", key], check=True, capture_output=True)
recipient = subprocess.run(["age-keygen", "-y", key], check=True, capture_output=True, text=True).stdout.strip()
scripts = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts")
store_url = f"postgres://postgres@127.0.0.1:{cfg['pg_primary']}/zhilego"
backup_env = dict(env, DATABASE_URL=store_url, ZHILEGO_BACKUP_RECIPIENTS=recipient)
stop_storm, stormed = threading.Event(), []


def background_storm():
    i = 0
    while not stop_storm.is_set():
        l = listings[i % len(listings)]
        s_, _, b_ = book(guest_tokens[i % len(guest_tokens)], l, 200 + 3 * (i // len(listings)), port=cfg["api"][i % 2], tls=False)
        if s_ == 201:
            stormed.append(json.loads(b_)["id"])
        i += 1


storm = [threading.Thread(target=background_storm) for _ in range(4)]
for t in storm:
    t.start()
time.sleep(1)
under_storm = os.path.join(work, "under-storm.age")
subprocess.run([os.path.join(scripts, "backup.sh"), under_storm], check=True, env=backup_env)
time.sleep(0.5)
stop_storm.set()
for t in storm:
    t.join()
raw = open(under_storm, "rb").read()
if not raw.startswith(b"age-encryption.org/v1"):
    fail("the backup is not an age file")
for plain in (b"BookingHeld", b"DatesReserved", b"listing_id", b"Almaty", b"PGDMP"):
    if plain in raw:
        fail(f"the encrypted backup contains {plain!r}")
print(f"   backup under a storm of {len(stormed)} bookings: {len(raw)} bytes, nothing readable", flush=True)

pg3 = json.loads(subprocess.run([sys.executable, "-c", "import socket,json; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"], capture_output=True, text=True).stdout)
pg3_dir = os.path.join(work, "pg3")
subprocess.run(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", pg3_dir], check=True)
subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(cfg["pgbin"], "initdb"), "--no-instructions", "-D", pg3_dir, "-U", "postgres", "--auth=trust"], check=True, capture_output=True)
with open(os.path.join(pg3_dir, "postgresql.conf"), "a") as f:
    f.write(f"port = {pg3}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{work}/sockets'\nfsync = off\n")
subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(cfg["pgbin"], "pg_ctl"), "-D", pg3_dir, "-w", "-l", os.path.join(work, "logs", "pg3.log"), "start"], check=True, capture_output=True)
cfg.setdefault("extra_pg", []).append(pg3_dir)


def restore(backup, db):
    psql(pg3, f"create database {db}", db="postgres")
    restore_env = {k: v for k, v in env.items() if k not in ("NATS_URL", "READ_REPLICA_URLS")}
    restore_env.update(DATABASE_URL=f"postgres://postgres@127.0.0.1:{pg3}/{db}", ZHILEGO_BACKUP_IDENTITY=key,
                       ZHILEGO_BIN=ZHILEGO)
    out = subprocess.run([os.path.join(scripts, "restore.sh"), backup], capture_output=True, text=True, env=restore_env)
    if out.returncode != 0:
        fail(f"restore of {backup} failed: {out.stdout} {out.stderr}")
    return out.stdout


restore(under_storm, "restored_storm")
restored_events = int(psql(pg3, "select count(*) from events", db="restored_storm"))
print(f"   restored into a fresh server: {restored_events} events, every hash chain verified", flush=True)

caught_up(env)
settled = os.path.join(work, "settled.age")
subprocess.run([os.path.join(scripts, "backup.sh"), settled], check=True, env=backup_env, capture_output=True)
restore(settled, "restored")
original, restored = digest(), digest(pg3, "restored_read")
if original != restored:
    diff = {t: (original.get(t), restored.get(t)) for t in set(original) | set(restored) if original.get(t) != restored.get(t)}
    fail(f"the restored store's read models differ from the original's: {diff}")
print(f"   a settled backup restores into read models equal to the original's ({len(restored)} tables)", flush=True)
subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(cfg["pgbin"], "pg_ctl"), "-D", pg3_dir, "-m", "immediate", "stop"], capture_output=True)

# measurements -----------------------------------------------------------------------------
step("measured")
lag_s = max(s for s, _ in lag_samples) if lag_samples else 0
lag_b = max(b for _, b in lag_samples) if lag_samples else 0
print(f"   replica lag during the storm: max replay_lag {lag_s * 1000:.0f} ms, max {lag_b / 1024:.0f} KiB behind "
      f"({len(lag_samples)} samples)", flush=True)


def wrk(url):
    out = subprocess.run(["wrk", "-t2", "-c64", "-d8s", "--latency", url], capture_output=True, text=True).stdout
    rps = next(l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec"))
    p99 = next(l.split()[1] for l in out.splitlines() if l.strip().startswith("99%"))
    return rps, p99


if subprocess.run(["which", "wrk"], capture_output=True).returncode == 0:
    direct = wrk(f"http://127.0.0.1:{cfg['api'][0]}/healthz")
    gateway = wrk(f"https://127.0.0.1:{cfg['gateway_https']}/healthz")
    print(f"   /healthz at 64 connections: direct {direct[0]} req/s p99 {direct[1]}; "
          f"through nginx (TLS, two instances) {gateway[0]} req/s p99 {gateway[1]}", flush=True)
print("stack: all checks passed", flush=True)
