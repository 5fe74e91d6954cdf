"""Tests for retier.names, with duplicity's own file_naming as the oracle."""

from __future__ import annotations

import calendar
import contextlib
import functools
import itertools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from duplicity import config, dup_time, file_naming
from duplicity_writer import (
    PREFIX_ATTRS,
    Prefixes,
    b36,
    duplicity_configured,
    write_name,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from retier.names import (
    DuplicityName,
    Kind,
    manifest_listing_prefix,
    parse,
    set_key,
    volume_listing_prefix,
)

# The autouse fixture below only restores duplicity's globals after a test; the
# helpers already restore them around every call, so reusing it across
# hypothesis examples is harmless.
SETTINGS = settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

TIME_ATTRS = ("curtime", "curtimestr", "prevtime", "prevtimestr")

T1, T2, T3 = "20240101T020304Z", "20240102T020304Z", "20240103T020304Z"
FIRST_SECOND, LAST_SECOND = -2177452800, 4102444799  # 1901-01-01T00:00:00Z, 2099-12-31T23:59:59Z
DUP_TYPES = ("full", "inc", "full-sig", "new-sig", "full-stat", "inc-stat")
OUR_READING = {  # duplicity's ParseResults.type (and manifest flag) -> our (kind, type)
    ("full", False): (Kind.VOLUME, "full"),
    ("inc", False): (Kind.VOLUME, "inc"),
    ("full", True): (Kind.MANIFEST, "full"),
    ("inc", True): (Kind.MANIFEST, "inc"),
    ("full-sig", False): (Kind.SIGNATURES, "full"),
    ("new-sig", False): (Kind.SIGNATURES, "inc"),
    ("full-stat", False): (Kind.JSONSTAT, "full"),
    ("inc-stat", False): (Kind.JSONSTAT, "inc"),
}


@pytest.fixture(autouse=True)
def restore_duplicity_globals() -> Iterator[None]:
    saved_config = {a: getattr(config, a) for a in PREFIX_ATTRS + ("use_gpgsm",)}
    saved_time = {a: getattr(dup_time, a) for a in TIME_ATTRS}
    yield
    for attr, value in saved_config.items():
        setattr(config, attr, value)
    for attr, value in saved_time.items():
        setattr(dup_time, attr, value)
    file_naming.prepare_regex(force=True)


# duplicity splices prefixes into its regexes unescaped, so these avoid regex
# metacharacters other than "." (which still matches itself).
PREFIX_CHOICES = (
    Prefixes(),
    Prefixes(all="host1/"),
    Prefixes(all="backups/srv.example.com/"),
    Prefixes(archive="archive_"),
    Prefixes(manifest="meta/"),
    Prefixes(all="h/", archive="cold/", manifest="hot/", signature="sig/", jsonstat="stat/"),
    Prefixes(all="bäckup-", archive="a-", manifest="m-", signature="m-", jsonstat="m-"),
)


def dup_parse(name: str, prefix: str = "") -> file_naming.ParseResults | None:
    """duplicity's reading of `name` with --file-prefix=`prefix` (None when it rejects or crashes on it)."""
    with duplicity_configured(Prefixes(all=prefix), escape=True):
        try:
            return file_naming.parse(name.encode("utf-8", "surrogatepass"))
        except (
            AssertionError,
            AttributeError,
            ValueError,
            TypeError,
        ):  # duplicity's parse crashes on some near-misses
            return None


def epoch(text: str, short: bool) -> int:
    if short:
        return int(text, 36)
    return calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%SZ"))


def assert_reads_like_duplicity(ours: DuplicityName, pr: file_naming.ParseResults) -> None:
    assert not pr.partial
    assert (ours.kind, ours.type) == OUR_READING[(pr.type, bool(pr.manifest))]
    assert ours.volume == pr.volume_number
    if ours.type == "full":
        assert (epoch(ours.time, ours.short), ours.start_time, ours.end_time) == (
            pr.time,
            None,
            None,
        )
    else:
        assert ours.time is None
        assert (epoch(ours.start_time, ours.short), epoch(ours.end_time, ours.short)) == (
            pr.start_time,
            pr.end_time,
        )
    assert (ours.encrypted, ours.compressed) == (bool(pr.encrypted), bool(pr.compressed))


def strip_par2(name: str) -> str:
    return re.sub(r"(?:\.vol[0-9+]*)?\.par2\Z", "", name, count=1)


def renderings(pr: file_naming.ParseResults, prefix: str) -> set[str]:
    """Every name duplicity (3.2.1, or 0.8 with short names) writes for what it parsed into `pr`."""
    full_time = pr.type in ("full", "full-sig", "full-stat")
    t, t0 = (pr.time, None) if full_time else (pr.end_time, pr.start_time)
    extra = (
        {"volume": pr.volume_number, "manifest": bool(pr.manifest)}
        if pr.type in ("full", "inc")
        else {}
    )
    names = set()
    for encrypted, gzipped in itertools.product((False, True), repeat=2):
        write = functools.partial(
            write_name,
            pr.type,
            t=t,
            t0=t0,
            encrypted=encrypted,
            gzipped=gzipped,
            prefixes=Prefixes(all=prefix),
            **extra,
        )
        if t > 0 and (t0 is None or t0 > 0):
            names.add(write(short=True))
        for gpgsm in (False, True):
            with contextlib.suppress(OverflowError, OSError, ValueError):
                names.add(write(gpgsm=gpgsm))
    return names


def check_against_duplicity(name: str, prefix: str = "") -> DuplicityName:
    """The contract between our parse and duplicity's.

    Whatever we accept, duplicity (given the prefix we found) reads the same
    way. Whatever duplicity (given `prefix`) reads as a complete object and
    would itself write under that name, we accept.
    """
    ours = parse(name)
    assert ours.name == name
    if ours.kind is not Kind.UNKNOWN:
        assert ours.par2 == name.endswith(".par2")
        assert name.startswith(ours.prefix)
        pr = dup_parse(strip_par2(name) if ours.par2 else name, ours.prefix)
        assert pr is not None, f"{name!r}: we read {ours}, duplicity rejects it"
        assert_reads_like_duplicity(ours, pr)
    pr = dup_parse(name, prefix)
    if pr is not None and not pr.partial and name in renderings(pr, prefix):
        assert ours.kind is not Kind.UNKNOWN, (
            f"{name!r}: duplicity reads and writes it, we reject it"
        )
        if ours.prefix == prefix:
            assert_reads_like_duplicity(ours, pr)
        else:  # a short name whose prefix itself reads as part of a short name: shortest prefix wins
            assert ours.short and len(ours.prefix) < len(prefix)
    return ours


# --- strategies ----------------------------------------------------------------------------------

times = st.one_of(st.integers(FIRST_SECOND, -1), st.integers(1, LAST_SECOND))
short_times = st.integers(1, 2**40)


@st.composite
def written_names(
    draw, *, short: bool = False, partial: bool = False, prefix_choices=PREFIX_CHOICES
):
    """(name, what was asked of the writer) for a name duplicity writes."""
    dup_type = draw(st.sampled_from(DUP_TYPES))
    t = draw(short_times if short else times)
    t0 = (
        draw(short_times if short else times)
        if dup_type in ("inc", "new-sig", "inc-stat")
        else None
    )
    manifest = dup_type in ("full", "inc") and draw(st.booleans())
    volume = draw(st.integers(1, 5000)) if dup_type in ("full", "inc") and not manifest else None
    encrypted, gzipped = draw(st.booleans()), draw(st.booleans())
    prefixes = draw(st.sampled_from(prefix_choices))
    args = {
        "t": t,
        "t0": t0,
        "volume": volume,
        "manifest": manifest,
        "encrypted": encrypted,
        "gzipped": gzipped,
        "partial": partial,
    }
    gpgsm = not short and draw(st.booleans())
    name = write_name(dup_type, short=short, gpgsm=gpgsm, prefixes=prefixes, **args)
    return name, dict(
        args,
        dup_type=dup_type,
        gpgsm=gpgsm,
        prefixes=prefixes,
        prefix=prefixes.of(dup_type, manifest),
    )


def mostly(good, bad):
    """Usually one of `good`, sometimes one of `bad`: candidates that are often valid, or one slot off."""
    return st.one_of(
        st.sampled_from(good), st.sampled_from(good), st.sampled_from(good), st.sampled_from(bad)
    )


GOOD_LONG_TIMES = [T1, T2, "19011213T204552Z", "20991231T235959Z", "20240229T120000Z"]
BAD_LONG_TIMES = [
    "20241301T020304Z",
    "20240230T000000Z",
    "20230229T120000Z",
    "19700101T000000Z",
    "20240101t020304z",
    "2024010T020304Z",
    "12345",
    "20240101T020304",
    "21000101T000000Z",
    "20240101T250304Z",
    "20240101T026004Z",
    "2024\uff10101T020304Z",
    "",
    "1D",
]
LONG_SHAPES = [  # (head, number of times, body)
    ("duplicity-full", 1, ".vol{n}.difftar"),
    ("duplicity-inc", 2, ".vol{n}.difftar"),
    ("duplicity-full", 1, ".manifest"),
    ("duplicity-inc", 2, ".manifest"),
    ("duplicity-full-signatures", 1, ".sigtar"),
    ("duplicity-new-signatures", 2, ".sigtar"),
    ("duplicity-full", 1, ".jsonstat"),
    ("duplicity-inc", 2, ".jsonstat"),
]
GOOD_B36 = ["1", "abc", "ryq1b5", "m", "to", "df", "zz"]
BAD_B36 = ["0", "0a", "A1", "", "a-b", "\u00e4"]
SHORT_SHAPES = [  # (head, number of times, separator between times, body)
    ("df", 1, ".", "{n}.dt"),
    ("di", 2, ".", "{n}.dt"),
    ("df", 1, ".", "m"),
    ("di", 2, ".", "m"),
    ("dfs", 1, ".", "st"),
    ("dns", 2, ".", "st"),
    ("dfst", 1, ".", "jst"),
    ("dist", 2, ".to.", "jst"),
]


@st.composite
def long_candidates(draw):
    head, count, body = draw(st.sampled_from(LONG_SHAPES))
    head = draw(
        mostly(
            [head],
            [
                "duplicity-ful",
                "Duplicity-full",
                "duplicity.full",
                "duplicity-inc-signatures",
                "duplicity-full",
                "duplicity-inc",
            ],
        )
    )
    stamps = [
        draw(mostly(GOOD_LONG_TIMES, BAD_LONG_TIMES))
        for _ in range(draw(mostly([count], [0, 1, 2, 3])))
    ]
    volume = draw(mostly(["1", "23", "999"], ["0", "01", "", "x", "\u0661"]))
    body = draw(
        mostly([body], [".difftar", ".vol1", ".manifests", ".sigtar", ".jsonstat", ".manifest", ""])
    )
    part = draw(mostly([""], [".part", ".p"]))
    suffix = draw(mostly(["", ".gpg", ".gz", ".p7m"], [".g", ".z", ".gpg.gz", ".bz2", ".gp", "."]))
    par2 = draw(
        mostly(["", "", ".par2", ".vol00+01.par2"], [".vol.par2", ".par", ".vol1+2", ".volx.par2"])
    )
    prefix = draw(mostly([""], ["x/", "duplicity-full.", "df."]))
    return (
        prefix
        + head
        + "."
        + ".to.".join(stamps)
        + body.replace("{n}", volume)
        + part
        + suffix
        + par2
    )


@st.composite
def short_candidates(draw):
    head, count, separator, body = draw(st.sampled_from(SHORT_SHAPES))
    head = draw(mostly([head], ["d", "dx", "df", "di", "dfs", "dist"]))
    times_ = [draw(mostly(GOOD_B36, BAD_B36)) for _ in range(draw(mostly([count], [0, 1, 2, 3])))]
    separator = draw(mostly([separator], [".", ".to."]))
    volume = draw(mostly(GOOD_B36, BAD_B36))
    body = draw(mostly([body], ["dt", "m", "st", "jst", "d", "mm"]))
    part = draw(mostly([""], [".p", ".part"]))
    suffix = draw(mostly(["", ".g", ".z"], [".gpg", ".gz", ".p7m", ".x"]))
    prefix = draw(mostly([""], ["x", "di.", "df.a."]))
    return (
        prefix
        + head
        + "."
        + separator.join(times_)
        + "."
        + body.replace("{n}", volume)
        + part
        + suffix
    )


# --- round trips against duplicity's writer --------------------------------------------------------


@SETTINGS
@given(written_names())
def test_every_name_duplicity_writes_is_read_as_duplicity_reads_it(written):
    name, asked = written
    ours = parse(name)
    with duplicity_configured(asked["prefixes"]):
        pr = file_naming.parse(name.encode())
    assert_reads_like_duplicity(ours, pr)
    assert ours.prefix == asked["prefix"]
    assert (ours.short, ours.par2) == (False, False)
    assert ours.encrypted == asked["encrypted"]
    assert ours.compressed == (asked["gzipped"] and not asked["encrypted"])
    full = asked["dup_type"] in ("full", "full-sig", "full-stat")
    assert ours.time == (dup_time.timetostring(asked["t"]) if full else None)
    assert ours.end_time == (None if full else dup_time.timetostring(asked["t"]))
    assert ours.start_time == (None if full else dup_time.timetostring(asked["t0"]))
    assert ours.volume == asked["volume"]


@SETTINGS
@given(written_names(partial=True))
def test_partial_names_duplicity_writes_are_unknown(written):
    name, _ = written
    assert ".part" in name
    assert parse(name).kind is Kind.UNKNOWN


@SETTINGS
@given(written_names(short=True))
def test_legacy_short_names_are_read_as_duplicity_reads_them(written):
    name, asked = written
    ours = parse(name)
    pr = dup_parse(name, asked["prefix"])
    assert pr is not None
    assert_reads_like_duplicity(ours, pr)
    assert (ours.prefix, ours.short, ours.par2) == (asked["prefix"], True, False)
    assert (ours.time or ours.end_time) == b36(asked["t"])
    assert ours.volume == asked["volume"]


@SETTINGS
@given(written_names(short=True, partial=True))
def test_partial_legacy_short_names_are_unknown(written):
    name, _ = written
    assert ".p" in name
    assert parse(name).kind is Kind.UNKNOWN


# --- differential: candidate strings through both parsers ------------------------------------------


@settings(SETTINGS, max_examples=400)
@given(st.one_of(long_candidates(), short_candidates()))
def test_candidate_names_are_read_as_duplicity_reads_them(name):
    check_against_duplicity(name)


@settings(SETTINGS, max_examples=400)
@given(
    written_names(prefix_choices=(Prefixes(), Prefixes(all="h/"), Prefixes(all="df.x."))),
    st.sampled_from(["delete", "insert", "replace"]),
    st.integers(0, 200),
    st.sampled_from(list("0123456789.-TZadfgilmnoprstuvz+/_A ") + ["\u0661"]),
)
def test_single_character_edits_of_real_names_are_unknown_unless_duplicity_writes_the_result(
    written, operation, position, char
):
    name, asked = written
    start = len(asked["prefix"])
    i = start + position % (len(name) - start + (operation == "insert"))
    edited = {
        "delete": name[:i] + name[i + 1 :],
        "insert": name[:i] + char + name[i:],
        "replace": name[:i] + char + name[i + 1 :],
    }[operation]
    assume(edited != name)
    check_against_duplicity(edited, asked["prefix"])


@SETTINGS
@given(
    written_names(short=True, prefix_choices=(Prefixes(), Prefixes(all="h/"))),
    st.sampled_from(["delete", "insert"]),
    st.integers(0, 100),
    st.sampled_from(list("0.azmpdgst")),
)
def test_single_character_edits_of_short_names_are_unknown_unless_duplicity_writes_the_result(
    written, operation, position, char
):
    name, asked = written
    start = len(asked["prefix"])
    i = start + position % (len(name) - start + (operation == "insert"))
    edited = name[:i] + name[i + 1 :] if operation == "delete" else name[:i] + char + name[i:]
    check_against_duplicity(edited, asked["prefix"])


# Any text, or text in front of a name that is often a valid one (duplicity's own, or a near miss).
any_text_or_names = st.one_of(
    st.text(max_size=80),
    st.tuples(
        st.text(max_size=20),
        st.one_of(
            written_names().map(lambda w: w[0]),
            written_names(short=True).map(lambda w: w[0]),
            long_candidates(),
            short_candidates(),
        ),
    ).map("".join),
)


@SETTINGS
@given(any_text_or_names)
def test_parse_never_raises_and_keeps_the_name(text):
    ours = parse(text)
    assert ours.name == text
    if ours.kind is not Kind.UNKNOWN:
        check_against_duplicity(text)


# --- explicit cases ---------------------------------------------------------------------------------

REJECTED_BY_BOTH = [
    f"duplicity-full.{T1}.manifest.part",
    f"duplicity-full-signatures.{T1}.sigtar.part.gpg",
    f"duplicity-inc.{T1}.to.{T2}.jsonstat.part",
    "df.abc.m.p",
    "dfs.abc.st.p.g",
    "duplicity-full.20241301T020304Z.vol1.difftar.gpg",  # month 13
    "duplicity-full.20240101T250304Z.vol1.difftar.gpg",  # hour 25
    "duplicity-full.19000101T000000Z.manifest",  # before duplicity's year range
    "duplicity-full.21000101T000000Z.manifest",  # after it
    "duplicity-full.19700101T000000Z.vol1.difftar",  # the epoch: duplicity's "no time"
    f"duplicity-full.{T1}.vol0.difftar",
    f"duplicity-full.{T1}.vol.difftar",
    f"duplicity-full.{T1}.difftar.gpg",
    f"duplicity-full.{T1}.to.{T2}.vol1.difftar",
    f"duplicity-inc.{T1}.vol1.difftar",
    f"duplicity-full-signatures.{T1}.to.{T2}.sigtar",
    f"duplicity-inc.{T1}.jsonstat",
    f"duplicity-full.{T1}.manifes",
    f"duplicity-full.{T1}.manifest_gpg",
    f"duplicityfull.{T1}.manifest",
    "df.0.1.dt",
    "df.abc.dt",
    "dfs.abc.to.def.st",
    "",
]

# duplicity's parse takes these, but duplicity never writes them: we do not.
TOLERATED_ONLY_BY_DUPLICITY = [
    f"duplicity-full.{T1}.vol1.difftar.part",  # duplicity does not flag partial volumes
    f"duplicity-inc.{T1}.to.{T2}.vol3.difftar.part.gpg",
    "df.abc.1.dt.p",
    f"duplicity-full.{T1}.vol1.difftar.gpg.bak",  # any text after a dot
    f"duplicity-full.{T1}.manifest.",
    f"duplicity-full.{T1}.vol1.difftar.g",  # short suffix on a long name
    "df.abc.1.dt.gpg",  # long suffix on a short name
    f"duplicity-full.{T1.lower()}.vol1.difftar",
    "duplicity-full.20240231T000000Z.vol1.difftar",  # Feb 31, which duplicity rolls over to March
    "duplicity-full.12345.vol1.difftar",  # an integer "time"
    f"duplicity-full.{T1}.vol01.difftar",
    "df.00abc.01.dt",
    f"duplicity-full.{T1}.to.{T2}.jsonstat",  # duplicity reads a full jsonstat at T1
]


@pytest.mark.parametrize("name", REJECTED_BY_BOTH)
def test_names_duplicity_rejects_are_unknown(name):
    pr = dup_parse(name)
    assert pr is None or pr.partial
    assert parse(name).kind is Kind.UNKNOWN


@pytest.mark.parametrize("name", TOLERATED_ONLY_BY_DUPLICITY)
def test_names_duplicity_tolerates_but_never_writes_are_unknown(name):
    pr = dup_parse(name)
    assert pr is not None and not pr.partial
    assert parse(name).kind is Kind.UNKNOWN


def test_gzipped_manifest_is_read_as_duplicity_reads_it():
    name = f"duplicity-full.{T1}.manifest.gz"
    ours = check_against_duplicity(name)
    assert (ours.kind, ours.compressed, ours.encrypted) == (Kind.MANIFEST, True, False)


@pytest.mark.parametrize("suffix", ["", ".gpg", ".gz"])
def test_inc_jsonstat_is_not_taken_for_an_inc_volume(suffix):
    ours = parse(f"duplicity-inc.{T1}.to.{T2}.jsonstat{suffix}")
    assert (ours.kind, ours.type, ours.start_time, ours.end_time, ours.volume) == (
        Kind.JSONSTAT,
        "inc",
        T1,
        T2,
        None,
    )
    assert ours.is_metadata


def test_full_jsonstat_is_neither_a_volume_nor_a_manifest():
    ours = parse(f"duplicity-full.{T1}.jsonstat.gpg")
    assert (ours.kind, ours.type, ours.time, ours.encrypted) == (Kind.JSONSTAT, "full", T1, True)


def test_new_signatures_belong_to_the_inc_set():
    sig = parse(f"duplicity-new-signatures.{T1}.to.{T2}.sigtar.gpg")
    volume = parse(f"duplicity-inc.{T1}.to.{T2}.vol1.difftar.gpg")
    assert (sig.kind, sig.type) == (Kind.SIGNATURES, "inc")
    assert sig.set_id == volume.set_id


@pytest.mark.parametrize("tail", [".par2", ".vol00+01.par2", ".vol000+100.par2", ".vol1+2.par2"])
@pytest.mark.parametrize(
    "obj",
    [
        f"host/duplicity-full.{T1}.vol7.difftar.gpg",
        f"duplicity-inc.{T1}.to.{T2}.manifest.gpg",
        f"duplicity-new-signatures.{T1}.to.{T2}.sigtar.gz",
        f"duplicity-full.{T1}.jsonstat",
        "di.abc.abd.1z.dt.g",
    ],
)
def test_par2_files_carry_the_record_of_the_object_they_protect(obj, tail):
    protected, recovery = parse(obj), parse(obj + tail)
    assert protected.kind is not Kind.UNKNOWN
    assert recovery.par2 and not protected.par2
    assert recovery.name == obj + tail
    assert recovery.par2_of == obj and protected.par2_of is None
    # the small index duplicity reads with every object, or the blocks it reads only to repair one
    assert (recovery.par2_index, recovery.par2_recovery) == (
        (True, False) if tail == ".par2" else (False, True)
    )
    assert (
        recovery.to_dict()
        | {
            "name": obj,
            "par2": False,
            "par2_recovery": False,
        }
        == protected.to_dict()
    )


@pytest.mark.parametrize(
    "name",
    [
        f"duplicity-full.{T1}.vol1.difftar.part.par2",
        f"duplicity-full.{T1}.vol1.difftar.gpg.par2.par2",
        f"duplicity-full.{T1}.vol1.difftar.gpg.volx+1.par2",
        f"duplicity-full.{T1}.vol1.difftar.gpg.par2x",
        f"duplicity-full.{T1}.manifest_par2",
        "notes.txt.par2",
        ".par2",
    ],
)
def test_par2_files_of_anything_but_a_complete_object_are_unknown(name):
    assert parse(name).kind is Kind.UNKNOWN


@pytest.mark.parametrize(
    "prefix", ["a/b/c/", "host.example.com/", "Zürich/日本/", "duplicity-full.x/", "df.q/"]
)
def test_folder_prefix_is_kept_and_does_not_change_the_reading(prefix):
    token = f"duplicity-inc.{T1}.to.{T2}.vol12.difftar.gpg"
    ours = check_against_duplicity(prefix + token, prefix)
    assert ours.prefix == prefix
    assert ours.to_dict() | {"name": token, "prefix": ""} == parse(token).to_dict()


def test_an_object_name_inside_the_prefix_does_not_decide_the_kind():
    name = f"duplicity-full.{T1}.vol1.difftar.gpg/duplicity-full.{T1}.manifest.gpg"
    ours = parse(name)
    assert (ours.kind, ours.prefix) == (Kind.MANIFEST, f"duplicity-full.{T1}.vol1.difftar.gpg/")


def test_ambiguous_short_name_takes_the_shortest_prefix():
    # "di." + "df.5.1.dt" (full set '5') or "" + "di.df.5.1.dt" (inc set 'df' -> '5')
    ours = check_against_duplicity("di.df.5.1.dt", "di.")
    assert (ours.prefix, ours.type, ours.start_time, ours.end_time) == ("", "inc", "df", "5")


@pytest.mark.parametrize(
    "name",
    [
        "duplicity-full.2024０101T020304Z.vol1.difftar",  # fullwidth digit
        "duplicity-full.20240101T020304Z.vol\u0661.difftar",  # Arabic-Indic one
        "duplicity-full.20240101T020304Z.vol1.difftar.gpg\u200b",  # zero-width space
        "df.ａbc.1.dt",
        "duplicity-full.20240101T020304Z.vol１.difftar",
    ],
)
def test_non_ascii_look_alikes_are_unknown(name):
    assert parse(name).kind is Kind.UNKNOWN


@pytest.mark.parametrize("bad", ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\ud800"])
@pytest.mark.parametrize("where", ["prefix", "end"])
def test_control_characters_and_lone_surrogates_make_a_name_unknown(bad, where):
    token = f"duplicity-full.{T1}.vol1.difftar.gpg"
    name = f"host{bad}/{token}" if where == "prefix" else token + bad
    assert parse(f"host/{token}").kind is Kind.VOLUME
    assert parse(name).kind is Kind.UNKNOWN


HOSTILE = {
    "repeated long head": "duplicity-full." * 7000,
    "repeated inc head": f"duplicity-inc.{T1}.to." * 3000,
    "endless volume number": f"duplicity-full.{T1}.vol" + "1" * 100_000 + ".difftarx",
    "endless base36": "df." + "a" * 100_000,
    "repeated short segments": "di.a.b." * 20_000,
    "repeated short heads": "df.df." * 20_000 + "dtx",
    "endless par2 volume": "x.vol" + "1+" * 50_000 + ".par2x",
    "many par2 tails": ".par2" * 20_000,
    "unicode": "ä日\U0001f600" * 40_000,
    "valid name after junk": "x" * 100_000 + f"duplicity-full.{T1}.vol1.difftar.gpgx",
}


@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_long_input_is_unknown_and_fast(name):
    started = time.perf_counter()
    ours = parse(name)
    assert time.perf_counter() - started < 0.25
    assert ours.kind is Kind.UNKNOWN


def test_a_valid_name_behind_a_huge_prefix_is_found_fast():
    name = "x/" * 50_000 + f"duplicity-full.{T1}.vol1.difftar.gpg"
    started = time.perf_counter()
    ours = parse(name)
    assert time.perf_counter() - started < 0.25
    assert (ours.kind, len(ours.prefix)) == (Kind.VOLUME, 100_000)


def test_unknown_carries_no_fields():
    assert parse("readme.txt").to_dict() == {
        "name": "readme.txt",
        "kind": "unknown",
        "type": None,
        "time": None,
        "start_time": None,
        "end_time": None,
        "volume": None,
        "prefix": "",
        "encrypted": False,
        "compressed": False,
        "short": False,
        "par2": False,
        "par2_recovery": False,
    }
    assert parse("readme.txt").set_id is None
    assert not parse("readme.txt").is_metadata


def test_parse_refuses_bytes():
    with pytest.raises(TypeError):
        parse(f"duplicity-full.{T1}.manifest".encode())  # type: ignore[arg-type]


def test_to_dict_round_trips_through_json():
    ours = parse(f"bäckup/duplicity-full.{T1}.vol3.difftar.p7m.vol0+1.par2")
    assert json.loads(json.dumps(ours.to_dict())) == {
        "name": ours.name,
        "kind": "volume",
        "type": "full",
        "time": T1,
        "start_time": None,
        "end_time": None,
        "volume": 3,
        "prefix": "bäckup/",
        "encrypted": True,
        "compressed": False,
        "short": False,
        "par2": True,
        "par2_recovery": True,
    }
    assert Kind(ours.to_dict()["kind"]) is Kind.VOLUME


@pytest.mark.parametrize(
    "name, is_metadata",
    [
        (f"duplicity-full.{T1}.vol1.difftar", False),
        (f"duplicity-full.{T1}.manifest", True),
        (f"duplicity-full-signatures.{T1}.sigtar", True),
        (f"duplicity-full.{T1}.jsonstat", True),
    ],
)
def test_only_volumes_are_data(name, is_metadata):
    assert parse(name).is_metadata is is_metadata


# --- set ids and listing prefixes ---------------------------------------------------------------------


@st.composite
def backup_sets(draw, short: bool):
    dup_type = draw(st.sampled_from(["full", "inc"]))
    t = draw(short_times if short else times)
    t0 = draw(short_times if short else times) if dup_type == "inc" else None
    return dup_type, t, t0


def set_names(
    backup_set, prefixes: Prefixes, short: bool, volumes: int = 3
) -> dict[str, list[str]]:
    """Every name duplicity writes for one backup set (all encodings, plus par2 files of the volumes)."""
    dup_type, t, t0 = backup_set
    sig_type, stat_type = (
        ("full-sig", "full-stat") if dup_type == "full" else ("new-sig", "inc-stat")
    )
    names: dict[str, list[str]] = {"volume": [], "manifest": [], "signatures": [], "jsonstat": []}
    for encrypted, gzipped in itertools.product((False, True), repeat=2):
        write = functools.partial(
            write_name,
            t=t,
            t0=t0,
            encrypted=encrypted,
            gzipped=gzipped,
            short=short,
            prefixes=prefixes,
        )
        for n in (1, 2, volumes, 22, 36):
            volume = write(dup_type, volume=n)
            names["volume"] += [volume, volume + ".par2", volume + ".vol00+01.par2"]
        names["manifest"].append(write(dup_type, manifest=True))
        names["signatures"].append(write(sig_type))
        names["jsonstat"].append(write(stat_type))
    return names


# Per-type prefixes for which signatures and jsonstat share the manifest prefix
# (manifest_listing_prefix maps only volumes).
LISTING_PREFIXES = (
    Prefixes(),
    Prefixes(all="h/"),
    Prefixes(archive="cold/"),
    Prefixes(all="h/", manifest="hot/", signature="hot/", jsonstat="hot/"),
    Prefixes(all="h/", archive="cold-", manifest="hot-", signature="hot-", jsonstat="hot-"),
)


def belongs_to(name: str, manifest: DuplicityName, prefixes: Prefixes) -> bool:
    """The re-check that volume_listing_prefix's docstring tells callers to do."""
    mapping = {"manifest_prefix": prefixes.manifest, "archive_prefix": prefixes.archive}
    v = parse(name)
    return v.kind is Kind.VOLUME and set_key(v, **mapping) == set_key(manifest, **mapping)


@dataclass(frozen=True)
class TwoSets:
    """Every name of one backup set (`names`) and of another (`other_names`), under the same prefixes."""

    short: bool
    prefixes: Prefixes
    names: dict[str, list[str]]
    other_names: dict[str, list[str]]

    @property
    def mapping(self) -> dict[str, str]:
        return {"manifest_prefix": self.prefixes.manifest, "archive_prefix": self.prefixes.archive}


@st.composite
def two_sets(draw, prefix_choices=LISTING_PREFIXES, volumes: int = 3) -> TwoSets:
    """Two different backup sets of the same naming (long or short) under prefixes from `prefix_choices`."""
    short = draw(st.booleans())
    prefixes = draw(st.sampled_from(prefix_choices))
    mine = draw(backup_sets(short))
    other = draw(backup_sets(short).filter(lambda s: s != mine))
    return TwoSets(
        short,
        prefixes,
        set_names(mine, prefixes, short, volumes),
        set_names(other, prefixes, short, volumes),
    )


@settings(SETTINGS, max_examples=60)
@given(two_sets())
def test_volume_listing_prefix_lists_the_sets_volumes_and_no_other_sets(sets):
    prefixes, names, other_names, mapping = (
        sets.prefixes,
        sets.names,
        sets.other_names,
        sets.mapping,
    )
    for manifest_name in names["manifest"]:
        manifest = parse(manifest_name)
        listing = volume_listing_prefix(manifest, **mapping)
        assert all(v.startswith(listing) for v in names["volume"])
        assert not any(n.startswith(listing) for kind in other_names.values() for n in kind)
        assert not any(n.startswith(listing) for n in names["signatures"] + names["jsonstat"])
        assert all(belongs_to(v, manifest, prefixes) for v in names["volume"])
        assert not any(
            belongs_to(n, manifest, prefixes) for kind in other_names.values() for n in kind
        )
        assert not any(belongs_to(n, manifest, prefixes) for n in names["manifest"])


@settings(SETTINGS, max_examples=60)
@given(two_sets())
def test_manifest_listing_prefix_finds_the_sets_manifest_from_any_member(sets):
    names, other_names, mapping = sets.names, sets.other_names, sets.mapping
    set_id = parse(names["manifest"][0]).set_id
    for member in itertools.chain(*names.values()):
        obj = parse(member)
        assert obj.set_id == set_id
        listing = manifest_listing_prefix(obj, **mapping)
        assert all(m.startswith(listing) for m in names["manifest"])
        assert not any(m.startswith(listing) for m in other_names["manifest"])


def test_listing_prefixes_of_the_documented_examples():
    manifest = parse(f"x/duplicity-full.{T1}.manifest.gpg")
    assert volume_listing_prefix(manifest) == f"x/duplicity-full.{T1}.vol"
    inc = parse(f"duplicity-inc.{T1}.to.{T2}.manifest")
    assert volume_listing_prefix(inc) == f"duplicity-inc.{T1}.to.{T2}.vol"
    assert volume_listing_prefix(parse("df.ryq1b5.m.g")) == "df.ryq1b5."
    assert volume_listing_prefix(parse("di.ryq1b5.ryq1b6.m")) == "di.ryq1b5.ryq1b6."
    assert (
        manifest_listing_prefix(parse(f"x/duplicity-full.{T1}.vol3.difftar.gpg"))
        == f"x/duplicity-full.{T1}.manifest"
    )
    assert manifest_listing_prefix(parse("df.ryq1b5.3.dt.g")) == "df.ryq1b5.m"
    assert manifest_listing_prefix(parse(f"duplicity-new-signatures.{T1}.to.{T2}.sigtar.gpg")) == (
        f"duplicity-inc.{T1}.to.{T2}.manifest"
    )
    assert manifest_listing_prefix(parse("dist.ryq1b5.to.ryq1b6.jst")) == "di.ryq1b5.ryq1b6.m"


@pytest.mark.parametrize(
    "manifest_prefix, archive_prefix, manifest_name, volume_listing",
    [
        (
            "hot/",
            "cold/",
            f"h/hot/duplicity-full.{T1}.manifest.gpg",
            f"h/cold/duplicity-full.{T1}.vol",
        ),  # replaced
        (
            "",
            "cold/",
            f"h/duplicity-full.{T1}.manifest.gpg",
            f"h/cold/duplicity-full.{T1}.vol",
        ),  # appended
        (
            "hot/",
            "",
            f"h/hot/duplicity-full.{T1}.manifest.gpg",
            f"h/duplicity-full.{T1}.vol",
        ),  # removed
        (
            "hot/",
            "cold/",
            f"h/duplicity-full.{T1}.manifest.gpg",
            f"h/duplicity-full.{T1}.vol",
        ),  # kept: no "hot/"
        ("m-", "a-", "m-di.abc.abd.m", "a-di.abc.abd."),
    ],
)
def test_per_type_prefixes_are_mapped_between_manifest_and_volumes(
    manifest_prefix, archive_prefix, manifest_name, volume_listing
):
    mapping = {"manifest_prefix": manifest_prefix, "archive_prefix": archive_prefix}
    assert volume_listing_prefix(parse(manifest_name), **mapping) == volume_listing


@pytest.mark.parametrize(
    "manifest_prefix, archive_prefix, volume_name, manifest_listing",
    [
        (
            "hot/",
            "cold/",
            f"h/cold/duplicity-full.{T1}.vol1.difftar",
            f"h/hot/duplicity-full.{T1}.manifest",
        ),
        ("hot/", "", f"h/duplicity-full.{T1}.vol1.difftar", f"h/hot/duplicity-full.{T1}.manifest"),
        (
            "",
            "cold/",
            f"h/cold/duplicity-full.{T1}.vol1.difftar",
            f"h/duplicity-full.{T1}.manifest",
        ),
        ("hot/", "cold/", f"h/duplicity-full.{T1}.vol1.difftar", f"h/duplicity-full.{T1}.manifest"),
    ],
)
def test_per_type_prefixes_are_mapped_from_a_volume_to_its_manifest(
    manifest_prefix, archive_prefix, volume_name, manifest_listing
):
    mapping = {"manifest_prefix": manifest_prefix, "archive_prefix": archive_prefix}
    assert manifest_listing_prefix(parse(volume_name), **mapping) == manifest_listing


def test_signatures_keep_their_own_prefix_when_looking_for_the_manifest():
    sig = parse(f"h/hot/duplicity-full-signatures.{T1}.sigtar.gpg")
    assert manifest_listing_prefix(sig, manifest_prefix="hot/", archive_prefix="cold/") == (
        f"h/hot/duplicity-full.{T1}.manifest"
    )


@pytest.mark.parametrize(
    "name",
    [
        f"duplicity-full.{T1}.vol1.difftar.gpg",
        f"duplicity-full-signatures.{T1}.sigtar.gpg",
        f"duplicity-full.{T1}.jsonstat",
        "readme.txt",
    ],
)
def test_volume_listing_prefix_needs_a_manifest(name):
    with pytest.raises(ValueError):
        volume_listing_prefix(parse(name))


def test_manifest_listing_prefix_needs_a_duplicity_object():
    with pytest.raises(ValueError):
        manifest_listing_prefix(parse("readme.txt"))


def test_a_manifests_par2_file_lists_the_same_volumes_as_the_manifest():
    manifest = f"duplicity-inc.{T1}.to.{T2}.manifest.gpg"
    assert volume_listing_prefix(parse(manifest + ".vol0+1.par2")) == volume_listing_prefix(
        parse(manifest)
    )


@pytest.mark.parametrize(
    "name, set_id",
    [
        (f"duplicity-full.{T1}.vol1.difftar.gpg", ("full", T1, False)),
        (f"duplicity-new-signatures.{T1}.to.{T2}.sigtar", ("inc", T1, T2, False)),
        ("df.ryq1b5.m.g", ("full", "ryq1b5", True)),
        ("dist.ryq1b5.to.ryq1b6.jst", ("inc", "ryq1b5", "ryq1b6", True)),
    ],
)
def test_set_id_is_type_times_and_the_short_flag(name, set_id):
    assert parse(name).set_id == set_id


@SETTINGS
@given(two_sets(PREFIX_CHOICES, volumes=2))
def test_a_sets_objects_share_its_set_id_and_other_sets_do_not(sets):
    ids = {parse(n).set_id for n in itertools.chain(*sets.names.values())}
    other_ids = {parse(n).set_id for n in itertools.chain(*sets.other_names.values())}
    assert len(ids) == len(other_ids) == 1
    assert ids != other_ids
    hash(ids.pop())
