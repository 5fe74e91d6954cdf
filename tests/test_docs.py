"""The documentation keeps what it promised: no documented command, flag or setting is lost
when text moves between README.md and docs/, and every relative link and #anchor resolves.

tests/data/documented_terms.txt lists what the README documented before it was split into
docs/ pages (commit 9b09762), extracted by `documented_terms` below and reviewed by hand:

    git show 9b09762:README.md | python tests/test_docs.py > tests/data/documented_terms.txt

plus, added by hand, names the finder does not see (duplicity's commands written alone, the
Functions' and containers' names, `func start`, `python -m retier`). A term may move to any page; it may not disappear. Remove a line only when the thing itself is
gone from retier (and say so in the commit).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
TERMS = Path(__file__).resolve().parent / "data" / "documented_terms.txt"

# The pages a reader can reach from the README; the terms may live on any of them.
PAGES = sorted(
    [ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "bench" / "README.md"]
    + list((ROOT / "docs").glob("*.md"))
)
README_MAX_LINES = 250

_SETTING = re.compile(
    r"\b(RETIER_[A-Z_]*[A-Z](?:__[A-Za-z]+)?|AZURE_CONNECTION_STRING|AzureWebJobsStorage)\b"
)
_FLAG = re.compile(r"(?<![\w-])(--[a-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*)(?![\w-])")
_AZ = re.compile(r"(?<![\w./-])(az(?: [a-z][a-z0-9]*(?:-[a-z0-9]+)*)+)")
_COMMAND = re.compile(r"\b((?:retier|duplicity) [a-z][a-z-]*[a-z])\b")
_SCRIPT = re.compile(r"(?<![\w/.-])((?:scripts|bench)/[A-Za-z_][\w-]*(?:\.py|\.js|\.md)?)\b")
# `retier <word>` is a command only when <word> is one; prose says "retier itself" too.
_RETIER_COMMANDS = {
    "bridge",
    "classify",
    "completion",
    "cost",
    "doctor",
    "emit-events",
    "handle-event",
    "help",
    "prices",
    "probe",
    "rehydrate",
    "release",
    "replay",
    "restore-plan",
    "status",
    "sweep",
}
_DUPLICITY_COMMANDS = {
    "cleanup",
    "collection-status",
    "full",
    "incremental",
    "list-current-files",
    "remove-older-than",
    "restore",
    "verify",
}


def documented_terms(text: str) -> list[str]:
    """The commands, flags, settings and scripts a Markdown text documents, sorted."""
    terms = set(_SETTING.findall(text)) | set(_FLAG.findall(text)) | set(_SCRIPT.findall(text))
    terms |= set(_AZ.findall(text))
    for command in _COMMAND.findall(text):
        tool, word = command.split(" ", 1)
        known = _RETIER_COMMANDS if tool == "retier" else _DUPLICITY_COMMANDS
        if word in known:
            terms.add(command)
    return sorted(terms)


def _is_documented(term: str, corpus: str) -> bool:
    return re.search(r"(?<![\w-])" + re.escape(term) + r"(?![\w-])", corpus) is not None


def test_every_term_the_old_readme_documented_is_still_documented():
    expected = [t for t in TERMS.read_text().splitlines() if t.strip()]
    assert len(expected) > 100  # the list is real, not emptied
    corpus = "\n".join(page.read_text() for page in PAGES)
    assert [t for t in expected if not _is_documented(t, corpus)] == []


def test_the_term_finder_finds_what_it_must_and_nothing_else():
    text = (
        "Run `retier sweep --container C --dry-run` with RETIER_STORAGE__blobServiceUri, "
        "then scripts/deploy and `duplicity full`; retier itself costs little, -- is no flag."
    )
    assert documented_terms(text) == [
        "--container",
        "--dry-run",
        "RETIER_STORAGE__blobServiceUri",
        "duplicity full",
        "retier sweep",
        "scripts/deploy",
    ]
    assert not _is_documented("--dry-run", "use --dry-runs")
    assert not _is_documented("RETIER_STORAGE", "RETIER_STORAGE__clientId")


def test_every_price_date_is_the_price_tables():
    from retier.costs import DEFAULT_PRICES

    dates = {
        (page.name, d)
        for page in PAGES
        for d in re.findall(r"as of\s+(\d{4}-\d\d-\d\d)", page.read_text())
    }
    assert {page for page, _ in dates} >= {"README.md", "costs.md"}
    assert {d for _, d in dates} == {DEFAULT_PRICES["as_of"]}


def test_what_the_documentation_said_that_was_not_so_stays_fixed():
    """Issue 15, item 8 (the price date has its own test above)."""
    pages = {
        page.relative_to(ROOT).as_posix(): " ".join(page.read_text().split()) for page in PAGES
    }
    everything = "\n".join(pages.values())
    # A new set's manifest event moves only its own set: after a release, it is the sweep.
    assert not re.search(r"next event or the (daily )?sweep (moves|re-tiers)", everything)
    assert (
        "The next sweep (the daily timer, or `retier sweep`) moves the volumes back"
        in (pages["docs/restore.md"])
    )
    # retier is not published: the chart extra installs from the checkout.
    assert "retier[report]" not in everything.replace("-e '.[report]'", "")
    assert "`pip install -e '.[report]'`" in pages["docs/costs.md"]
    # RETIER_PRICES has its row in the settings table.
    assert "| `RETIER_PRICES` |" in pages["README.md"]
    # "restore hold" is defined where the README first says it.
    readme = pages["README.md"].lower()
    assert readme.index("restore hold") == readme.index("**restore hold.**") + 2


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= README_MAX_LINES


# --- links ------------------------------------------------------------------------------------

_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def github_anchors(text: str) -> set[str]:
    """The #anchors GitHub gives a Markdown file's headings (its slug rules, duplicates -1, -2)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose_lines(text):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def broken_links(page: Path) -> list[str]:
    broken = []
    for line in _prose_lines(page.read_text()):
        line = re.sub(r"`[^`]*`", "", line)  # code spans are not links
        for target in _LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in github_anchors(dest.read_text()):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    return broken


def test_every_relative_link_and_anchor_resolves():
    assert len(PAGES) >= 10
    assert [b for page in PAGES for b in broken_links(page)] == []


def test_the_link_checker_sees_a_broken_file_and_a_broken_anchor(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "a.md").write_text(
        "# Top `code` heading: yes\n\n## Top code heading yes\n\n```sh\n# not a heading\n```\n"
    )
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#top-code-heading-yes) [ok](a.md#top-code-heading-yes-1) [ok](#here)\n"
        "## Here\n[bad](a.md#not-a-heading) [bad](missing.md) [web](https://example.com/x)\n"
        "`[not a link](nowhere.md)`\n"
    )
    assert broken_links(page) == [
        "b.md: a.md#not-a-heading (no such heading)",
        "b.md: missing.md (no such file)",
    ]


# --- releases: workflows, versions, the button ----------------------------------------------

WORKFLOWS = ROOT / ".github" / "workflows"


def _actionlint() -> tuple[Path, Path]:
    """actionlint and shellcheck as scripts/lib.sh installs them (pinned there, read from there)."""
    lib = (ROOT / "scripts" / "lib.sh").read_text()
    (version,) = re.findall(r'^ACTIONLINT_VERSION="([^"]+)"', lib, re.MULTILINE)
    bin_dir = ROOT / ".tools" / f"actionlint-{version}" / "bin"
    tools = (bin_dir / "actionlint", bin_dir / "shellcheck")
    for tool in tools:
        if not tool.is_file():
            pytest.fail(f"{tool} is missing: scripts/test installs it (scripts/lib.sh)", False)
    return tools


def _run_actionlint(*files: Path) -> subprocess.CompletedProcess:
    actionlint, shellcheck = _actionlint()
    return subprocess.run(
        [str(actionlint), "-verbose", "-no-color", "-shellcheck", str(shellcheck), "-pyflakes="]
        + [str(f) for f in files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_workflows_pass_actionlint_with_shellcheck():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "release.yml"]
    proc = _run_actionlint(*files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Rule "shellcheck" was disabled' not in proc.stderr  # the run: scripts were checked


def test_actionlint_refuses_a_broken_workflow(tmp_path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.event.head_commit.message }}\n"
        "      - run: cp $SRC dest\n"
        "      - uses: actions/checkout@v5\n        with:\n          no-such-input: 1\n"
    )
    proc = _run_actionlint(bad)
    assert proc.returncode == 1
    assert "[expression]" in proc.stdout  # untrusted input straight into a script
    assert "SC2086" in proc.stdout  # shellcheck: an unquoted variable
    assert "no-such-input" in proc.stdout  # the action's inputs are known


def test_ci_runs_the_test_suite_on_the_platform_it_needs():
    ci = (WORKFLOWS / "ci.yml").read_text()
    assert re.search(r"^on:\n  push:\n  pull_request:\n", ci, re.MULTILINE)
    assert 'python-version: "3.11"' in ci and 'node-version: "20"' in ci
    assert "apt-get install -y par2" in ci
    assert re.search(r"run: bash scripts/test\b", ci)


def test_a_tag_publishes_the_checked_package_and_the_template_the_button_deploys():
    release = (WORKFLOWS / "release.yml").read_text()
    assert 'tags: ["v*.*.*"]' in release
    assert "bash scripts/package --out dist/retier-function.zip" in release
    package_url = "https://github.com/$REPOSITORY/releases/download/$TAG/retier-function.zip"
    assert f'--package-url "{package_url}"' in release
    assert (
        'RETIER_PACKAGE="$PWD/dist/retier-function.zip" bash scripts/test tests/test_package.py'
        in (release)
    )
    assert "dist/retier-function.zip dist/main.json dist/SHA256SUMS" in release
    # The button loads the latest release's main.json, whose packageUri is that release's zip.
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    (button,) = re.findall(
        r"\(https://portal\.azure\.com/#create/Microsoft\.Template/uri/([^)]+)\)", deploy
    )
    assert unquote(button) == "https://github.com/OWNER/REPO/releases/latest/download/main.json"


def test_the_repository_placeholder_is_in_one_place():
    places = [
        path.relative_to(ROOT).as_posix()
        for path in [
            *PAGES,
            ROOT / "CHANGELOG.md",
            ROOT / "infra" / "main.json",
            *WORKFLOWS.glob("*"),
        ]
        if "OWNER%2FREPO" in path.read_text() or "OWNER/REPO" in path.read_text()
    ]
    assert places == ["docs/deploy.md"]
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    assert deploy.count("OWNER%2FREPO") == 2  # the link, and the sentence that says to replace it


def test_the_version_is_one_everywhere():
    import retier

    text = (ROOT / "pyproject.toml").read_text()
    (pyproject,) = re.findall(r'^version = "([^"]+)"', text, re.MULTILINE)
    changelog = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    cli = subprocess.run(
        [sys.executable, "-m", "retier", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert (retier.__version__, changelog[0], cli) == (pyproject, pyproject, f"retier {pyproject}")


if __name__ == "__main__":
    print("\n".join(documented_terms(sys.stdin.read())))
