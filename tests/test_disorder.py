"""Disorder: any order, duplicates and late arrivals of BlobCreated events end in the same state, each volume tiered once.

Hypothesis builds a timeline on Azurite: two backup sets (a full, and a full of another
machine's chain with its own --file-prefix) and an unfinished incremental are uploaded in
duplicity's order within each set, the sets interleaved; every blob's event is delivered one
to three times, each delivery at any point after the blob exists (late arrivals, a manifest's
event after its volumes', volume events after the manifest's); and, sometimes,
`remove-older-than` deletes the first set, blob by blob in any order, with more of its events
replayed afterwards. Storage is modelled honestly: an event is delivered only after its blob was
uploaded; only the modelled deletion removes blobs.

Every Set Blob Tier that reaches Azurite is counted per blob by the fault proxy (with no
faults), so "each volume's tier is set at most once" is checked on the wire, sub-request by
sub-request, not inferred from the end state.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faultbed.eventgrid import HANDLED, IGNORED, function_endpoint, serving
from faultbed.proxy import FaultProxy
from retier.emulate import events_for
from retier.service import RetierService
from retier.settings import Connection, load_settings
from retier.storage import BlobItem, BlobStore

pytestmark = pytest.mark.azurite

TIER = "Archive"
T1, T2, T3 = "20240101T020304Z", "20240108T020304Z", "20240109T020304Z"
# duplicity's upload order within each set: volumes, signatures, manifest
OLD = [  # the set remove-older-than deletes
    *(f"duplicity-full.{T1}.vol{i}.difftar.gpg" for i in (1, 2, 3)),
    f"duplicity-full-signatures.{T1}.sigtar.gpg",
    f"duplicity-full.{T1}.manifest.gpg",
]
OTHER = [  # another machine's chain in the same container (--file-prefix host2-)
    *(f"host2-duplicity-full.{T2}.vol{i}.difftar.gpg" for i in (1, 2)),
    f"host2-duplicity-full-signatures.{T2}.sigtar.gpg",
    f"host2-duplicity-full.{T2}.manifest.gpg",
]
UNFINISHED = [f"duplicity-inc.{T1}.to.{T3}.vol{i}.difftar.gpg" for i in (1, 2)]  # no manifest
FOREIGN = ["notes.txt"]
GROUPS = {"old": OLD, "other": OTHER, "unfinished": UNFINISHED, "foreign": FOREIGN}
FINISHED_VOLUMES = frozenset(n for n in OLD + OTHER if ".difftar" in n)


@st.composite
def timelines(draw):
    """[(op, blob)] with op "upload", "deliver" or "delete", in the order they happen."""
    # Interleave the groups' uploads, keeping each group's own order.
    labels = [g for g, names in GROUPS.items() for _ in names]
    labels = draw(st.permutations(labels))
    cursor = Counter()
    uploads = []
    for label in labels:
        uploads.append(GROUPS[label][cursor[label]])
        cursor[label] += 1
    at = {name: float(t) for t, name in enumerate(uploads)}
    end = float(len(uploads))
    timed = [(at[n], 0, "upload", n) for n in uploads]
    deleted_at = None
    if draw(st.booleans()):
        # remove-older-than: some time after the old set finished, its blobs in any order
        start = at[OLD[-1]] + draw(st.integers(0, len(uploads))) + 0.5
        order = draw(st.permutations(OLD))
        for k, name in enumerate(order):
            timed.append((start + k, 1, "delete", name))
        deleted_at = start
        end = max(end, start + len(OLD))
    tie = 0
    for name in uploads:
        for _ in range(draw(st.integers(1, 3))):  # at least once; duplicates
            lateness = draw(st.integers(0, int(end - at[name]) + 2))
            tie += 1
            timed.append((at[name] + lateness + 0.25, 2 + tie, "deliver", name))
    if deleted_at is not None:  # replays of the deleted set's events
        for name in draw(st.lists(st.sampled_from(OLD), max_size=4)):
            tie += 1
            timed.append((end + 1, 2 + tie, "deliver", name))
    timed.sort()
    return [(op, name) for _, _, op, name in timed]


@pytest.fixture(scope="module")
def disorder_bed(azurite_connection_string):
    """A proxy with no faults (it counts Set Blob Tier per blob) and the Function's service behind it."""
    with FaultProxy.in_front_of(azurite_connection_string) as proxy:
        conn = Connection(connection_string=proxy.connection_string(azurite_connection_string))
        env = {"RETIER_STORAGE": conn.connection_string, "RETIER_VOLUME_TIER": TIER}
        service = RetierService(load_settings(env), BlobStore.from_connection(conn))
        yield proxy, service


# A fast slice in the default run; bench/run_faults --disorder-examples N runs a long one.
EXAMPLES = int(os.environ.get("RETIER_DISORDER_EXAMPLES", "15"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(timeline=timelines())
def test_any_order_of_events_ends_the_same_with_each_volume_tiered_once(
    timeline, disorder_bed, blob_service
):
    proxy, service = disorder_bed
    container = f"d{uuid.uuid4().hex[:20]}"
    client = blob_service.create_container(container)
    entry = function_endpoint()
    events: dict[str, dict] = {}
    gone: set[str] = set()
    try:
        with serving(service):
            for op, name in timeline:
                if op == "upload":
                    blob = client.get_blob_client(name)
                    sent = blob.upload_blob(b"duplicity bytes " + name.encode())
                    item = BlobItem(
                        name, 1, "Hot", True, None, sent["last_modified"], None, None, sent["etag"]
                    )
                    (events[name],) = events_for(service.store, container, [item])
                elif op == "delete":
                    client.delete_blob(name)
                    gone.add(name)
                else:
                    answer = entry(events[name])
                    outcome = answer.outcome or {}
                    assert answer.status == 200, answer.detail
                    assert outcome.get("status") in (HANDLED, IGNORED) and outcome["reason"]
                    assert not outcome.get("failures"), outcome
        end = {b.name: b.blob_tier for b in client.list_blobs()}
        counts = proxy.tier_change_counts(container)
    finally:
        client.delete_container()

    uploaded = [n for names in GROUPS.values() for n in names]
    expected = {n: TIER if n in FINISHED_VOLUMES else "Hot" for n in uploaded if n not in gone}
    assert end == expected
    # on the wire: only volumes of finished sets, each at most once, and every one still there once
    assert set(counts) <= FINISHED_VOLUMES
    assert max(counts.values(), default=0) <= 1
    assert {n for n in FINISHED_VOLUMES if n not in gone} <= set(counts)
