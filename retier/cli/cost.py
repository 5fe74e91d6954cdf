"""`retier cost` and `retier prices`: what a container or a schedule costs, and the prices used."""

from __future__ import annotations

import argparse
import sys
import textwrap

from retier.cli.common import EXIT_OK, UsageError, human_bytes, make_service, print_json
from retier.costs import format_money
from retier.model import ASSUMPTIONS

MODEL_EPILOG = (
    "how the model works (--model), every assumption:\n"
    + "".join(
        textwrap.fill(
            assumption,
            98,
            initial_indent="  - ",
            subsequent_indent="    ",
            break_on_hyphens=False,
            break_long_words=False,
        )
        + "\n"
        for assumption in ASSUMPTIONS
    )
    + "  - recommended: the cheapest total. Prices: `retier prices` (RETIER_PRICES overrides them)\n"
)

EPILOG = (
    """\
examples:
  retier cost --container backups                      # what it costs now, after the sweep, saved
  retier cost --container backups --json --chart bill.png
  retier cost --model --source-gb 500 --daily-change 1 --full-every-days 30 --keep-days 180
  retier cost --model --source-gb 500 --daily-change 1 --full-every-days 7 --keep-days 60 \\
      --restores-per-year 12 --chart model.png

the container report (--container):
  - storage only, each blob at the tier it is in now (a blob with no tier is priced as Hot);
    "still to move" and the unfinished sets are exactly `retier sweep --dry-run`'s
  - when a blob reached its tier: its AccessTierChangeTime, else its creation time; moving on
    from a tier inherited from the account's default pays no early deletion
  - retier's own cost: sets a month from --sets-per-day, else from the manifests' times when
    they span a day or more (one a day assumed otherwise: a young container has no cadence),
    volumes and blobs per finished set from the listing, priced as in the model below

"""
    + MODEL_EPILOG
)


# -- cost --container -----------------------------------------------------------------------------


def _print_report(report) -> None:
    out = sys.stdout.write
    cur = report.prices["currency"]
    plan = report.plan
    total = report.total
    out(
        f"{report.container}: {plan.listed:,} blobs, {human_bytes(total.bytes)} "
        f"(prices: {report.prices.get('region')} {report.prices.get('redundancy')}, "
        f"as of {report.prices.get('as_of')}; GB = 2^30 bytes)\n"
    )
    if report.held:
        out(
            f"  on restore hold ({report.held}): the sweep and the function leave it alone until "
            "`retier release`; the moves below are what they would do then\n"
        )
    out(f"  {'kind':<11} {'tier':<9} {'blobs':>9} {'size':>11} {'per month':>16}\n")
    for (kind, tier), t in sorted(report.by_kind_tier().items()):
        price = report.charge(tier, t.bytes)
        out(
            f"  {kind:<11} {tier:<9} {t.count:>9,} {human_bytes(t.bytes):>11} {format_money(price, cur):>16}\n"
        )
    now, hot, cool = report.storage_per_month, report.all_hot_per_month, report.all_cool_per_month
    after = report.after_moves_per_month
    out(f"  storage now:            {format_money(now, cur)}/month\n")
    if report.smart_now.count:
        out(
            f"  of which Smart tier's monitoring fee: {format_money(report.smart_fee_per_month, cur)}"
            f"/month for {report.smart_now.count:,} blobs of 128 KiB or more; after the moves "
            f"{format_money(report.smart_fee_after_per_month, cur)}/month "
            "(metadata stays Smart; docs/smart-tier.md)\n"
        )
    out(
        f"  the same bytes all-Hot: {format_money(hot, cur)}/month (duplicity's default): "
        f"saving {format_money(hot - now, cur)}\n"
    )
    out(
        f"  the same bytes all-Cool: {format_money(cool, cur)}/month (--azure-blob-tier Cool): "
        f"saving {format_money(cool - now, cur)}\n"
    )
    moves = plan.moves
    if moves.count:
        out(
            f"  still to move to {report.volume_tier}: {moves.count:,} volumes, "
            f"{human_bytes(moves.bytes)} (what `retier sweep --dry-run` moves); then "
            f"{format_money(after, cur)}/month, saving {format_money(hot - after, cur)} against all-Hot\n"
        )
    else:
        out(f"  nothing left to move to {report.volume_tier}\n")
    if plan.early_deletion.count:
        out(
            f"  early deletion of those moves: {plan.early_deletion.count:,} volume(s) set "
            f"Cool/Cold less than 30/90 days ago: ~{format_money(plan.early_deletion_charge, cur)} "
            "(wait, or accept it):\n"
        )
        named = report.trap_sets_named()
        for t in named:
            out(
                f"    {t.label}: {t.blobs} volume(s), {human_bytes(t.bytes)}, ~{format_money(t.charge, cur)}\n"
            )
        if len(report.trap_sets) > len(named):
            out(f"    ... and {len(report.trap_sets) - len(named)} more sets\n")
    if report.exposure:
        out("  inside their tier's minimum days (charged if deleted or moved on today):\n")
        for tier, t in report.exposure.items():
            out(
                f"    {tier:<8} {t.count:>9,} blobs {human_bytes(t.bytes):>11}  "
                f"~{format_money(report.exposure_charge[tier], cur)}\n"
            )
    for u in plan.unfinished:
        age = u.age_days(report.now)
        out(
            f"  unfinished set {u.label}: {u.volumes} volume(s), {human_bytes(u.bytes)}, "
            f"{f'{age:.1f} days old' if age is not None else 'age unknown'}"
            f"{' (abandoned? `duplicity cleanup` removes it)' if u.abandoned(report.now) else ''}\n"
        )
    rc = report.running_cost()
    out(
        f"  retier itself, for {_cadence_text(report)}, {rc.volumes_per_set:.1f} volumes each: "
        f"~{format_money(rc.total, cur)}/month ({rc.requests.writes:,.0f} tier changes, "
        f"{rc.requests.lists:,.0f} listings: {format_money(rc.storage_operations, cur)}; Event Grid "
        f"{rc.event_grid_operations:,.0f} operations: {format_money(rc.event_grid, cur)}; "
        f"{rc.executions:,.0f} Function executions: {format_money(rc.functions, cur)}"
        f"{' (inside the free grant)' if rc.functions == 0 and rc.executions else ''})\n"
    )


def _cadence_text(report) -> str:
    """How many sets a month retier's own cost assumes, and why: never a rate from seconds."""
    from retier.report import FEW, GIVEN, MEASURED

    per_month, basis = report.cadence()
    if basis == GIVEN:
        return f"{report.sets_per_day:g} set(s) a day (--sets-per-day)"
    if basis == MEASURED:
        return f"{per_month:.1f} sets/month from the manifests"
    if basis == FEW:
        return "one set a day assumed (fewer than two finished sets; --sets-per-day N gives yours)"
    return (
        f"one set a day assumed (the finished sets span {_span(report.span_days())}: too young "
        "to measure a cadence; --sets-per-day N gives yours)"
    )


def _span(days: float) -> str:
    seconds = days * 86400
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _cost_containers(args) -> int:
    from retier.cli.sweep import Progress
    from retier.costs import load_prices
    from retier.report import build_report

    service = make_service()
    prices = load_prices()
    containers = args.container or sorted(service.settings.containers)
    if not containers:
        raise UsageError("name a container with --container (or set RETIER_CONTAINERS), or --model")
    if args.chart:
        _require_chart(args.chart)
    reports = []
    for container in containers:
        progress = Progress(container, enabled=not args.json and sys.stderr.isatty())
        report = build_report(
            service.store,
            container,
            service.settings,
            prices,
            progress=lambda plan, p=progress: p(plan, None),
            sets_per_day=args.sets_per_day,
        )
        progress.close()
        reports.append(report)
        if not args.json:
            _print_report(report)
    if args.chart:
        from retier.chart import container_chart

        _write_chart(container_chart, reports, args.chart)
        if not args.json:
            print(f"chart: {args.chart}")
    if args.json:
        print_json(_containers_json(reports, prices))
    return EXIT_OK


def _containers_json(reports, prices) -> dict:
    """Every container's report, and the totals under the documented top-level keys."""
    from collections import defaultdict

    by_tier: dict[str, dict] = defaultdict(lambda: {"blobs": 0, "bytes": 0, "per_month": 0.0})
    each = [r.to_dict() for r in reports]
    for d in each:
        for tier, row in d["by_tier"].items():
            for key in ("blobs", "bytes", "per_month"):
                by_tier[tier][key] += row[key]
    return {
        "currency": prices["currency"],
        "prices_as_of": prices.get("as_of"),
        "storage_per_month": sum(d["storage_per_month"] for d in each),
        "all_hot_per_month": sum(d["all_hot_per_month"] for d in each),
        "all_cool_per_month": sum(d["all_cool_per_month"] for d in each),
        "by_tier": dict(by_tier),
        "containers": each,
    }


# -- cost --model -------------------------------------------------------------------------------


def _print_model(result) -> None:
    out = sys.stdout.write
    s, cur = result.schedule, result.currency
    out(
        f"duplicity schedule: {s.source_gb:g} GB source, {s.daily_change_pct:g} % changed a day, "
        f"full every {s.full_every_days} days, remove-older-than {s.keep_days} days "
        f"(a chain lives up to {s.full_every_days + s.keep_days} days), --volsize {s.volsize_mb}, "
        f"{s.restores_per_year:g} restore(s) a year\n"
    )
    out(
        f"  {'strategy':<18} {'storage':>12} {'operations':>12} {'early del.':>12} "
        f"{'restores':>12} {'total/month':>14}\n"
    )
    best = result.recommended.name
    for x in result.strategies:
        out(
            f"  {x.name:<18} {format_money(x.storage, cur):>12} {format_money(x.operations, cur):>12} "
            f"{format_money(x.early_deletion, cur):>12} {format_money(x.restores, cur):>12} "
            f"{format_money(x.total, cur):>14}{'  <- cheapest' if x.name == best else ''}\n"
        )
    hot = result.by_name("all-Hot").total
    rec = result.recommended
    out(
        f"  recommended: {rec.name} ({format_money(rec.total, cur)}/month, "
        f"{rec.total / hot:.0%} of all-Hot's {format_money(hot, cur)})\n"
        f"  prices as of {result.prices_as_of}; every assumption: retier cost --help\n"
    )


def _cost_model(args) -> int:
    from retier.costs import load_prices
    from retier.model import ModelError, Schedule, run_model

    missing = [
        flag
        for flag, value in (
            ("--source-gb", args.source_gb),
            ("--daily-change", args.daily_change),
            ("--full-every-days", args.full_every_days),
            ("--keep-days", args.keep_days),
        )
        if value is None
    ]
    if missing:
        raise UsageError(f"--model needs {', '.join(missing)}")
    try:
        schedule = Schedule(
            source_gb=args.source_gb,
            daily_change_pct=args.daily_change,
            full_every_days=args.full_every_days,
            keep_days=args.keep_days,
            volsize_mb=200 if args.volsize_mb is None else args.volsize_mb,
            restores_per_year=1.0 if args.restores_per_year is None else args.restores_per_year,
        )
    except ModelError as exc:
        raise UsageError(str(exc)) from None
    if args.chart:
        _require_chart(args.chart)
    result = run_model(schedule, load_prices())
    if args.chart:
        from retier.chart import model_chart

        _write_chart(model_chart, result, args.chart)
    if args.json:
        print_json(result.to_dict())
    else:
        _print_model(result)
        if args.chart:
            print(f"chart: {args.chart}")
    return EXIT_OK


def _require_chart(path: str) -> None:
    """Before any work: the chart can be drawn, and written where asked (no traceback after the
    report for a directory that does not exist)."""
    import os

    from retier.chart import ChartUnavailable, require

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"--chart {path}: is a directory; name a .png file in it")
    if not os.path.isdir(folder):
        raise UsageError(f"--chart {path}: no directory {folder} to write it in")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--chart {path}: cannot write in {folder} (permission denied)")
    try:
        require()
    except ChartUnavailable as exc:
        raise UsageError(str(exc)) from None


def _write_chart(draw, what, path: str) -> None:
    try:
        draw(what, path)
    except OSError as exc:
        raise UsageError(f"--chart {path}: cannot write it: {exc.strerror}") from None


MODEL_OPTIONS = (
    "source_gb",
    "daily_change",
    "full_every_days",
    "keep_days",
    "volsize_mb",
    "restores_per_year",
)


def cmd_cost(args: argparse.Namespace) -> int:
    if args.model and args.container:
        raise UsageError("--model and --container are separate questions: give one")
    if args.sets_per_day is not None:
        if args.model:
            raise UsageError("--sets-per-day is for --container; --model assumes a backup a day")
        if not 0 < args.sets_per_day <= 1440:
            raise UsageError("--sets-per-day must be more than 0 (e.g. 1, or 0.14 for weekly)")
    given = [o for o in MODEL_OPTIONS if getattr(args, o) is not None]
    if given and not args.model:
        raise UsageError(f"--{given[0].replace('_', '-')} describes a schedule: add --model")
    return _cost_model(args) if args.model else _cost_containers(args)


# -- prices -------------------------------------------------------------------------------------


def cmd_prices(args: argparse.Namespace) -> int:
    from retier import costs

    prices, overridden = costs.load_prices_and_overrides()
    age = costs.prices_age_days(prices)
    stale = costs.is_stale(prices)
    if stale:
        sys.stderr.write(
            f"warning: the price table is {'of no readable date' if age is None else f'{age} days old'} "
            f"(as of {prices.get('as_of')}): check your region's prices and set RETIER_PRICES\n"
        )
    if args.json:
        print_json(
            {
                "prices": prices,
                "as_of": prices.get("as_of"),
                "age_days": age,
                "stale": stale,
                "gb_bytes": costs.GB,
                "overridden": overridden,
                "override_file": _override_file(),
            }
        )
        return EXIT_OK
    out = sys.stdout.write
    cur = prices["currency"]
    out(
        f"prices: {prices.get('region')}, {prices.get('redundancy')}, {cur}, as of "
        f"{prices.get('as_of')} ({'unknown age' if age is None else f'{age} days ago'})\n"
        f"source: {prices.get('source')}\n"
        f"GB = 2^30 bytes ({costs.GB:,}), as Azure bills storage\n"
    )
    if overridden:
        out(f"from RETIER_PRICES={_override_file()}: {', '.join(overridden)}\n")
    else:
        out("RETIER_PRICES not set: the built-in table\n")
    tiers = ("Hot", "Cool", "Cold", "Archive")
    rows = (
        ("storage per GB-month", "storage_per_gb_month"),
        ("write per 10,000", "write_per_10k"),
        ("read per 10,000", "read_per_10k"),
        ("retrieval per GB", "retrieval_per_gb"),
        ("minimum days", "minimum_days"),
    )
    out(f"  {'':<22}" + "".join(f"{t:>10}" for t in tiers) + "\n")
    for label, key in rows:
        values = prices.get(key, {})
        out(f"  {label:<22}" + "".join(f"{values.get(t, '-')!s:>10}" for t in tiers) + "\n")
    out(
        f"  Archive High priority: read {prices['read_per_10k'].get('ArchiveHigh')} per 10,000, "
        f"retrieval {prices['retrieval_per_gb'].get('ArchiveHigh')} per GB\n"
        f"  list per 10,000: {prices.get('list_per_10k')}; other per 10,000: {prices.get('other_per_10k')}\n"
        f"  Smart tier monitoring: {prices.get('smart_monitoring_per_10k_objects')} per 10,000 "
        "objects of 128 KiB or more a month\n"
        f"  Event Grid: {prices.get('event_grid_per_million')} per million operations, first "
        f"{prices.get('event_grid_free_per_month'):,} a month free\n"
        f"  Functions (Flex Consumption): {prices.get('functions_per_million_executions')} per million "
        f"executions, {prices.get('functions_per_gb_second')} per GB-s; free a month: "
        f"{prices.get('functions_free_executions_per_month'):,} executions, "
        f"{prices.get('functions_free_gb_seconds_per_month'):,} GB-s\n"
    )
    return EXIT_OK


def _override_file() -> str | None:
    import os

    from retier.costs import PRICES_SETTING

    return os.environ.get(PRICES_SETTING, "").strip() or None


def register(sub) -> None:
    p = sub.add_parser(
        "cost",
        help="what a container costs a month and what retier saves; or which tier a schedule should use",
        description="With --container: list each container once (as `sweep --dry-run` does) and show "
        "bytes and blobs by kind and tier with their monthly storage charge, the same bytes all-Hot "
        "and all-Cool and the saving, what is still to move and the bill after, the early-deletion "
        "charge of those moves and of deleting what is inside its tier's minimum days, unfinished "
        "sets, and what retier itself costs at the container's backup cadence. With --model: the "
        "steady-state monthly bill of a duplicity schedule under each strategy, and the cheapest. "
        "Changes nothing. Exit 0 ok, 1 storage failed (retry), 2 bad usage.",
        epilog=EPILOG,
    )
    p.add_argument(
        "--container",
        action="append",
        help="a container to report on (repeatable; default: RETIER_CONTAINERS)",
    )
    p.add_argument(
        "--sets-per-day",
        type=float,
        metavar="N",
        help="--container: your backup schedule, for retier's own cost (default: measured from "
        "the manifests when they span a day or more, else one a day)",
    )
    p.add_argument("--model", action="store_true", help="model a schedule instead of a container")
    p.add_argument("--source-gb", type=float, help="--model: size of the backed-up data, GB")
    p.add_argument(
        "--daily-change", type=float, metavar="PCT", help="--model: %% of the source changed a day"
    )
    p.add_argument("--full-every-days", type=int, metavar="D", help="--model: days between fulls")
    p.add_argument(
        "--keep-days", type=int, metavar="K", help="--model: duplicity remove-older-than K days"
    )
    p.add_argument("--volsize-mb", type=int, help="--model: duplicity --volsize (200)")
    p.add_argument(
        "--restores-per-year",
        type=float,
        metavar="R",
        help="--model: restores a year (1)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--chart", metavar="FILE", help="write a PNG chart (needs: pip install 'retier[report]')"
    )
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser(
        "prices",
        help="the price table in use: region, redundancy, date, source, your overrides",
        description="Show the prices every estimate uses: the built-in dated table (East US 2, LRS) "
        'with the keys your RETIER_PRICES file replaces. Warns on stderr (and "stale": true in '
        "--json) when the table is more than a year old. GB means 2^30 bytes, as Azure bills storage.",
        epilog="examples:\n  retier prices\n  RETIER_PRICES=westeurope.json retier prices --json\n\n"
        'a RETIER_PRICES file holds any of the same keys, e.g.\n  {"region": "West Europe", '
        '"as_of": "2026-12-01", "storage_per_gb_month": {"Archive": 0.0018}}',
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_prices)
