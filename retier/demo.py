"""Local demo of the main job: real duplicity into Azurite, BlobCreated events handled, tiers shown."""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from retier import names
from retier.emulate import events_for
from retier.names import Kind
from retier.service import HANDLED, IGNORED, RetierService
from retier.settings import load_settings
from retier.storage import BlobItem, BlobStore

PASSPHRASE = "retier-demo-passphrase"  # a throwaway key for throwaway local data


def duplicity_binary() -> str:
    beside = Path(sys.executable).with_name("duplicity")
    found = str(beside) if beside.exists() else shutil.which("duplicity")
    if not found:
        raise RuntimeError(
            "duplicity is not installed: run scripts/demo or scripts/test, or pip install -e '.[dev]'"
        )
    return found


@dataclass
class Duplicity:
    """Runs the real duplicity program against one Azure (or Azurite) container."""

    connection_string: str
    container: str
    archive_dir: Path
    volsize_mb: int = 1
    extra: tuple[str, ...] = ()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["AZURE_CONNECTION_STRING"] = self.connection_string
        env["PASSPHRASE"] = PASSPHRASE
        return env

    def command(self, *args: str, archive_dir: Path | None = None) -> list[str]:
        """The duplicity command line `run` runs."""
        return [
            duplicity_binary(),
            *args,
            "--archive-dir",
            str(archive_dir or self.archive_dir),
            "--name",
            "retier",
            "--no-print-statistics",
            *self.extra,
        ]

    def run(
        self, *args: str, archive_dir: Path | None = None, check: bool = True, while_running=None
    ) -> subprocess.CompletedProcess:
        """Run duplicity; call `while_running()` every quarter second until it exits (for live events)."""
        cmd = self.command(*args, archive_dir=archive_dir)
        if while_running is None:
            proc = subprocess.run(
                cmd, check=False, env=self.env(), capture_output=True, text=True, timeout=600
            )
        else:
            with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
                child = subprocess.Popen(cmd, env=self.env(), stdout=out, stderr=err, text=True)
                deadline = time.monotonic() + 600
                while child.poll() is None and time.monotonic() < deadline:
                    while_running()
                    time.sleep(0.25)
                if child.poll() is None:
                    child.kill()
                child.wait()
                out.seek(0)
                err.seek(0)
                proc = subprocess.CompletedProcess(cmd, child.returncode, out.read(), err.read())
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"duplicity {args[0]} failed with exit code {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    @property
    def url(self) -> str:
        return f"azure://{self.container}"

    def backup(self, kind: str, source: Path, **kw) -> subprocess.CompletedProcess:
        return self.run(kind, "--volsize", str(self.volsize_mb), str(source), self.url, **kw)

    def collection_status(self, **kw) -> subprocess.CompletedProcess:
        return self.run("collection-status", self.url, **kw)

    def restore(self, target: Path, *extra: str, **kw) -> subprocess.CompletedProcess:
        return self.run("restore", *extra, self.url, str(target), **kw)


def make_sample_tree(root: Path, *, seed: int = 7, files: int = 3, size: int = 1_200_000) -> Path:
    """A directory of incompressible files, so a 1 MB --volsize gives several volumes."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "docs").mkdir(exist_ok=True)
    for i in range(files):
        (root / f"data-{i}.bin").write_bytes(rng.randbytes(size))
    (root / "docs" / "notes.txt").write_text("the quick brown fox\n" * 200)
    return root


def change_sample_tree(root: Path, step: int) -> None:
    rng = random.Random(1000 + step)
    (root / f"new-{step}.bin").write_bytes(rng.randbytes(300_000))
    with open(root / "docs" / "notes.txt", "a") as fh:
        fh.write(f"change {step}\n")


def deliver_new_events(
    service: RetierService,
    container: str,
    seen: set[str],
    first_tier: dict | None = None,
    echo: bool = False,
) -> list:
    """Send the handler the BlobCreated events Azure would have sent for blobs not seen before."""
    items = [i for i in service.store.list_blobs(container) if i.name not in seen]
    seen.update(i.name for i in items)
    if first_tier is not None:
        first_tier.update({i.name: i.tier for i in items})
    outcomes = [
        service.handle_event(event) for event in events_for(service.store, container, items)
    ]
    if echo:
        for o in outcomes:
            print(f"  BlobCreated {o.blob:<72} {o.status:<8} {len(o.moved):>2} moved  {o.reason}")
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retier.demo", description=__doc__)
    parser.add_argument(
        "--volume-tier", default=None, help="override RETIER_VOLUME_TIER (Cold, Cool or Archive)"
    )
    parser.add_argument("--container", default=f"retier-demo-{int(time.time())}")
    parser.add_argument(
        "--keep", action="store_true", help="keep the container and the work directory"
    )
    args = parser.parse_args(argv)

    env = dict(os.environ)
    if args.volume_tier:
        env["RETIER_VOLUME_TIER"] = args.volume_tier
    settings = load_settings(env)
    connection = settings.require_connection()
    if not connection.connection_string:
        raise SystemExit(
            "the demo needs RETIER_STORAGE to be a connection string (scripts/demo sets it to Azurite)"
        )
    store = BlobStore.from_connection(connection)
    service = RetierService(settings, store)
    work = Path(tempfile.mkdtemp(prefix="retier-demo-"))
    dup = Duplicity(connection.connection_string, args.container, work / "cache")
    source = make_sample_tree(work / "source")

    print(
        f"retier demo: {duplicity_version()} -> container {args.container!r}, volumes to "
        f"{settings.policy.volume_tier}, metadata "
        f"{settings.policy.metadata_tier or 'stays as uploaded'}\n"
    )
    store.create_container(
        args.container
    )  # so events can be polled before duplicity's first upload
    seen: set[str] = set()
    before: dict[str, str | None] = {}
    outcomes = []
    for step, kind in enumerate(["full", "incremental", "incremental"]):
        if step:
            time.sleep(1.1)  # duplicity's set names have one-second resolution
            change_sample_tree(source, step)
        print(f"duplicity {kind} (events delivered as the blobs appear):")
        # Azure sends BlobCreated seconds after each upload; poll the container to do the same.
        live = lambda: outcomes.extend(
            deliver_new_events(service, args.container, seen, before, echo=True)
        )
        dup.backup(kind, source, while_running=live)
        live()

    print("\nduplicity still works with the volumes retiered:")
    time.sleep(1.1)
    change_sample_tree(source, 9)
    dup.backup("incremental", source, archive_dir=work / "empty-cache")
    print("  incremental backup with an empty --archive-dir (lost local cache): ok")
    outcomes += deliver_new_events(service, args.container, seen, before)
    status = dup.collection_status()
    sets = [
        line
        for line in status.stdout.splitlines()
        if line.strip().startswith(("Full", "Incremental"))
    ]
    print(f"  collection-status: ok ({len(sets)} backup sets listed)")
    if settings.policy.volume_tier == "Archive":
        # duplicity never rehydrates: `duplicity restore` stops at the first archived volume.
        print(
            "  duplicity restore reads the volumes: with them in Archive, bring them back first "
            f"with `{retier_command()} rehydrate --container {args.container}` "
            "(then `status --wait`, the restore, and `release`)"
            + ("" if args.keep else "; scripts/demo --keep leaves the container to try it")
        )

    # One listing for the table, the summary and the bill: the counts agree by construction.
    listed = list(store.list_blobs(args.container))
    print_tiers(listed, before)
    final = {item.name: item.tier for item in listed}
    bad = [o for o in outcomes if o.status not in (HANDLED, IGNORED) or o.failures]
    volumes = [n for n in final if names.parse(n).kind.value == "volume"]
    wrong = [n for n in volumes if final[n] != settings.policy.volume_tier]
    wrong += [n for n, t in final.items() if names.parse(n).is_metadata and t != before.get(n)]
    bill = the_bill(listed, settings.policy.volume_tier, before)
    if not args.keep:
        store.delete_container(args.container)
        shutil.rmtree(work, ignore_errors=True)
    if bad or wrong:
        print(
            f"\nFAILED: {len(bad)} event(s) not handled, blobs at the wrong tier: {wrong}",
            file=sys.stderr,
        )
        return 1
    print(
        f"\nall {len(volumes)} volumes are {settings.policy.volume_tier}; the other "
        f"{len(final) - len(volumes)} blobs (manifests, signatures) kept their tier."
    )
    print("\n" + "\n".join(bill))
    return 0


def duplicity_version() -> str:
    """`duplicity 3.2.1`: the name once, the version, not the release date `--version` adds."""
    words = subprocess.run(
        [duplicity_binary(), "--version"], check=True, capture_output=True, text=True
    ).stdout.split()
    if words and words[0] == "duplicity":
        words = words[1:]
    return f"duplicity {words[0]}" if words else "duplicity"


def retier_command() -> str:
    """How to run retier from here: `retier` when it is on PATH, else the venv's own script."""
    beside = Path(sys.executable).with_name("retier")
    on_path = shutil.which("retier")
    if on_path and (not beside.exists() or Path(on_path).resolve() == beside.resolve()):
        return "retier"
    if beside.exists():
        try:
            return str(beside.relative_to(Path.cwd()))
        except ValueError:
            return str(beside)
    return f"{Path(sys.executable).name} -m retier"


# The typical home schedule the README's cost table shows: 500 GB, 1 % a day, monthly fulls,
# six months kept (duplicity remove-older-than 180D), one restore a year.
HOME_SCHEDULE = {"source_gb": 500, "daily_change_pct": 1, "full_every_days": 30, "keep_days": 180}


def the_bill(items: list[BlobItem], volume_tier: str, before: dict) -> list[str]:
    """The demo container's monthly storage before and after retier, and the same on a real schedule.

    `items` is the container's listing, `before` each blob's tier when it was first seen.
    """
    from retier import costs
    from retier.model import Schedule, run_model
    from retier.report import priced_tier

    prices = costs.load_prices()
    cur = prices["currency"]

    def per_month(tier_of) -> float:
        return sum(costs.storage_per_month(i.size, priced_tier(tier_of(i)), prices) for i in items)

    was = per_month(lambda i: before.get(i.name))  # where duplicity uploaded it
    now = per_month(lambda i: i.tier)
    total = sum(i.size for i in items)
    volumes = sum(i.size for i in items if names.parse(i.name).kind is Kind.VOLUME)
    lines = [
        (
            f"the bill ({prices['region']} {prices['redundancy']} prices as of {prices['as_of']}; "
            "GB = 2^30 bytes):"
        ),
        (
            f"  this container: {costs.format_money(was, cur)}/month as uploaded -> "
            f"{costs.format_money(now, cur)}/month now: {now / was:.0%} of before "
            f"(volumes are {volumes / max(total, 1):.0%} of its bytes)"
        ),
    ]
    schedule = Schedule(**HOME_SCHEDULE)
    result = run_model(schedule, prices)
    hot = result.by_name("all-Hot")
    ours = result.by_name(f"volumes-{volume_tier}")
    lines += [
        (
            f"  on a real schedule ({schedule.source_gb:g} GB, {schedule.daily_change_pct:g} % a day, "
            f"a full every {schedule.full_every_days} days, kept {schedule.keep_days} days): storage "
            f"{costs.format_money(hot.storage, cur)}/month all-Hot -> "
            f"{costs.format_money(ours.storage, cur)} with volumes {volume_tier}: "
            f"{ours.storage / hot.storage:.0%} of before; everything included "
            f"{costs.format_money(hot.total, cur)} -> {costs.format_money(ours.total, cur)}/month"
        ),
        (
            f"  see: {retier_command()} cost --model --source-gb 500 --daily-change 1 "
            "--full-every-days 30 --keep-days 180"
        ),
    ]
    return lines


def print_tiers(listed: list[BlobItem], before: dict) -> None:
    """Every blob of the container with its tier when it was uploaded and now."""
    final = {item.name: item.tier for item in listed}
    width = max(map(len, final))
    print(f"\n{'blob':<{width}}  {'kind':<10}  tier before -> after")
    for name in sorted(final, key=lambda n: (names.parse(n).kind.value != "volume", n)):
        print(
            f"{name:<{width}}  {names.parse(name).kind.value:<10}  {before.get(name)} -> {final[name]}"
        )


if __name__ == "__main__":
    sys.exit(main())
