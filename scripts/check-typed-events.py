#!/usr/bin/env python3
"""Read-side code matches on the domain's typed events; it never looks events up by name.

Fails (exit 1) when code in the read side's crates reads a stored event's payload or type
string, uses an event type's name as a string literal, or brings back the old `field::<T>`
payload lookups. The one decoding step (`projections/src/event.rs`) and the domain's own
event and upcasting modules are where those names are allowed to live.

Usage: scripts/check-typed-events.py [repo root]
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent)
READ_SIDE = ["projections/src", "api/src", "commands/src", "bots/src"]
ALLOWED_FILES = {"projections/src/event.rs"}
# A NATS message's payload is the bus frame, decoded by `bus::decode` into a stored event.
# A panic's payload is what panic! was given, read by the panic hook (api/src/telemetry.rs).
ALLOWED_LINES = [re.compile(r"message\.payload\b"), re.compile(r"PanicHookInfo::payload\(")]


def event_type_names():
    text = (ROOT / "domain/src/upcast.rs").read_text()
    block = text[text.index("pub const VERSIONS") : text.index("pub struct Upcaster")]
    names = re.findall(r'\(\s*"([A-Z][A-Za-z]+)",\s*"\d+\.\d+"\s*\)', block)
    if len(names) < 20:
        sys.exit(f"check-typed-events: found only {len(names)} event types in upcast::VERSIONS")
    return names


def main():
    names = event_type_names()
    rules = [
        (re.compile(r"\bpayload\b"), "reads an event's payload"),
        (re.compile(r"\bevent_type\b"), "reads an event's type string"),
        (re.compile(r"\bevent_version\b"), "reads an event's version string"),
        (re.compile(r"\bfield::<"), "looks a payload field up by name"),
        (re.compile(r'"(' + "|".join(names) + r')"'), "names an event type as a string"),
    ]
    found = []
    for folder in READ_SIDE:
        for path in sorted((ROOT / folder).rglob("*.rs")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ALLOWED_FILES:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("//", 1)[0]
                if any(allowed.search(code) for allowed in ALLOWED_LINES):
                    continue
                for pattern, what in rules:
                    if pattern.search(code):
                        found.append(f"{rel}:{number}: {what}: {line.strip()}")
    if found:
        print("read-side code must match on typed events (projections::Decoded):")
        print("\n".join(found))
        return 1
    print(f"typed events: no payload or type-name lookups in {', '.join(READ_SIDE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
