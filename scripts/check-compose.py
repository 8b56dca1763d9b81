#!/usr/bin/env python3
"""The project's own rules for docker-compose.yml, checked without Docker.

The compose specification itself (keys, types, durations, ports) is checked by its JSON
schema: `check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml` in .ci/run.
This script checks what the schema cannot:

    python3 scripts/check-compose.py [path/to/docker-compose.yml]

- references: the file parses without duplicate keys, every `${...}` substitution is well
  formed, every `depends_on` target exists (no cycles; `service_healthy` only on services with
  a health check, `service_completed_successfully` only on one-shot services), no host port is
  published twice, named volumes are declared and used, bind-mounted repository files exist,
  a `build` names an existing Dockerfile;
- ZhilyeGO's shape (docs/operations.md): a PostgreSQL 15+ primary ready for replication and a
  replica of the same image; NATS as a three-node JetStream cluster with its stores on
  volumes; migrate, api, relay and projector pointing at the primary and the cluster, secrets
  as required substitutions, each long-running process scraped by Prometheus on its ops port
  and health-checked with a tool the image has; the API behind the gateway only, reading from
  the replica, trusting the gateway's network for X-Forwarded-For; live Kaspi by default and
  the sandbox in a profile only; the Dockerfile copies every workspace member.

Exit status: 0 when clean, 1 when problems were found (each printed), 2 when it cannot check.
"""
import os
import re
import sys
from urllib.parse import urlsplit

try:
    import tomllib  # Python 3.11+; without it the Cargo workspace check is skipped
except ImportError:
    tomllib = None

try:
    import yaml
except ImportError:
    print("check-compose: PyYAML is missing (pip install pyyaml)", file=sys.stderr)
    sys.exit(2)

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OPERATORS = (":-", ":?", ":+", "-", "?", "+")


def substitutions(text):
    """Compose's substitution grammar: $$, $NAME, ${NAME}, ${NAME[:]-default},
    ${NAME[:]?error}, ${NAME[:]+alternative}, nested in the argument. Yields (name, operator)
    for each substitution and (None, error) for anything `docker compose` would refuse."""
    i = 0
    while i < len(text):
        if text[i] != "$":
            i += 1
            continue
        rest = text[i + 1:]
        if rest.startswith("$"):
            i += 2
            continue
        m = NAME.match(rest)
        if m:
            yield m.group(), None
            i += 1 + m.end()
            continue
        if not rest.startswith("{"):
            yield None, f"bad substitution at {text[i:i + 12]!r} (write $$ for a literal $)"
            i += 1
            continue
        depth, j = 0, 0
        for j, ch in enumerate(rest):
            depth += (ch == "{") - (ch == "}")
            if depth == 0:
                break
        if depth:
            yield None, f"unterminated ${{ at {text[i:i + 12]!r}"
            return
        inner = rest[1:j]
        m = NAME.match(inner)
        op = next((o for o in OPERATORS if m and inner[m.end():].startswith(o)), None)
        if not m or (op is None and inner[m.end():]):
            yield None, f"bad substitution {'${' + inner + '}'!r}"
        else:
            yield m.group(), op
            if op:
                yield from substitutions(inner[m.end() + len(op):])
        i += 1 + j + 1


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects a mapping with the same key twice (PyYAML keeps the last)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor`: its keys may be overridden here, that is its purpose
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


class Report:
    def __init__(self):
        self.problems = []

    def __call__(self, where, message):
        self.problems.append(f"{where}: {message}")


def strings(value, where):
    """Every string in a YAML value, with where it is."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, f"{where}[{i}]")


def environment(service):
    """A service's environment as a dict (None for a variable passed through from the host)."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k): (None if v is None else str(v)) for k, v in env.items()}
    out = {}
    for item in env:
        key, sep, value = str(item).partition("=")
        out[key] = value if sep else None
    return out


def depends_on(service):
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return {name: (spec or {}) for name, spec in deps.items()}


def has_healthcheck(service):
    hc = service.get("healthcheck")
    if not isinstance(hc, dict) or hc.get("disable"):
        return False
    test = hc.get("test")
    return bool(test) and test != ["NONE"]


def parse_port(entry):
    """(host_ip, host_port or None, container_port, protocol) of one `ports` entry."""
    if isinstance(entry, dict):
        return (entry.get("host_ip", ""), str(entry.get("published") or "") or None,
                str(entry["target"]), entry.get("protocol", "tcp"))
    text, _, proto = str(entry).partition("/")
    parts = text.rsplit(":", 2)
    if len(parts) == 1:
        return "", None, parts[0], proto or "tcp"
    if len(parts) == 2:
        return "", parts[0], parts[1], proto or "tcp"
    return parts[0], parts[1], parts[2], proto or "tcp"


def check_general(doc, base_dir, problem):
    """What the compose schema cannot say: substitutions, references between services,
    volumes and files that exist, ports published once."""
    services = doc.get("services") or {}
    declared_volumes = set((doc.get("volumes") or {}).keys())
    used_volumes = set()
    published = {}
    for where, text in strings(doc, ""):
        for name, error in substitutions(text):
            if name is None:
                problem(where, error)
    for name, svc in services.items():
        at = f"services.{name}"
        if "image" not in svc and "build" not in svc:
            problem(at, "needs an image or a build")
        build = svc.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            path = os.path.join(base_dir, context, dockerfile)
            if not os.path.isfile(path):
                problem(f"{at}.build", f"{os.path.relpath(path, base_dir)} does not exist")
        for dep, spec in depends_on(svc).items():
            if dep not in services:
                problem(f"{at}.depends_on", f"no service named {dep!r}")
                continue
            cond = spec.get("condition", "service_started")
            if cond == "service_healthy" and not has_healthcheck(services[dep]):
                problem(f"{at}.depends_on.{dep}", "service_healthy, but it has no health check")
            if cond == "service_completed_successfully" and services[dep].get("restart", "no") != "no":
                problem(f"{at}.depends_on.{dep}", "waits for it to complete, but it restarts")
        for entry in svc.get("ports") or []:
            _, host, _, proto = parse_port(entry)
            if host:
                key = (host, proto)
                if key in published:
                    problem(f"{at}.ports", f"host port {host} is already published by {published[key]}")
                published[key] = name
        for entry in svc.get("volumes") or []:
            if isinstance(entry, dict):
                kind, source = entry.get("type", "volume"), entry.get("source")
            else:
                source = str(entry).split(":")[0] if ":" in str(entry) else None
                kind = "bind" if source and source.startswith(("/", ".", "~")) else "volume"
            if not source or "$" in source:
                continue
            if kind == "volume":
                used_volumes.add(source)
                if source not in declared_volumes:
                    problem(f"{at}.volumes", f"named volume {source!r} is not declared at the top level")
            elif source.startswith(".") and not os.path.exists(os.path.join(base_dir, source)):
                problem(f"{at}.volumes", f"{source} does not exist in the repository")
    for unused in sorted(declared_volumes - used_volumes):
        problem("volumes", f"{unused!r} is declared but no service mounts it")
    state = {}

    def visit(n, path):
        state[n] = "open"
        for dep in depends_on(services.get(n) or {}):
            if dep not in services:
                continue
            if state.get(dep) == "open":
                problem("depends_on", "cycle: " + " -> ".join(path + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[n] = "done"

    for n in services:
        if n not in state:
            visit(n, [n])
    return services


def placeholders(text):
    """A URL with its substitutions replaced by a plain word, so that it parses."""
    return re.sub(r"\$\{[^}]*\}", "x", text or "")


def words_of(value):
    value = value or []
    return value.split() if isinstance(value, str) else [str(w) for w in value]


def flag(cmd, *names):
    return next((cmd[i + 1] for i, c in enumerate(cmd[:-1]) if c in names), None)


def volume_targets(svc):
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            out.append(str(v.get("target")))
        elif ":" in str(v):
            out.append(str(v).split(":")[1])
    return out


ZHILEGO_PROCESSES = ("api", "relay", "projector")  # long-running: scraped, health-checked


def check_zhilego(services, base_dir, problem):
    """What ZhilyeGO's docs (docs/operations.md) promise about its compose file."""
    for name in ("postgres", "postgres-replica", "migrate", *ZHILEGO_PROCESSES,
                 "gateway", "prometheus", "alertmanager", "grafana"):
        if name not in services:
            problem("services", f"{name!r} is missing")
    pg = services.get("postgres") or {}
    pg_env = environment(pg)
    if pg:
        for key in ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"):
            if not pg_env.get(key):
                problem("services.postgres.environment", f"{key} is not set")
        m = re.match(r"^postgres:(\d+)", str(pg.get("image", "")))
        if not m or int(m.group(1)) < 15:
            problem("services.postgres.image", "must be postgres:15 or newer (xid8, pg_snapshot_xmin)")
        test = " ".join(map(str, (pg.get("healthcheck") or {}).get("test") or []))
        if "pg_isready" not in test:
            problem("services.postgres.healthcheck", "should run pg_isready")
        if "/var/lib/postgresql/data" not in volume_targets(pg):
            problem("services.postgres.volumes", "/var/lib/postgresql/data must be on a volume")
        if "wal_level=replica" not in words_of(pg.get("command")):
            problem("services.postgres.command", "the primary needs wal_level=replica for its replica")
    replica = services.get("postgres-replica") or {}
    if replica:
        if str(replica.get("image")) != str(pg.get("image")):
            problem("services.postgres-replica.image", "a physical replica runs the primary's image")
        if depends_on(replica).get("postgres", {}).get("condition") != "service_healthy":
            problem("services.postgres-replica.depends_on", "postgres must be service_healthy")

    nats = {n: s for n, s in services.items() if re.fullmatch(r"nats(-\d+)?", n)}
    if len(nats) < 3:
        problem("services", "NATS runs as a cluster of three nodes (nats-1, nats-2, nats-3)")
    clusters = set()
    for name, svc in nats.items():
        at = f"services.{name}"
        m = re.match(r"^nats:(\d+)\.(\d+)", str(svc.get("image", "")))
        if not m or (int(m.group(1)), int(m.group(2))) < (2, 10):
            problem(f"{at}.image", "must be nats:2.10 or newer")
        cmd = words_of(svc.get("command"))
        if not ({"-js", "--jetstream"} & set(cmd)):
            problem(f"{at}.command", "JetStream is not enabled (-js)")
        if flag(cmd, "-sd", "--store_dir") not in volume_targets(svc):
            problem(at, "the JetStream store dir (-sd) must be a mounted volume")
        clusters.add(flag(cmd, "--cluster_name"))
        routes = flag(cmd, "--routes") or ""
        others = set(nats) - {name}
        named = {urlsplit(r).hostname for r in routes.split(",") if r}
        if not others <= named:
            problem(f"{at}.command", f"--routes must name the other nodes ({', '.join(sorted(others))})")
        if not has_healthcheck(svc):
            problem(f"{at}.healthcheck", "missing")
    if len(clusters) > 1 or None in clusters:
        problem("services.nats-*", "every node needs the same --cluster_name")

    targets = prometheus_targets(base_dir, services.get("prometheus") or {}, problem)
    for name in ("migrate", *ZHILEGO_PROCESSES):
        svc = services.get(name)
        if svc:
            check_zhilego_process(name, svc, services, targets, problem)
    api = services.get("api") or {}
    env = environment(api)
    if api:
        if env.get("ZHILEGO_PROJECTIONS") != "off":
            problem("services.api.environment.ZHILEGO_PROJECTIONS", "off: the projector keeps the read models")
        replicas = [urlsplit(u.strip()).hostname
                    for u in placeholders(env.get("READ_REPLICA_URLS")).split(",") if u.strip()]
        if "postgres-replica" not in replicas:
            problem("services.api.environment.READ_REPLICA_URLS", "reads go to postgres-replica")
        if api.get("ports"):
            problem("services.api.ports", "the API is reached through the gateway only; publish nothing")
        if not env.get("ZHILEGO_TRUSTED_PROXIES"):
            problem("services.api.environment.ZHILEGO_TRUSTED_PROXIES", "the gateway's network must be trusted for X-Forwarded-For")
    gw = services.get("gateway") or {}
    if gw:
        if not any(parse_port(p)[2] == "443" for p in gw.get("ports") or []):
            problem("services.gateway.ports", "TLS ends at the gateway: publish 443")
        if "/etc/nginx/templates" not in volume_targets(gw):
            problem("services.gateway.volumes", "mount deploy/nginx/templates at /etc/nginx/templates")
    check_payments(services, problem)
    check_image(api, services, base_dir, problem)


def prometheus_targets(base_dir, prom, problem):
    """host names Prometheus scrapes (from the targets files of the mounted configuration)."""
    hosts = set()
    for v in prom.get("volumes") or []:
        source, _, target = str(v).partition(":")
        if target.split(":")[0] != "/etc/prometheus":
            continue
        folder = os.path.join(base_dir, source, "targets")
        for f in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            with open(os.path.join(folder, f), encoding="utf-8") as fh:
                for group in yaml.safe_load(fh) or []:
                    hosts |= {t.rsplit(":", 1)[0] for t in group.get("targets") or []}
    if prom and not hosts:
        problem("services.prometheus.volumes", "mount deploy/prometheus (with its targets/) at /etc/prometheus")
    return hosts


def check_zhilego_process(name, svc, services, targets, problem):
    at = f"services.{name}"
    env = environment(svc)
    for key in ("DATABASE_URL", "NATS_URL", "ZHILEGO_JWT_SECRET", "ZHILEGO_ENCRYPTION_KEY",
                "ZHILEGO_AUDIT_SIGNING_KEY"):
        if not env.get(key):
            problem(f"{at}.environment", f"{key} is not set")
    for key in ("ZHILEGO_JWT_SECRET", "ZHILEGO_ENCRYPTION_KEY", "ZHILEGO_AUDIT_SIGNING_KEY"):
        secret = env.get(key) or ""
        if secret and not re.fullmatch(r"\$\{" + key + r":?\?[^}]*\}", secret):
            problem(f"{at}.environment.{key}", f"must be a required substitution like ${{{key}:?set it}}, not a value")
    db_url = placeholders(env.get("DATABASE_URL"))
    u = urlsplit(db_url)
    if db_url and u.scheme not in ("postgres", "postgresql"):
        problem(f"{at}.environment.DATABASE_URL", "must be a postgres:// URL")
    elif db_url and u.hostname != "postgres":
        problem(f"{at}.environment.DATABASE_URL", "writes go to the primary, `postgres`")
    elif db_url:
        pg_env = environment(services.get("postgres") or {})
        for part, key in ((u.username, "POSTGRES_USER"), (u.path.lstrip("/"), "POSTGRES_DB")):
            if pg_env.get(key) and part != pg_env[key]:
                problem(f"{at}.environment.DATABASE_URL", f"does not match postgres's {key}")
    for url in (env.get("NATS_URL") or "").split(","):
        host = urlsplit(url.strip()).hostname
        if host and host not in services:
            problem(f"{at}.environment.NATS_URL", f"{host!r} is not a service")
    if name == "migrate":
        return
    if depends_on(svc).get("migrate", {}).get("condition") != "service_completed_successfully":
        problem(f"{at}.depends_on", "migrate must be service_completed_successfully")
    metrics = env.get("ZHILEGO_METRICS_ADDR") or ""
    if not metrics.startswith("0.0.0.0:"):
        problem(f"{at}.environment.ZHILEGO_METRICS_ADDR", "must listen on the network for Prometheus (0.0.0.0:9464)")
    if not any(h == name or h.startswith(f"zhilego-{name}-") for h in targets):
        problem("deploy/prometheus/targets", f"{name} is not scraped")
    test = words_of((svc.get("healthcheck") or {}).get("test"))
    if not any("/healthz" in w or "/readyz" in w for w in test):
        problem(f"{at}.healthcheck", "should call /healthz")


def check_image(api, services, base_dir, problem):
    """The health checks run tools the image has, and the build copies what cargo needs."""
    build = next((s.get("build") for s in services.values() if s.get("build") is not None), None)
    if build is None:
        return
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    path = os.path.join(base_dir, context, dockerfile)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        text = f.read()
    stages = [m.start() for m in re.finditer(r"^FROM\s", text, re.MULTILINE | re.IGNORECASE)]
    runtime = text[stages[-1]:] if stages else text  # the final stage
    runtime = "\n".join(l for l in runtime.splitlines() if not l.lstrip().startswith("#"))
    for name, svc in services.items():
        if svc.get("image") != api.get("image"):
            continue
        test = words_of((svc.get("healthcheck") or {}).get("test"))
        for tool in ("curl", "wget"):
            if any(w.split("/")[-1] == tool for w in test) and tool not in runtime:
                problem(f"services.{name}.healthcheck", f"uses {tool}, which the image's final stage does not install")
    check_build_copies(text, os.path.join(base_dir, context), os.path.relpath(path, base_dir), problem)


KASPI_REQUIRED = ("KASPI_API_URL", "KASPI_API_KEY", "KASPI_CALLBACK_USER",
                  "KASPI_CALLBACK_PASSWORD", "KASPI_CALLBACK_ALLOW_IPS")
TRUE = {"1", "true", "yes"}


def check_payments(services, problem):
    """Nobody stays for free: the services `docker compose up` starts (those without
    `profiles`) never run the Kaspi sandbox, whose payment pages anyone may pay; the api calls
    live Kaspi with every KASPI_* setting required; a sandbox lives only in a profile, with
    the explicit allowance the service demands."""
    for name, svc in services.items():
        if not isinstance(svc, dict):
            continue
        env = environment(svc)
        mode = env.get("KASPI_MODE") or ""
        allow = (env.get("ZHILEGO_ALLOW_SANDBOX_PAYMENTS") or "").strip().lower()
        at = f"services.{name}.environment"
        if not svc.get("profiles"):
            # A substitution could turn into sandbox from the host's environment.
            if "sandbox" in mode or ("$" in mode and name == "api"):
                problem(f"{at}.KASPI_MODE", f"{mode!r}: a default service must not run the Kaspi sandbox")
            if "ZHILEGO_ALLOW_SANDBOX_PAYMENTS" in env:
                problem(f"{at}.ZHILEGO_ALLOW_SANDBOX_PAYMENTS",
                        "a default service must not allow sandbox payments (use a profile)")
        elif mode == "sandbox" and allow not in TRUE:
            problem(f"{at}.ZHILEGO_ALLOW_SANDBOX_PAYMENTS",
                    "a sandbox service must set it to 1 (the service refuses the sandbox otherwise)")
    api = services.get("api") or {}
    if not api:
        return
    env = environment(api)
    if env.get("KASPI_MODE") != "live":
        problem("services.api.environment.KASPI_MODE", "must be live")
    for key in KASPI_REQUIRED:
        value = env.get(key) or ""
        if not re.fullmatch(r"\$\{" + key + r":?\?[^}]*\}", value):
            problem(f"services.api.environment.{key}",
                    f"must be a required substitution like ${{{key}:?set it}}")


def copied_sources(dockerfile):
    """Sources of the COPY/ADD instructions that take files from the build context."""
    text = re.sub(r"\\\n", " ", dockerfile)
    sources = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]) or len(args) < 2:
            continue
        sources += [os.path.normpath(a) for a in args[:-1]]
    return sources


def check_build_copies(dockerfile, context, where, problem):
    """Cargo loads every workspace member even to build one package: each must be copied in,
    with the files its manifests point at outside their folder, and the migrations."""
    manifest = os.path.join(context, "Cargo.toml")
    if tomllib is None or not os.path.isfile(manifest):
        return
    with open(manifest, "rb") as f:
        members = tomllib.load(f).get("workspace", {}).get("members", [])
    needed = {"Cargo.toml", "Cargo.lock", "migrations"} | set(members)
    for member in members:
        try:
            with open(os.path.join(context, member, "Cargo.toml"), "rb") as f:
                crate = tomllib.load(f)
        except OSError:
            problem("Cargo.toml", f"workspace member {member!r} has no Cargo.toml")
            continue
        targets = [crate.get("lib") or {}] + [t for k in ("bin", "test", "bench", "example")
                                              for t in crate.get(k, [])]
        for t in targets:
            path = os.path.normpath(os.path.join(member, t.get("path", ".")))
            if not path.startswith(os.path.normpath(member) + os.sep):
                needed.add(path)  # a target outside its crate's folder, like api's tests
    sources = copied_sources(dockerfile)
    if "." in sources:
        return
    for path in sorted(needed):
        if not any(path == s or path.startswith(s + os.sep) for s in sources):
            problem(where, f"the build does not COPY {path} (cargo needs it)")


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    path = argv[1] if len(argv) > 1 else os.path.join(here, "..", "docker-compose.yml")
    path = os.path.normpath(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.load(f, Loader=UniqueKeyLoader)
    except OSError as e:
        print(f"check-compose: cannot read {path}: {e}", file=sys.stderr)
        return 2
    except yaml.YAMLError as e:
        print(f"check-compose: {path} is not valid YAML: {e}", file=sys.stderr)
        return 1
    problem = Report()
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        problem("top level", "must be a mapping with services (the schema check says more)")
    else:
        services = check_general(doc, os.path.dirname(path), problem)
        check_zhilego(services, os.path.dirname(path), problem)
    if problem.problems:
        for p in problem.problems:
            print(f"check-compose: {p}", file=sys.stderr)
        print(f"check-compose: {path}: {len(problem.problems)} problem(s)", file=sys.stderr)
        return 1
    required = sorted({name for _, text in strings(doc, "") for name, op in substitutions(text)
                       if op in (":?", "?")})
    print(f"check-compose: {path}: ok ({len(doc['services'])} services: "
          f"{', '.join(doc['services'])}; required variables: {', '.join(required) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
