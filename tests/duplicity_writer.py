"""duplicity's own name writer, shared by the tests that need the names duplicity really writes
(test_names checks the grammar against them; test_infra checks the event filter against them).

duplicity keeps its prefixes in module globals (duplicity.config) and compiles its regexes from
them; every helper here sets them for one call and restores them after.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from duplicity import config, dup_time, file_naming

PREFIX_ATTRS = (
    "file_prefix",
    "file_prefix_archive",
    "file_prefix_manifest",
    "file_prefix_signature",
    "file_prefix_jsonstat",
)


@dataclass(frozen=True)
class Prefixes:
    """--file-prefix and the per-type prefixes, as str."""

    all: str = ""
    archive: str = ""
    manifest: str = ""
    signature: str = ""
    jsonstat: str = ""

    def of(self, dup_type: str, manifest: bool) -> str:
        if dup_type in ("full-sig", "new-sig"):
            return self.all + self.signature
        if dup_type in ("full-stat", "inc-stat"):
            return self.all + self.jsonstat
        return self.all + (self.manifest if manifest else self.archive)


@contextlib.contextmanager
def duplicity_configured(
    prefixes: Prefixes = Prefixes(), *, gpgsm: bool = False, escape: bool = False
) -> Iterator[None]:
    """Set duplicity's prefix globals (escaped for its regexes if asked) for the duration."""
    saved = {a: getattr(config, a) for a in PREFIX_ATTRS + ("use_gpgsm",)}
    values = (
        prefixes.all,
        prefixes.archive,
        prefixes.manifest,
        prefixes.signature,
        prefixes.jsonstat,
    )
    try:
        for attr, value in zip(PREFIX_ATTRS, values):
            encoded = value.encode()
            setattr(config, attr, re.escape(encoded) if escape else encoded)
        config.use_gpgsm = gpgsm
        file_naming.prepare_regex(force=True)
        yield
    finally:
        for attr, value in saved.items():
            setattr(config, attr, value)
        file_naming.prepare_regex(force=True)


def b36(n: int) -> str:
    return file_naming.to_base36(n).decode()


def write_name(
    dup_type: str,
    *,
    t: int,
    t0: int | None = None,
    volume: int | None = None,
    manifest: bool = False,
    encrypted: bool = False,
    gzipped: bool = False,
    partial: bool = False,
    gpgsm: bool = False,
    short: bool = False,
    prefixes: Prefixes = Prefixes(),
) -> str:
    """A name as duplicity's own file_naming.get() writes it, or with `short` a legacy short name
    as duplicity 0.7/0.8 get() wrote it with --short-filenames.

    duplicity 3 can no longer write short names; the short jsonstat form (never written by any
    version) follows duplicity 3.2.1's stat_re_short.
    """
    if not short:
        with duplicity_configured(prefixes, gpgsm=gpgsm):
            dup_time.setcurtime(t)
            if t0 is not None:
                dup_time.setprevtime(t0)
            return file_naming.get(
                dup_type,
                volume,
                manifest=manifest,
                encrypted=encrypted,
                gzipped=gzipped,
                partial=partial,
            ).decode()
    suffix = ".g" if encrypted else ".z" if gzipped else ""
    part = ".p" if partial else ""
    stem = {
        "full": f"df.{b36(t)}",
        "inc": f"di.{b36(t0 or 0)}.{b36(t)}",
        "full-sig": f"dfs.{b36(t)}.st",
        "new-sig": f"dns.{b36(t0 or 0)}.{b36(t)}.st",
        "full-stat": f"dfst.{b36(t)}.jst",
        "inc-stat": f"dist.{b36(t0 or 0)}.to.{b36(t)}.jst",
    }[dup_type]
    if dup_type in ("full", "inc"):
        stem += ".m" if manifest else f".{b36(volume or 0)}.dt"
    return f"{prefixes.of(dup_type, manifest)}{stem}{part}{suffix}"
