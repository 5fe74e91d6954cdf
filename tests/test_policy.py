"""Policy: target tiers and the never-warmer, never-metadata-to-Archive rules (pure)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retier import names
from retier.policy import TIERS, Policy, PolicyError, canonical_tier, decide

VOLUME = names.parse("duplicity-full.20240101T020304Z.vol1.difftar.gpg")
MANIFEST = names.parse("duplicity-full.20240101T020304Z.manifest.gpg")
SIGS = names.parse("duplicity-new-signatures.20240101T020304Z.to.20240102T020304Z.sigtar.gpg")
JSONSTAT = names.parse("duplicity-inc.20240101T020304Z.to.20240102T020304Z.jsonstat.gpg")
UNKNOWN = names.parse("holiday-photos.zip")


def test_fixtures_are_what_they_claim():
    assert [n.kind.value for n in (VOLUME, MANIFEST, SIGS, JSONSTAT, UNKNOWN)] == [
        "volume",
        "manifest",
        "signatures",
        "jsonstat",
        "unknown",
    ]


@pytest.mark.parametrize(
    "raw, tier", [("hot", "Hot"), ("COOL", "Cool"), (" Cold ", "Cold"), ("aRcHiVe", "Archive")]
)
def test_tier_names_are_case_insensitive_and_canonical(raw, tier):
    assert canonical_tier(raw) == tier


def test_unknown_tier_name_is_refused():
    with pytest.raises(PolicyError, match="not an access tier"):
        canonical_tier("Glacier")


def test_metadata_can_never_be_sent_to_archive():
    with pytest.raises(PolicyError, match="online"):
        Policy(metadata_tier="Archive")


def test_hot_volume_goes_to_the_volume_tier():
    d = decide(VOLUME, "Hot", None, Policy())
    assert (d.move, d.current, d.target) == (True, "Hot", "Cold")


def test_volume_already_at_target_is_kept():
    d = decide(VOLUME, "Cold", None, Policy())
    assert not d.move and d.reason == "already at target"


@pytest.mark.parametrize("current", ["Cold", "Archive"])
def test_volume_is_never_moved_warmer(current):
    d = decide(VOLUME, current, None, Policy(volume_tier="Cool"))
    assert not d.move and "warmer" in d.reason


def test_rehydrating_volume_is_not_touched():
    d = decide(VOLUME, "Archive", "rehydrate-pending-to-hot", Policy(volume_tier="Archive"))
    assert not d.move and "rehydrating" in d.reason


@pytest.mark.parametrize("meta", [MANIFEST, SIGS, JSONSTAT])
def test_metadata_stays_as_uploaded_by_default(meta):
    assert not decide(meta, "Hot", None, Policy(volume_tier="Archive")).move


@pytest.mark.parametrize("meta", [MANIFEST, SIGS, JSONSTAT])
def test_metadata_moves_only_to_the_online_tier_asked_for(meta):
    d = decide(meta, "Hot", None, Policy(volume_tier="Archive", metadata_tier="Cool"))
    assert (d.move, d.target) == (True, "Cool")


def test_unknown_names_are_never_touched_whatever_the_settings():
    d = decide(UNKNOWN, "Hot", None, Policy(volume_tier="Archive", metadata_tier="Cold"))
    assert not d.move and d.reason == "not a duplicity object"


@pytest.mark.parametrize("current", [None, "P10", "Premium"])
def test_unknown_current_tier_is_left_alone(current):
    assert not decide(VOLUME, current, None, Policy()).move


@given(
    kind=st.sampled_from([VOLUME, MANIFEST, SIGS, JSONSTAT, UNKNOWN]),
    current=st.sampled_from([*TIERS, "cool", " ARCHIVE ", None, "P10"]),
    status=st.sampled_from([None, "", "rehydrate-pending-to-hot", "rehydrate-pending-to-cold"]),
    volume_tier=st.sampled_from(["Cool", "Cold", "Archive"]),
    metadata_tier=st.sampled_from([None, "Hot", "Cool", "Cold"]),
)
def test_no_decision_ever_moves_warmer_or_archives_metadata(
    kind, current, status, volume_tier, metadata_tier
):
    d = decide(kind, current, status, Policy(volume_tier=volume_tier, metadata_tier=metadata_tier))

    # The whole rule, stated independently of decide(): a recognised object with a
    # target, not rehydrating, in a known tier warmer than its target, moves there;
    # nothing else moves.
    target = {
        names.Kind.VOLUME: volume_tier,
        names.Kind.MANIFEST: metadata_tier,
        names.Kind.SIGNATURES: metadata_tier,
        names.Kind.JSONSTAT: metadata_tier,
        names.Kind.UNKNOWN: None,
    }[kind.kind]
    known = (
        current.strip().capitalize() if current and current.strip().capitalize() in TIERS else None
    )
    must_move = (
        target is not None
        and not status
        and known is not None
        and TIERS.index(target) > TIERS.index(known)
    )
    assert d.move is must_move
    assert (d.name, d.kind) == (kind.name, kind.kind.value)
    if d.move:
        assert (d.current, d.target) == (known, target)
        assert d.to_dict()["to"] == target
        assert TIERS.index(d.target) > TIERS.index(d.current)
        assert kind.kind is not names.Kind.UNKNOWN
        assert not (kind.is_metadata and d.target == "Archive")
    else:
        assert d.to_dict()["to"] == d.current


@pytest.mark.parametrize("obj", [VOLUME, MANIFEST, SIGS])
@pytest.mark.parametrize("metadata_tier", [None, "Cool"])
def test_a_par2_index_is_read_like_metadata_and_recovery_blocks_follow_their_object(
    obj, metadata_tier
):
    policy = Policy("Archive", metadata_tier)
    index, blocks = names.parse(obj.name + ".par2"), names.parse(obj.name + ".vol000+200.par2")
    # duplicity reads "<object>.par2" with every object it downloads: never Archive
    assert policy.target(index) == metadata_tier
    assert policy.target(blocks) == policy.target(obj)
    kept = decide(index, "Hot", None, policy)
    assert kept.move is (metadata_tier is not None)
    if not kept.move:
        assert kept.reason == "par2 index stays as uploaded"
