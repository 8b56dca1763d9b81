#!/usr/bin/env python3
"""Checks docker-compose.yml without Docker.

Needs PyYAML and installs nothing itself: CI runs `pip install pyyaml` before calling it.

    python3 scripts/check-compose.py [path/to/docker-compose.yml]

Two kinds of checks:
- general: the file parses (duplicate keys are errors), known top-level and service keys,
  every `${...}` substitution is well formed, every `depends_on` target exists (no cycles,
  `service_healthy` only on services with a health check), ports and durations parse, no host
  port is published twice, named volumes are declared, a `build` names an existing Dockerfile;
- ZhilyeGO's: the services postgres, nats and api with the settings docs/runbook.md describes
  (DATABASE_URL agrees with the postgres service, ZHILEGO_JWT_SECRET is a required
  substitution and never a literal, JetStream keeps its store in a volume, and so on), and
  the api's Dockerfile copies every workspace member of Cargo.toml into its build stage.

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

TOP_LEVEL = {"version", "name", "services", "networks", "volumes", "configs", "secrets", "include"}
SERVICE_KEYS = {
    "annotations", "build", "cap_add", "cap_drop", "cgroup_parent", "command", "configs",
    "container_name", "cpus", "deploy", "depends_on", "develop", "devices", "dns", "dns_search",
    "domainname", "entrypoint", "env_file", "environment", "expose", "extends", "extra_hosts",
    "group_add", "healthcheck", "hostname", "image", "init", "ipc", "labels", "links", "logging",
    "mem_limit", "mem_reservation", "network_mode", "networks", "oom_score_adj", "pid",
    "platform", "ports", "privileged", "profiles", "pull_policy", "read_only", "restart",
    "secrets", "security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal",
    "sysctls", "tmpfs", "tty", "ulimits", "user", "userns_mode", "volumes", "working_dir",
}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
RESTART = {"no", "always", "on-failure", "unless-stopped"}
DURATION = re.compile(r"^(\d+(\.\d+)?(us|ms|s|m|h))+$")
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
    for key in doc:
        if key not in TOP_LEVEL and not str(key).startswith("x-"):
            problem("top level", f"unknown key {key!r}")
    services = doc.get("services")
    if not isinstance(services, dict) or not services:
        problem("services", "missing or empty")
        return {}
    declared_volumes = set((doc.get("volumes") or {}).keys())
    used_volumes = set()
    published = {}
    for where, text in strings(doc, ""):
        for name, error in substitutions(text):
            if name is None:
                problem(where, error)
    for name, svc in services.items():
        at = f"services.{name}"
        if not isinstance(svc, dict):
            problem(at, "must be a mapping")
            continue
        for key in svc:
            if key not in SERVICE_KEYS and not str(key).startswith("x-"):
                problem(at, f"unknown key {key!r}")
        if "image" not in svc and "build" not in svc:
            problem(at, "needs an image or a build")
        build = svc.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            path = os.path.join(base_dir, context, dockerfile)
            if not os.path.isfile(path):
                problem(f"{at}.build", f"{os.path.relpath(path, base_dir)} does not exist")
        if "restart" in svc and str(svc["restart"]).split(":")[0] not in RESTART:
            problem(f"{at}.restart", f"unknown policy {svc['restart']!r}")
        for dep, spec in depends_on(svc).items():
            if dep not in services:
                problem(f"{at}.depends_on", f"no service named {dep!r}")
            elif dep == name:
                problem(f"{at}.depends_on", "a service cannot depend on itself")
            cond = spec.get("condition", "service_started")
            if cond not in CONDITIONS:
                problem(f"{at}.depends_on.{dep}", f"unknown condition {cond!r}")
            if cond == "service_healthy" and dep in services and not has_healthcheck(services[dep]):
                problem(f"{at}.depends_on.{dep}", "service_healthy, but it has no health check")
        hc = svc.get("healthcheck")
        if hc is not None:
            test = hc.get("test")
            if isinstance(test, list) and (not test or test[0] not in ("CMD", "CMD-SHELL", "NONE")):
                problem(f"{at}.healthcheck.test", "a list must start with CMD, CMD-SHELL or NONE")
            elif not isinstance(test, (list, str)) and not hc.get("disable"):
                problem(f"{at}.healthcheck.test", "missing")
            for key in ("interval", "timeout", "start_period", "start_interval"):
                if key in hc and not DURATION.match(str(hc[key])):
                    problem(f"{at}.healthcheck.{key}", f"not a duration: {hc[key]!r}")
            if "retries" in hc and not (isinstance(hc["retries"], int) and hc["retries"] > 0):
                problem(f"{at}.healthcheck.retries", "must be a positive integer")
        if "stop_grace_period" in svc and not DURATION.match(str(svc["stop_grace_period"])):
            problem(f"{at}.stop_grace_period", f"not a duration: {svc['stop_grace_period']!r}")
        for entry in svc.get("ports") or []:
            try:
                _, host, target, proto = parse_port(entry)
            except (KeyError, AttributeError):
                problem(f"{at}.ports", f"cannot read {entry!r}")
                continue
            for port in filter(None, (host, target)):
                if not (port.isdigit() and 0 < int(port) < 65536) and "-" not in port:
                    problem(f"{at}.ports", f"bad port {port!r} in {entry!r}")
            if proto not in ("tcp", "udp", "sctp"):
                problem(f"{at}.ports", f"bad protocol in {entry!r}")
            if host:
                key = (host, proto)  # one port on two addresses is rarely meant; flag it
                if key in published:
                    problem(f"{at}.ports", f"host port {host} is already published by {published[key]}")
                published[key] = name
        for entry in svc.get("volumes") or []:
            if isinstance(entry, dict):
                source = entry.get("source") if entry.get("type", "volume") == "volume" else None
            else:
                source = str(entry).split(":")[0] if ":" in str(entry) else None
            if source and not source.startswith(("/", ".", "~", "$")):
                used_volumes.add(source)
                if source not in declared_volumes:
                    problem(f"{at}.volumes", f"named volume {source!r} is not declared at the top level")
        env = svc.get("environment")
        if isinstance(env, list):
            keys = [str(e).partition("=")[0] for e in env]
            for dup in {k for k in keys if keys.count(k) > 1}:
                problem(f"{at}.environment", f"{dup} is set twice")
    for unused in sorted(declared_volumes - used_volumes):
        problem("volumes", f"{unused!r} is declared but no service mounts it")
    # depends_on cycles
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


def check_zhilego(services, base_dir, problem):
    """What ZhilyeGO's docs promise about its compose file."""
    for name in ("postgres", "nats", "api"):
        if name not in services:
            problem("services", f"{name!r} is missing")
    pg, nats, api = (services.get(n) or {} for n in ("postgres", "nats", "api"))

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
        if not any(str(v).split(":")[1:2] == ["/var/lib/postgresql/data"] for v in pg.get("volumes") or []):
            problem("services.postgres.volumes", "/var/lib/postgresql/data must be on a volume")

    if nats:
        m = re.match(r"^nats:(\d+)\.(\d+)", str(nats.get("image", "")))
        if not m or (int(m.group(1)), int(m.group(2))) < (2, 10):
            problem("services.nats.image", "must be nats:2.10 or newer")
        cmd = nats.get("command") or []
        cmd = cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]
        if not ({"-js", "--jetstream"} & set(cmd)):
            problem("services.nats.command", "JetStream is not enabled (-js)")
        store = next((cmd[i + 1] for i, c in enumerate(cmd[:-1]) if c in ("-sd", "--store_dir")), None)
        targets = [str(v).split(":")[1] for v in nats.get("volumes") or [] if ":" in str(v)]
        if store is None or store not in targets:
            problem("services.nats", "the JetStream store dir (-sd) must be a mounted volume")

    if not api:
        return
    env = environment(api)
    for key in ("DATABASE_URL", "NATS_URL", "ZHILEGO_JWT_SECRET", "ZHILEGO_ENCRYPTION_KEY",
                "ZHILEGO_AUDIT_SIGNING_KEY"):
        if not env.get(key):
            problem("services.api.environment", f"{key} is not set")
    for key in ("ZHILEGO_JWT_SECRET", "ZHILEGO_ENCRYPTION_KEY", "ZHILEGO_AUDIT_SIGNING_KEY"):
        secret = env.get(key) or ""
        if secret and not re.fullmatch(r"\$\{" + key + r":?\?[^}]*\}", secret):
            problem(f"services.api.environment.{key}",
                    f"must be a required substitution like ${{{key}:?set it}}, not a value")
    deps = depends_on(api)
    db_url = env.get("DATABASE_URL") or ""
    if db_url and "$" not in db_url:
        u = urlsplit(db_url)
        if u.scheme not in ("postgres", "postgresql"):
            problem("services.api.environment.DATABASE_URL", "must be a postgres:// URL")
        elif u.hostname not in services:
            problem("services.api.environment.DATABASE_URL", f"host {u.hostname!r} is not a service")
        else:
            if deps.get(u.hostname, {}).get("condition") != "service_healthy":
                problem("services.api.depends_on", f"{u.hostname} must be service_healthy")
            host_env = environment(services[u.hostname])
            for part, key in ((u.username, "POSTGRES_USER"), (u.password, "POSTGRES_PASSWORD"),
                              (u.path.lstrip("/"), "POSTGRES_DB")):
                if host_env.get(key) and part != host_env[key]:
                    problem("services.api.environment.DATABASE_URL",
                            f"does not match {u.hostname}'s {key}")
    nats_url = env.get("NATS_URL") or ""
    if nats_url and "$" not in nats_url:
        u = urlsplit(nats_url)
        if u.scheme != "nats" or u.hostname not in services:
            problem("services.api.environment.NATS_URL", "must be nats://<a service>:4222")
        elif u.hostname not in deps:
            problem("services.api.depends_on", f"should name {u.hostname}")
    listen = env.get("ZHILEGO_LISTEN", "0.0.0.0:8080") or ""
    listen_port = listen.rsplit(":", 1)[-1]
    targets = [parse_port(p)[2] for p in api.get("ports") or []]
    if listen_port not in targets:
        problem("services.api.ports", f"the API listens on {listen_port} but that port is not published")
    test = (api.get("healthcheck") or {}).get("test") or []
    words = " ".join(map(str, test if isinstance(test, list) else [test])).split()
    if not any("/healthz" in w or "/readyz" in w for w in words):
        problem("services.api.healthcheck", "should call /healthz")
    check_payments(services, problem)
    build = api.get("build")
    if build is not None:
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        path = os.path.join(base_dir, context, dockerfile)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            stages = [m.start() for m in re.finditer(r"^FROM\s", text, re.MULTILINE | re.IGNORECASE)]
            runtime = text[stages[-1]:] if stages else text  # the final stage
            runtime = "\n".join(l for l in runtime.splitlines() if not l.lstrip().startswith("#"))
            for tool in ("curl", "wget"):
                if any(w.split("/")[-1] == tool for w in words) and tool not in runtime:
                    problem("services.api.healthcheck", f"uses {tool}, which the image's final stage does not install")
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
    if not isinstance(doc, dict):
        problem("top level", "must be a mapping")
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
