"""Hostile inputs for retier's two parsers, and the checks every one must pass.

Shared by tests/test_fuzz.py (a fast slice in every run) and bench/bench_fuzz.py (at least
100,000 inputs). A seeded mutation fuzzer, in the spirit of atheris but with no native build:
it starts from well-formed BlobCreated events and real duplicity names and breaks them the ways
an attacker or a buggy publisher would (fields dropped or of the wrong JSON type, URLs with
control characters, percent-encoded dots and slashes, queries that look like SAS tokens, hosts
that are not storage endpoints, subjects that disagree with the URL, names with duplicity's
tokens spliced in, cut or repeated). Same seed, same inputs.
"""

from __future__ import annotations

import copy
import functools
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

from retier import events, names
from retier.names import DuplicityName, Kind
from retier.service import HANDLED, IGNORED, INVALID, RETRY, RetierService
from retier.settings import load_settings
from retier.storage import BlobItem, TierResult

ACCOUNT = "mybackupacct"
CONTAINER = "backups"
TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/backups"
    f"/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}"
)
T1, T2 = "20240101T020304Z", "20240102T020304Z"

SEED_NAMES = [
    f"duplicity-full.{T1}.vol1.difftar.gpg",
    f"host1/duplicity-inc.{T1}.to.{T2}.vol12.difftar.gz",
    f"duplicity-full.{T1}.manifest.gpg",
    f"duplicity-inc.{T1}.to.{T2}.manifest",
    f"duplicity-full-signatures.{T1}.sigtar.gpg",
    f"duplicity-new-signatures.{T1}.to.{T2}.sigtar.p7m",
    f"duplicity-full.{T1}.jsonstat.gpg",
    f"duplicity-full.{T1}.vol3.difftar.gpg.par2",
    f"duplicity-full.{T1}.vol3.difftar.gpg.vol000+200.par2",
    f"duplicity-full.{T1}.manifest.gpg.vol00+01.par2",
    "df.lxb9dc.3.dt.g",
    "di.lxb9dc.lxc1gs.m",
    "dfs.lxb9dc.st.z",
    "archive/cold-duplicity-full.20240101T020304Z.vol7.difftar",
    "notes.txt",
    "duplicity-full.20240101T020304Z.vol1.difftar.gpg.part",
]

# Pieces of duplicity's grammar and of hostile text, spliced into names, URLs and subjects.
TOKENS = [
    "duplicity-full.",
    "duplicity-inc.",
    "duplicity-full-signatures.",
    "duplicity-new-signatures.",
    ".to.",
    ".vol",
    ".difftar",
    ".manifest",
    ".sigtar",
    ".jsonstat",
    ".gpg",
    ".gz",
    ".p7m",
    ".par2",
    ".vol000+200",
    ".part",
    ".p",
    ".g",
    ".z",
    ".m",
    ".dt",
    ".st",
    "df.",
    "di.",
    T1,
    T2,
    "19700101T000000Z",
    "20240231T000000Z",
    "0",
    "01",
    "36",
    "z",
    "/",
    "//",
    "/../",
    "/./",
    "..",
    "%2F",
    "%2e%2e",
    "%00",
    "%ff",
    "%C0%AF",
    "%",
    "?",
    "#",
    "@",
    ":",
    "?sv=2024-01-01&se=2024-01-02",
    "\x00",
    "\n",
    "\t",
    " ",
    "\u200b",
    "\u0085",
    "\ufeff",
    "\ud800",
    "\U0001f600",
    "é",
    "Ω",
    "+",
    "\\",
    "'",
    '"',
]

HOSTS = [
    f"https://{ACCOUNT}.blob.core.windows.net",
    f"https://{ACCOUNT}.z12.blob.storage.azure.net",
    f"https://{ACCOUNT}.dfs.core.windows.net",
    f"http://127.0.0.1:10000/{ACCOUNT}",
    f"http://localhost:10000/{ACCOUNT}",
    f"http://azurite/{ACCOUNT}",
    "https://evil.example.com",
    f"https://{ACCOUNT}.blob.core.windows.net.evil.example",
    f"https://user:pw@{ACCOUNT}.blob.core.windows.net",
    f"https://{ACCOUNT}.blob.core.windows.net:99999",
    f"ftp://{ACCOUNT}.blob.core.windows.net",
    f"https://{ACCOUNT.upper()}.BLOB.core.windows.net",
    "https://[::1]",
    "https://",
    "",
]

JSON_ODDITIES: list[object] = [
    None,
    True,
    0,
    -1,
    2**63,
    1.5,
    float("nan"),
    "",
    "x" * 2000,
    [],
    {},
    ["Microsoft.Storage.BlobCreated"],
    {"url": "https://x"},
]


def _mutate_text(rng: random.Random, text: str, steps: int) -> str:
    for _ in range(steps):
        op = rng.randrange(7)
        at = rng.randint(0, len(text))
        if op == 0:
            text = text[:at] + rng.choice(TOKENS) + text[at:]
        elif op == 1 and text:
            end = min(len(text), at + rng.randint(1, 8))
            text = text[:at] + text[end:]
        elif op == 2 and text:
            i = rng.randrange(len(text))
            text = (
                text[:i]
                + chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x2FF)]))
                + text[i + 1 :]
            )
        elif op == 3 and text:
            end = min(len(text), at + rng.randint(1, 20))
            text = text[:at] + text[at:end] * rng.randint(2, 4) + text[end:]
        elif op == 4:
            text = text.upper() if rng.random() < 0.5 else text.lower()
        elif op == 5:
            text = rng.choice(TOKENS) + text
        else:
            text = text + rng.choice(TOKENS)
    return text


def hostile_name(rng: random.Random) -> str:
    """A blob name: mostly a real duplicity name with 0-4 mutations, sometimes pure noise."""
    if rng.random() < 0.1:
        return "".join(rng.choice(TOKENS) for _ in range(rng.randint(0, 12)))
    return _mutate_text(rng, rng.choice(SEED_NAMES), rng.choice([0, 0, 1, 1, 1, 2, 3, 4]))


def valid_event(name: str, *, cloud: bool = False, host: str = HOSTS[0]) -> dict:
    url = f"{host}/{CONTAINER}/{quote(name, safe='/', errors='surrogatepass')}"
    data = {
        "api": "PutBlockList",
        "eTag": '"0x8D4BCC2E4835CD0"',
        "contentType": "application/octet-stream",
        "contentLength": 209715200,
        "blobType": "BlockBlob",
        "url": url,
        "sequencer": "00000000000004420000000000028963",
    }
    subject = f"/blobServices/default/containers/{CONTAINER}/blobs/{name}"
    if cloud:
        return {
            "source": TOPIC,
            "subject": subject,
            "type": events.BLOB_CREATED,
            "time": "2024-01-01T02:10:00Z",
            "id": "831e1650-001e-001b-66ab-eeb76e069631",
            "data": data,
            "specversion": "1.0",
        }
    return {
        "topic": TOPIC,
        "subject": subject,
        "eventType": events.BLOB_CREATED,
        "eventTime": "2024-01-01T02:10:00Z",
        "id": "831e1650-001e-001b-66ab-eeb76e069631",
        "data": data,
        "dataVersion": "",
        "metadataVersion": "1",
    }


def hostile_event(rng: random.Random) -> object:
    """An event: usually a documented one broken in one to four places, sometimes not an object."""
    roll = rng.random()
    if roll < 0.03:
        return rng.choice(JSON_ODDITIES)
    name = hostile_name(rng)
    host = rng.choice(HOSTS) if rng.random() < 0.3 else HOSTS[0]
    event = valid_event(name, cloud=rng.random() < 0.3, host=host)
    for _ in range(rng.choice([0, 1, 1, 2, 3, 4])):
        target = (
            event["data"] if rng.random() < 0.5 and isinstance(event.get("data"), dict) else event
        )
        keys = list(target) or ["id"]
        key = rng.choice(keys + ["specversion", "eventType", "accessTier"])
        op = rng.randrange(5)
        if op == 0:
            target.pop(key, None)
        elif op == 1:
            target[key] = copy.deepcopy(rng.choice(JSON_ODDITIES))
        elif op == 2 and isinstance(target.get(key), str):
            target[key] = _mutate_text(rng, target[key], rng.randint(1, 3))
        elif op == 3:
            # The url and the subject are what an attacker crafts; keep them agreeing at times,
            # so the checks behind the subject comparison are reached.
            mutated = _mutate_text(rng, name, rng.randint(1, 3))
            event["subject"] = f"/blobServices/default/containers/{CONTAINER}/blobs/{mutated}"
            if isinstance(event.get("data"), dict):
                raw = (
                    mutated
                    if rng.random() < 0.5
                    else quote(mutated, safe="/", errors="surrogatepass")
                )
                event["data"]["url"] = f"{host}/{CONTAINER}/{raw}"
        else:
            event["type" if "specversion" in event else "eventType"] = rng.choice(
                [
                    events.BLOB_CREATED,
                    "Microsoft.Storage.BlobDeleted",
                    "",
                    "microsoft.storage.blobcreated",
                ]
            )
    return event


# -- oracles ------------------------------------------------------------------------------------


class UnexpectedBehaviour(AssertionError):
    """A parser did something no input may make it do."""


def check_name(name: str) -> DuplicityName:
    """names.parse must return, never raise, for any str; what it recognises must be coherent."""
    parsed = names.parse(name)
    if parsed.name != name:
        raise UnexpectedBehaviour(f"parse changed the name: {name!r}")
    if parsed.kind is Kind.UNKNOWN:
        if parsed.set_id is not None or parsed.par2:
            raise UnexpectedBehaviour(f"unknown name carries fields: {name!r}")
        return parsed
    if not name.startswith(parsed.prefix):
        raise UnexpectedBehaviour(f"prefix is not a prefix: {name!r}")
    if parsed.par2:
        protected = names.parse(parsed.par2_of)
        if (protected.kind, protected.set_id, protected.par2) != (
            parsed.kind,
            parsed.set_id,
            False,
        ):
            raise UnexpectedBehaviour(f"par2 file and its object disagree: {name!r}")
    names.set_key(parsed)  # never raises for a recognised name
    if parsed.kind is Kind.MANIFEST:
        names.volume_listing_prefix(parsed)
    return parsed


def check_event(event: object) -> events.BlobCreated | events.EventError:
    """parse_event may only return a BlobCreated or raise InvalidEvent / IgnoredEvent."""
    try:
        created = events.parse_event(event, account=ACCOUNT, containers=[CONTAINER])  # type: ignore[arg-type]
    except (events.InvalidEvent, events.IgnoredEvent) as exc:
        if not isinstance(exc.reason, str) or not exc.reason or len(exc.reason) > 400:
            raise UnexpectedBehaviour(f"reason missing or unbounded: {exc.reason!r:.200}") from None
        return exc
    if not isinstance(created, events.BlobCreated) or not created.blob:
        raise UnexpectedBehaviour(f"parse_event returned {created!r:.200}")
    if created.container != CONTAINER or created.account != ACCOUNT:
        raise UnexpectedBehaviour(f"accepted an event for another account or container: {created}")
    return created


@dataclass
class StorageCallRecorderStandIn:
    """Stands in for BlobStore and records every call; no storage behind it.

    A listing returns the event's own blob as a never-tiered Hot blob (so handled events go as
    deep as the service goes), nothing else. Azurite is not needed to show what a rejected
    event may not do: call storage at all.
    """

    existing: str | None = None
    calls: list[tuple] = field(default_factory=list)

    def list_blobs(self, container: str, prefix: str | None = None) -> Iterator[BlobItem]:
        self.calls.append(("list_blobs", container, prefix))
        if self.existing is not None and self.existing.startswith(prefix or ""):
            yield BlobItem(self.existing, 1, "Hot", True, None, None, None, None)

    def get_hold(self, container: str) -> str | None:
        self.calls.append(("get_hold", container))
        return None

    def set_tier(self, container, blob_names, tier, **kwargs) -> list[TierResult]:
        blob_names = list(blob_names)
        self.calls.append(("set_tier", container, tuple(blob_names), tier))
        return [TierResult(n, tier, "ok", 200) for n in blob_names]


@functools.lru_cache(maxsize=1)
def _settings():
    return load_settings(
        {
            "RETIER_STORAGE__blobServiceUri": f"https://{ACCOUNT}.blob.core.windows.net",
            "RETIER_VOLUME_TIER": "Archive",
            "RETIER_CONTAINERS": CONTAINER,
        }
    )


def check_service(event: object) -> tuple[str, events.BlobCreated | events.EventError]:
    """The service's outcome for an event; a rejected one must make no storage call at all."""
    parsed = check_event(event)
    recorder = StorageCallRecorderStandIn(
        existing=parsed.blob if isinstance(parsed, events.BlobCreated) else None
    )
    outcome = RetierService(_settings(), recorder).handle_event(event)  # type: ignore[arg-type]
    if isinstance(parsed, events.EventError):
        expected = IGNORED if isinstance(parsed, events.IgnoredEvent) else INVALID
        if outcome.status != expected or recorder.calls:
            raise UnexpectedBehaviour(
                f"rejected event ({parsed.reason}) gave {outcome.status} and {len(recorder.calls)} call(s)"
            )
        return outcome.status, parsed
    name = names.parse(parsed.blob)
    # Only a manifest's event lists its set; with no metadata tier set (as here), no other
    # event may make a single request, a volume's included.
    if recorder.calls and not (name.kind is Kind.MANIFEST and not name.par2):
        raise UnexpectedBehaviour(f"{name.kind.value} event {parsed.blob!r:.200} reached storage")
    for call in recorder.calls:
        if call[1] != CONTAINER:
            raise UnexpectedBehaviour(f"a call for another container: {call!r:.200}")
        if call[0] == "set_tier":
            # The only blob this stand-in lists is the event's own: it may move only if it is a
            # volume of a set whose manifest is listed, which it cannot be here.
            raise UnexpectedBehaviour(f"tier set from a lone event: {call!r:.200}")
    if outcome.status not in (HANDLED, IGNORED, RETRY):
        raise UnexpectedBehaviour(f"accepted event ended {outcome.status}")
    return outcome.status, parsed


@dataclass
class FuzzReport:
    inputs: int = 0
    outcomes: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)


def run_names(count: int, seed: int) -> FuzzReport:
    rng, report = random.Random(seed), FuzzReport()
    for _ in range(count):
        parsed = check_name(hostile_name(rng))
        report.inputs += 1
        report.kinds[parsed.kind.value + (" par2" if parsed.par2 else "")] += 1
    return report


def run_events(count: int, seed: int) -> FuzzReport:
    rng, report = random.Random(seed), FuzzReport()
    for _ in range(count):
        status, parsed = check_service(hostile_event(rng))
        report.inputs += 1
        report.outcomes[status] += 1
        if isinstance(parsed, events.EventError):
            # grouped by wording, not by the hostile values a reason quotes
            report.reasons[parsed.reason.split("'")[0].split(":")[0].strip()[:60]] += 1
        else:
            report.kinds[names.parse(parsed.blob).kind.value] += 1
    return report
