"""PNG charts of the bill: the model's strategies, or a container's backup sets by tier (matplotlib).

matplotlib is an optional extra (`pip install 'retier[report]'`) so that the Function app's
runtime stays lean: it is imported only when a chart is drawn, with the Agg backend (no display).
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from retier import costs

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'retier[report]'"
TIER_COLOURS = {
    "Hot": "#d62728",
    "Cool": "#1f9bcf",
    "Cold": "#3b4cc0",
    "Archive": "#555555",
    # Smart tier blobs, by the tier Smart has them in now (retier.policy.tier_label)
    "Smart/Hot": "#f4a3a3",
    "Smart/Cool": "#9fd3ea",
    "Smart/Cold": "#9ea7e3",
    "Smart": "#e0c36a",
    "unknown": "#bbbbbb",
}
PART_COLOURS = {
    "storage": "#4c72b0",
    "operations": "#dd8452",
    "early deletion": "#c44e52",
    "restores": "#8172b3",
}


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ChartUnavailable(f"--chart needs matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def require() -> None:
    """Raise ChartUnavailable now, before any work, if a chart could not be drawn."""
    _pyplot()


def model_chart(result, path: str | Path) -> Path:
    """Monthly total per strategy, split into storage / operations / early deletion / restores."""
    plt = _pyplot()
    s = result.schedule
    names = [x.name for x in result.strategies]
    parts = {
        "storage": [x.storage for x in result.strategies],
        "operations": [x.operations for x in result.strategies],
        "early deletion": [x.early_deletion for x in result.strategies],
        "restores": [x.restores for x in result.strategies],
    }
    fig, ax = plt.subplots(figsize=(10, 5.2), dpi=110)
    bottom = [0.0] * len(names)
    for part, values in parts.items():
        ax.bar(names, values, bottom=bottom, color=PART_COLOURS[part], label=part, width=0.6)
        bottom = [b + v for b, v in zip(bottom, values)]
    best = result.recommended.name
    top = max(bottom) or 1.0
    for i, (name, total) in enumerate(zip(names, bottom)):
        label = costs.format_money(total, result.currency)
        ax.text(i, total + top * 0.015, label, ha="center", va="bottom", fontsize=9)
        if name == best:
            ax.text(
                i, total + top * 0.075, "cheapest", ha="center", va="bottom", fontsize=9,
                fontweight="bold",
            )  # fmt: skip
    ax.set_ylim(0, top * 1.18)
    ax.set_ylabel(f"{result.currency} per month")
    ax.set_title(
        f"duplicity: {s.source_gb:g} GB source, {s.daily_change_pct:g} % a day, full every "
        f"{s.full_every_days} days, kept {s.keep_days} days, {s.restores_per_year:g} restore(s)/year\n"
        f"monthly bill per strategy (prices as of {result.prices_as_of}; GB = 2^30 bytes)",
        fontsize=10,
    )
    # Outside the axes: whichever strategy is tallest, the legend never covers a bar.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _save(fig, plt, path)


def _byte_unit(largest: float) -> tuple[str, float]:
    """A binary unit in which the largest value reads as a plain number."""
    for unit, size in (("GiB", costs.GB), ("MiB", 2**20), ("KiB", 2**10)):
        if largest >= size:
            return unit, size
    return "bytes", 1


def container_chart(reports, path: str | Path) -> Path:
    """Bytes per backup set over time, coloured by tier; the monthly bill before and after above."""
    plt = _pyplot()
    import matplotlib.dates as mdates
    from matplotlib.patches import Patch

    reports = list(reports)
    fig, axes = plt.subplots(
        len(reports), 1, figsize=(11, 4.4 * len(reports)), dpi=110, squeeze=False
    )
    for ax, report in zip((a[0] for a in axes), reports):
        cur = report.prices["currency"]
        sets = sorted((s for s in report.sets.values() if s.time), key=lambda s: s.time)
        used = [t for t in TIER_COLOURS if any(s.bytes_by_tier.get(t) for s in sets)]
        unit, size = _byte_unit(max((s.bytes for s in sets), default=0))
        xs = [s.time for s in sets]
        # Bars a little narrower than the closest two sets, so daily sets do not overlap.
        gaps = [(b - a).total_seconds() / 86400 for a, b in itertools.pairwise(xs) if b > a]
        width = max(min(gaps) * 0.8, 0.0001) if gaps else 0.8
        bottom = [0.0] * len(sets)
        hatches = ["" if s.finished else "//" for s in sets]
        for tier in used:
            values = [s.bytes_by_tier.get(tier, 0) / size for s in sets]
            bars = ax.bar(xs, values, bottom=bottom, width=width, color=TIER_COLOURS[tier])
            for bar, hatch in zip(bars, hatches):
                bar.set_hatch(hatch)
            bottom = [b + v for b, v in zip(bottom, values)]
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_ylabel(f"{unit} per backup set ({'GB = 2^30 bytes' if unit == 'GiB' else 'binary'})")
        ax.set_xlabel("backup set (time of its last backup), unrecognised names left out")
        ax.set_title(
            f"{report.container}: storage {costs.format_money(report.all_hot_per_month, cur)}/month "
            f"all-Hot, {costs.format_money(report.storage_per_month, cur)} now, "
            f"{costs.format_money(report.after_moves_per_month, cur)} once the "
            f"{report.plan.moves.count:,} planned moves are done",
            fontsize=10,
        )
        handles = [Patch(color=TIER_COLOURS[t], label=t) for t in used]
        if any(hatches):
            handles.append(
                Patch(facecolor="white", edgecolor="black", hatch="//", label="unfinished set")
            )
        if handles:
            # Outside the axes, so it never covers a bar.
            ax.legend(
                handles=handles,
                title="tier",
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                fontsize=9,
                frameon=False,
            )
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig, plt, path: str | Path) -> Path:
    path = Path(path)
    try:
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    logger.info("chart written to %s", path)
    return path
