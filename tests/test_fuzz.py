"""Hostile input: events.parse_event and names.parse never fail in an unplanned way, a rejected
event (or any but a manifest's) never reaches storage, and no input can forge a log line. A fast slice of the fuzzing
that bench/run_fuzz runs at 100,000+ inputs (tests/fuzz_support.py holds both)."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
from pathlib import Path

import fuzz_support as fz
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retier import events, names
from retier.service import HANDLED, IGNORED, INVALID

ROOT = Path(__file__).resolve().parent.parent
SLICE = 4000  # inputs per seeded run here; bench/run_fuzz runs 100,000 and more

name_text = st.lists(st.sampled_from(fz.TOKENS) | st.text(max_size=3), min_size=0, max_size=12).map(
    "".join
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name_text | st.text(max_size=80) | st.sampled_from(fz.SEED_NAMES))
def test_any_text_parses_to_a_name_or_unknown_and_never_raises(text):
    fz.check_name(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_any_mutated_event_is_handled_or_rejected_and_a_rejected_one_touches_no_storage(seed):
    fz.check_service(fz.hostile_event(random.Random(seed)))


@pytest.mark.parametrize("seed", [1, 2])
def test_a_seeded_slice_of_the_benchmark_fuzz_finds_nothing(seed):
    named = fz.run_names(SLICE, seed)
    assert named.inputs == SLICE
    # The mutations keep enough names recognisable to reach every kind, par2 files included.
    assert {"volume", "manifest", "signatures", "jsonstat", "volume par2"} <= set(named.kinds)
    handled = fz.run_events(SLICE, seed)
    assert handled.inputs == SLICE
    # Every road is taken: rejected as malformed, ignored, and accepted through to storage.
    assert all(handled.outcomes[s] > SLICE // 400 for s in (HANDLED, IGNORED, INVALID))
    assert len(handled.reasons) > 30


def test_the_recorder_would_see_a_storage_call(monkeypatch):
    """The oracle can fail: a service that listed before validating, or on a volume's event, is caught."""
    from retier.service import RetierService

    original = RetierService.handle_event

    def lists_first(self, event):
        list(self.store.list_blobs(fz.CONTAINER, ""))
        return original(self, event)

    monkeypatch.setattr(RetierService, "handle_event", lists_first)
    with pytest.raises(fz.UnexpectedBehaviour, match="call"):
        fz.check_service({"eventType": "Microsoft.Storage.BlobDeleted"})
    with pytest.raises(fz.UnexpectedBehaviour, match="volume event .* reached storage"):
        fz.check_service(fz.valid_event(fz.SEED_NAMES[0]))


def test_a_valid_event_for_a_manifest_reaches_storage_through_the_stand_in():
    event = fz.valid_event(fz.SEED_NAMES[2])
    recorder = fz.StorageCallRecorderStandIn(existing=fz.SEED_NAMES[2])
    outcome = fz.RetierService(fz._settings(), recorder).handle_event(event)
    assert outcome.status == HANDLED and [c[0] for c in recorder.calls] == ["list_blobs"]


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_no_hostile_event_can_forge_a_log_line():
    capture = _Lines()
    service_logger = logging.getLogger("retier.service")
    service_logger.addHandler(capture)
    old_level = service_logger.level
    service_logger.setLevel(logging.DEBUG)
    try:
        fz.run_events(SLICE, 3)
        # an event id chosen to look like a second log line
        forged = dict(fz.valid_event("notes.txt"), id="x\nERROR retier: fake entry\u2028")
        fz.check_service(forged)
        fz.check_service({"eventType": "x", "id": "y\r\nWARNING z"})
    finally:
        service_logger.removeHandler(capture)
        service_logger.setLevel(old_level)
    assert len(capture.messages) >= SLICE
    broken = [m for m in capture.messages if not m.isprintable()]
    assert broken == []
    assert any("x\\nERROR retier: fake entry\\u2028" in m for m in capture.messages)


def test_names_parse_refuses_what_is_not_text():
    with pytest.raises(TypeError):
        names.parse(b"duplicity-full.20240101T020304Z.manifest")  # type: ignore[arg-type]
    with pytest.raises(events.InvalidEvent):
        events.parse_event(b"{}")  # type: ignore[arg-type]


def test_the_fuzz_benchmark_runs_and_reports(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_fuzz.py"), "--inputs", "300", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [r["target"] for r in result["runs"]] == ["names.parse", "events + service"]
    assert all(r["inputs"] == 300 and r["failures"] == 0 for r in result["runs"])
