"""Recognise the names of the objects duplicity writes to a backend, and the listing prefixes of a backup set."""

from __future__ import annotations

import calendar
import datetime
import enum
import re
from dataclasses import dataclass
from typing import Any

# How this grammar relates to duplicity's own parser (duplicity/file_naming.py, 3.2.1):
#
# * duplicity compiles one regex per kind with the configured --file-prefix*
#   spliced in. Here the prefix is unknown, so it is any text; the rest of the
#   name must match the grammar exactly, anchored at both ends. Every name this
#   module accepts is accepted by duplicity configured with the prefix found
#   here, with the same kind, type, times, volume and flags (the tests check
#   this against duplicity itself).
# * duplicity is far looser: it accepts any text after the kind word and a dot
#   (".difftar.foo", and so "<name>.par2"), any time string its date parser
#   takes ("12345", "2002-04-26", lower case, Feb 31), volume "01". None of
#   that is ever written by duplicity, so such names are UNKNOWN here: only
#   names duplicity produces are recognised. Times must be real instants in
#   1901..2099 (duplicity's own range) and not the epoch itself (duplicity
#   treats time 0 as "no time" and rejects it).
# * Suffixes are the ones duplicity writes: ".gpg", ".p7m" (--gpgsm), ".gz" or
#   none; legacy short names use ".g" and ".z". A manifest is never written
#   compressed, but duplicity reads "<manifest>.gz" as a gzipped manifest, so it
#   is accepted (compressed=True) like any other kind.
# * Partial objects (".part", short ".p", placed before the suffix) are never
#   complete: UNKNOWN. (duplicity's parse flags them only for manifests,
#   signatures and jsonstat; for volumes it silently reports them complete.)
# * Legacy short names (duplicity < 2.0, --short-filenames) carry base-36
#   times and volume numbers, always written without leading zeros; zero and
#   leading zeros are rejected, so equal sets have equal time text.
#   A short name with an absurd prefix can be read two ways ("di.df.5.1.dt" is
#   inc 'df'->'5' with no prefix, or full '5' with prefix "di."); the reading
#   with the shortest prefix wins.
# * par2 files are "<object>.par2" and "<object>.vol<digits and +>.par2"
#   (par2backend.py deletes exactly "<object>(\.vol[\d+]*)?\.par2" with its
#   object; par2cmdline writes ".vol00+01.par2"). They are told apart because
#   duplicity reads them differently: the small index "<object>.par2" right after
#   every object it downloads, the recovery blocks ".vol…par2" only to repair an
#   object that fails verification (par2backend.py, get()).

_TIME = r"[0-9]{8}T[0-9]{6}Z"
_NUMBER = r"[1-9][0-9]*"
_BASE36 = r"[1-9a-z][0-9a-z]*"
_LONG_SUFFIXES = (".gpg", ".p7m", ".gz")
_SHORT_SUFFIXES = (".g", ".z")
_ENCRYPTED_SUFFIXES = frozenset({".gpg", ".p7m", ".g"})
_COMPRESSED_SUFFIXES = frozenset({".gz", ".z"})

# C0/C1 control characters and lone surrogates (not valid in a blob name).
_FORBIDDEN_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_PAR2_VOLUME_TAIL = re.compile(r"\.vol[0-9+]*\Z", re.ASCII)


class Kind(str, enum.Enum):
    """What a duplicity object is."""

    VOLUME = "volume"
    MANIFEST = "manifest"
    SIGNATURES = "signatures"
    JSONSTAT = "jsonstat"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class _Form:
    kind: Kind
    type: str
    short: bool
    ending: str  # the literal text after the last field, before a suffix: ".manifest", ".dt", ...
    suffixes: tuple[str, ...]  # the suffixes that may follow `ending`
    regex: re.Pattern[str]


def _form(kind: Kind, type_: str, short: bool, token: str, ending: str) -> _Form:
    suffixes = _SHORT_SUFFIXES if short else _LONG_SUFFIXES
    suffix = "(?P<suffix>" + "|".join(re.escape(s) for s in suffixes) + ")?"
    # Unanchored at the start (the prefix is free text), anchored at the end.
    regex = re.compile(token + re.escape(ending) + suffix + r"\Z", re.ASCII)
    return _Form(kind, type_, short, ending, suffixes, regex)


_T, _T1, _T2 = (f"(?P<{g}>{_TIME})" for g in ("time", "start_time", "end_time"))
_S, _S1, _S2 = (f"(?P<{g}>{_BASE36})" for g in ("time", "start_time", "end_time"))

_FORMS: tuple[_Form, ...] = (
    _form(
        Kind.VOLUME, "full", False, rf"duplicity-full\.{_T}\.vol(?P<volume>{_NUMBER})", ".difftar"
    ),
    _form(
        Kind.VOLUME,
        "inc",
        False,
        rf"duplicity-inc\.{_T1}\.to\.{_T2}\.vol(?P<volume>{_NUMBER})",
        ".difftar",
    ),
    _form(Kind.MANIFEST, "full", False, rf"duplicity-full\.{_T}", ".manifest"),
    _form(Kind.MANIFEST, "inc", False, rf"duplicity-inc\.{_T1}\.to\.{_T2}", ".manifest"),
    _form(Kind.SIGNATURES, "full", False, rf"duplicity-full-signatures\.{_T}", ".sigtar"),
    _form(Kind.SIGNATURES, "inc", False, rf"duplicity-new-signatures\.{_T1}\.to\.{_T2}", ".sigtar"),
    _form(Kind.JSONSTAT, "full", False, rf"duplicity-full\.{_T}", ".jsonstat"),
    _form(Kind.JSONSTAT, "inc", False, rf"duplicity-inc\.{_T1}\.to\.{_T2}", ".jsonstat"),
    _form(Kind.VOLUME, "full", True, rf"df\.{_S}\.(?P<volume>{_BASE36})", ".dt"),
    _form(Kind.VOLUME, "inc", True, rf"di\.{_S1}\.{_S2}\.(?P<volume>{_BASE36})", ".dt"),
    _form(Kind.MANIFEST, "full", True, rf"df\.{_S}", ".m"),
    _form(Kind.MANIFEST, "inc", True, rf"di\.{_S1}\.{_S2}", ".m"),
    _form(Kind.SIGNATURES, "full", True, rf"dfs\.{_S}", ".st"),
    _form(Kind.SIGNATURES, "inc", True, rf"dns\.{_S1}\.{_S2}", ".st"),
    _form(Kind.JSONSTAT, "full", True, rf"dfst\.{_S}", ".jst"),
    _form(Kind.JSONSTAT, "inc", True, rf"dist\.{_S1}\.to\.{_S2}", ".jst"),
)


@dataclass(frozen=True)
class DuplicityName:
    """One blob name read as a duplicity object (kind UNKNOWN when it is not one)."""

    name: str
    kind: Kind
    type: str | None
    time: str | None
    start_time: str | None
    end_time: str | None
    volume: int | None
    prefix: str
    encrypted: bool
    compressed: bool
    short: bool
    par2: bool
    par2_recovery: bool = False  # ".vol…par2" recovery blocks; False for the "<object>.par2" index

    @property
    def par2_index(self) -> bool:
        """True for "<object>.par2", which duplicity's par2 wrapper reads with every object it downloads."""
        return self.par2 and not self.par2_recovery

    @property
    def par2_of(self) -> str | None:
        """The name of the object a par2 file protects (None when this is not a par2 file)."""
        if not self.par2:
            return None
        obj_name = self.name[: -len(".par2")]
        if self.par2_recovery:
            obj_name = obj_name[: _PAR2_VOLUME_TAIL.search(obj_name).start()]
        return obj_name

    @property
    def is_metadata(self) -> bool:
        """True for manifests, signatures and jsonstat (the objects duplicity reads back often)."""
        return self.kind in (Kind.MANIFEST, Kind.SIGNATURES, Kind.JSONSTAT)

    @property
    def set_id(self) -> tuple[Any, ...] | None:
        """The backup set this object belongs to: equal for a set's volumes, manifest, signatures and jsonstat.

        The prefix is not part of it (duplicity gives each kind its own
        --file-prefix-*), so two backups sharing a container under different
        prefixes can have equal set ids: scope by prefix where that matters.
        None for UNKNOWN.
        """
        if self.kind is Kind.UNKNOWN:
            return None
        if self.type == "full":
            return ("full", self.time, self.short)
        return ("inc", self.start_time, self.end_time, self.short)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of every field (kind as its string value)."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "type": self.type,
            "time": self.time,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "volume": self.volume,
            "prefix": self.prefix,
            "encrypted": self.encrypted,
            "compressed": self.compressed,
            "short": self.short,
            "par2": self.par2,
            "par2_recovery": self.par2_recovery,
        }


def _unknown(name: str) -> DuplicityName:
    return DuplicityName(
        name, Kind.UNKNOWN, None, None, None, None, None, "", False, False, False, False
    )


def _is_real_time(text: str) -> bool:
    fields = (text[0:4], text[4:6], text[6:8], text[9:11], text[11:13], text[13:15])
    year, month, day, hour, minute, second = (int(f) for f in fields)
    if not 1901 <= year <= 2099:
        return False
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return calendar.timegm((year, month, day, hour, minute, second)) != 0


def parse(name: str) -> DuplicityName:
    """Read a blob name as a duplicity object; kind UNKNOWN for anything that is not a complete one.

    Never raises for a str. See the module comments for how this relates to
    duplicity's own, looser parser.
    """
    if not isinstance(name, str):
        raise TypeError(f"blob name must be str, not {type(name).__name__}")
    if not name or _FORBIDDEN_CHARACTER.search(name):
        return _unknown(name)

    obj_name, par2, recovery = name, False, False
    if name.endswith(".par2"):
        obj_name, par2 = name[: -len(".par2")], True
        tail = _PAR2_VOLUME_TAIL.search(obj_name)
        if tail:
            obj_name, recovery = obj_name[: tail.start()], True

    best: tuple[_Form, re.Match[str]] | None = None
    for form in _FORMS:
        match = form.regex.search(obj_name)
        if match and (best is None or match.start() < best[1].start()):
            best = (form, match)
    if best is None:
        return _unknown(name)
    form, match = best

    groups = match.groupdict()
    if not form.short:
        for key in ("time", "start_time", "end_time"):
            if groups.get(key) is not None and not _is_real_time(groups[key]):
                return _unknown(name)
    volume = groups.get("volume")
    suffix = groups["suffix"] or ""
    return DuplicityName(
        name=name,
        kind=form.kind,
        type=form.type,
        time=groups.get("time"),
        start_time=groups.get("start_time"),
        end_time=groups.get("end_time"),
        volume=None if volume is None else int(volume, 36 if form.short else 10),
        prefix=obj_name[: match.start()],
        encrypted=suffix in _ENCRYPTED_SUFFIXES,
        compressed=suffix in _COMPRESSED_SUFFIXES,
        short=form.short,
        par2=par2,
        par2_recovery=recovery,
    )


def _set_stem(obj: DuplicityName) -> str:
    """The set's name part shared by its volumes and manifest, e.g. "duplicity-inc.T1.to.T2" or "df.<t>"."""
    if obj.short:
        return f"df.{obj.time}" if obj.type == "full" else f"di.{obj.start_time}.{obj.end_time}"
    if obj.type == "full":
        return f"duplicity-full.{obj.time}"
    return f"duplicity-inc.{obj.start_time}.to.{obj.end_time}"


def _swap_prefix(prefix: str, old: str, new: str) -> str:
    """Turn one per-type prefix ({P}{old}) into another ({P}{new}); see volume_listing_prefix."""
    if old and prefix.endswith(old):
        return prefix[: len(prefix) - len(old)] + new
    if not old and new:
        return prefix + new
    return prefix


def volume_listing_prefix(
    manifest: DuplicityName, *, manifest_prefix: str = "", archive_prefix: str = ""
) -> str:
    """The blob-name prefix under which the volumes (and their par2 files) of `manifest`'s set are listed.

    "x/duplicity-full.T.manifest.gpg" -> "x/duplicity-full.T.vol";
    "duplicity-inc.T1.to.T2.manifest" -> "duplicity-inc.T1.to.T2.vol";
    short "df.<t>.m" -> "df.<t>." and "di.<t1>.<t2>.m" -> "di.<t1>.<t2>.".

    manifest_prefix and archive_prefix are --file-prefix-manifest and
    --file-prefix-archive: a trailing manifest_prefix of the manifest's prefix
    is replaced by archive_prefix; with no manifest_prefix, archive_prefix is
    appended; otherwise the prefix is kept.

    Within one --file-prefix no other set's object can start with the result,
    but a listing can still return other names: the set's par2 files and
    partial uploads; for short names the set's own manifest ("df.<t>.m" is
    under "df.<t>.", and "m" is also a valid base-36 volume number, so no
    tighter prefix exists); and names of another backup whose --file-prefix
    itself starts with the result. Re-check each listed name `n`:
    ``parse(n).kind is Kind.VOLUME and set_key(parse(n), ...) == set_key(manifest, ...)``.

    Raises ValueError if `manifest` is not a MANIFEST (its par2 files are accepted).
    """
    if manifest.kind is not Kind.MANIFEST:
        raise ValueError(f"not a duplicity manifest: {manifest.name!r} ({manifest.kind.value})")
    prefix = _swap_prefix(manifest.prefix, manifest_prefix, archive_prefix)
    return prefix + _set_stem(manifest) + ("." if manifest.short else ".vol")


def manifest_listing_prefix(
    obj: DuplicityName, *, manifest_prefix: str = "", archive_prefix: str = ""
) -> str:
    """The blob-name prefix under which the manifest of `obj`'s set is listed, encrypted or not.

    "x/duplicity-full.T.vol3.difftar.gpg" -> "x/duplicity-full.T.manifest"
    (lists ".manifest" and ".manifest.gpg"); short "df.<t>.3.dt.g" -> "df.<t>.m".

    For a volume, the prefix is mapped the other way round from
    volume_listing_prefix: a trailing archive_prefix is replaced by
    manifest_prefix; with no archive_prefix, manifest_prefix is appended. For
    signatures, jsonstat and manifests the object's own prefix is used
    unchanged, which is right when --file-prefix-signature/-jsonstat equal
    --file-prefix-manifest (all empty by default).

    Residual matches, as for volume_listing_prefix: partial uploads, par2
    files, for short names the set's own volumes whose base-36 number starts
    with "m" ("df.<t>.mx.dt"), and names under another --file-prefix that
    starts with the result. Re-check with parse(): kind MANIFEST and the same
    set_key.

    Raises ValueError for an UNKNOWN object.
    """
    if obj.kind is Kind.UNKNOWN:
        raise ValueError(f"not a duplicity object: {obj.name!r}")
    prefix = obj.prefix
    if obj.kind is Kind.VOLUME:
        prefix = _swap_prefix(prefix, archive_prefix, manifest_prefix)
    return prefix + _set_stem(obj) + (".m" if obj.short else ".manifest")


def set_key(
    obj: DuplicityName, *, manifest_prefix: str = "", archive_prefix: str = ""
) -> tuple[str, tuple]:
    """Identity of the backup set `obj` belongs to, chain prefix included: equal for a set's
    manifest and volumes (under per-type prefixes too), different for any other set or chain.

    This is the re-check the listing prefixes' docstrings ask for: a listing prefix can catch a
    crafted or foreign name (`….manifestduplicity-full.T.vol1.difftar`) that `set_id` alone would
    take for a member.
    """
    return manifest_listing_prefix(
        obj, manifest_prefix=manifest_prefix, archive_prefix=archive_prefix
    ), obj.set_id


def event_filter_suffixes(*, metadata: bool = False) -> tuple[str, ...]:
    """The blob-name endings an Event Grid subscription must deliver (StringEndsWith on subject).

    By default only manifests, encrypted, compressed or plain, long or legacy short names: a
    manifest's event tiers its whole set, so volume events need not fire the function at all.
    With `metadata` (RETIER_METADATA_TIER set) also signatures, jsonstat and par2 files, whose
    own events move them to the metadata tier. Sorted, no duplicates; Event Grid compares them
    case-insensitively, and no volume name ends with any of the default ones.
    """
    # Read off the grammar's own tables: each form's ending, bare or with each suffix it allows.
    # Prefixes (--file-prefix, --file-prefix-manifest, folders) come before the name, so one set
    # of endings holds for every prefix.
    kinds = {Kind.MANIFEST} | ({Kind.SIGNATURES, Kind.JSONSTAT} if metadata else set())
    endings = {
        form.ending + suffix
        for form in _FORMS
        if form.kind in kinds
        for suffix in ("", *form.suffixes)
    }
    if metadata:
        endings.add(".par2")
    return tuple(sorted(endings))
