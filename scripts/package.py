"""Build dist/retier-function.zip: the Function app exactly as Azure Functions (Flex Consumption,
Linux x86-64, Python 3.11) runs it, with its dependencies inside, and nothing else.

Contents: function_app.py, host.json, requirements.txt, retier/ (sources only) and the wheels
pinned in requirements.lock installed into .python_packages/lib/site-packages for manylinux x86-64
CPython 3.11 (the layout the Python worker adds to sys.path). requirements.lock is requirements.txt
resolved for that platform with the sha256 of every file (`scripts/lock` updates it), and pip
installs it with --require-hashes: every dependency and its exact bytes are in the repository, so
the same commit builds the same zip. Entries are sorted and carry one fixed timestamp and fixed
permissions. The installed dependencies are cached in .tools/package-cache, keyed by the lock and
the target, so a rebuild only zips.

Usage: scripts/package [--out dist/retier-function.zip] [--refresh] [--package-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_FILES = ("function_app.py", "host.json", "requirements.txt")
APP_PACKAGE = "retier"
SITE_PACKAGES = ".python_packages/lib/site-packages"
# The platform the function runs on (infra/main.json: functionAppConfig.runtime).
PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.11"
IMPLEMENTATION = "cp"
LOCK_FILE = "requirements.lock"
DEFAULT_OUT = ROOT / "dist" / "retier-function.zip"
DEFAULT_CACHE = ROOT / ".tools" / "package-cache"
# 1980-01-01, zip's earliest date: the same for every build.
FIXED_DATE = (1980, 1, 1, 0, 0, 0)


class PackageError(RuntimeError):
    """The package cannot be built (pip failed, a file is missing)."""


def app_sources(root: Path = ROOT) -> list[tuple[str, Path]]:
    """(name in the zip, file) for the app's own files: no __pycache__, no compiled files."""
    entries = []
    for name in APP_FILES:
        path = root / name
        if not path.is_file():
            raise PackageError(f"missing {path}")
        entries.append((name, path))
    for path in sorted((root / APP_PACKAGE).rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or "__pycache__" in relative.parts or path.suffix == ".pyc":
            continue
        entries.append((relative.as_posix(), path))
    return entries


def dependencies_key(lock: Path) -> str:
    text = lock.read_text()
    target = f"{PLATFORM}|{IMPLEMENTATION}|{PYTHON_VERSION}"
    return hashlib.sha256(f"{target}\n{text}".encode()).hexdigest()[:16]


def install_dependencies(lock: Path, cache: Path = DEFAULT_CACHE, *, refresh: bool = False) -> Path:
    """The site-packages directory with the lock's pins installed for the target platform."""
    if not lock.is_file():
        raise PackageError(f"missing {lock} (scripts/lock writes it from requirements.txt)")
    done = cache / dependencies_key(lock)
    if done.is_dir() and not refresh:
        return done
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="building-") as tmp:
        target = Path(tmp) / "site-packages"
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",  # .pyc files would be the build machine's, not the platform's
            "--target",
            str(target),
            "--platform",
            PLATFORM,
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            IMPLEMENTATION,
            "--only-binary=:all:",
            # Every file's sha256 is in the lock, and the lock pins every dependency: nothing is
            # resolved here, and a file whose bytes differ from the lock's is refused.
            "--require-hashes",
            "--no-deps",
            "-r",
            str(lock),
        ]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PackageError(f"pip could not install {lock.name}:\n{proc.stderr[-3000:]}")
        # Console scripts point at the build machine's interpreter; the worker never runs them.
        shutil.rmtree(target / "bin", ignore_errors=True)
        for cache_dir in target.rglob("__pycache__"):
            shutil.rmtree(cache_dir)
        if done.exists():
            shutil.rmtree(done)
        target.rename(done)
    return done


def dependency_entries(site_packages: Path) -> list[tuple[str, Path]]:
    return [
        (f"{SITE_PACKAGES}/{path.relative_to(site_packages).as_posix()}", path)
        for path in sorted(site_packages.rglob("*"))
        if path.is_file()
    ]


def write_zip(entries: list[tuple[str, Path]], out: Path) -> None:
    """Sorted entries, one timestamp, fixed modes: reproducible bytes for reproducible inputs."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    # Each entry's ZipInfo says how it is compressed (ZipFile's own compression settings apply
    # only to entries written by name).
    with zipfile.ZipFile(partial, "w") as zf:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100644) << 16  # a regular file, rw-r--r--
            info.create_system = 3  # Unix, so the modes above are read
            zf.writestr(info, path.read_bytes())
    partial.replace(out)


def is_up_to_date(out: Path, root: Path = ROOT) -> bool:
    """True when `out` exists and is newer than every file that goes into it from the checkout."""
    if not out.is_file():
        return False
    inputs = [path for _, path in app_sources(root)] + [root / LOCK_FILE]
    newest = max(path.stat().st_mtime for path in inputs)
    return out.stat().st_mtime > newest


def release_template(template_text: str, package_url: str) -> str:
    """infra/main.json as a release publishes it: the one change is packageUri's default, which
    becomes that release's own package, so the 'Deploy to Azure' button deploys the package built
    from the same commit as the template. The checkout's default stays empty (scripts/deploy
    uploads its own build)."""
    template = json.loads(template_text)
    parameter = template["parameters"]["packageUri"]
    if parameter.get("defaultValue") != "":
        raise PackageError("infra/main.json: packageUri's default is not empty; nothing to fill in")
    if not package_url.startswith("https://"):
        raise PackageError(f"the package URL must be https: {package_url}")
    parameter["defaultValue"] = package_url
    return json.dumps(template, indent=2, ensure_ascii=False) + "\n"


def build(
    out: Path = DEFAULT_OUT,
    *,
    root: Path = ROOT,
    cache: Path = DEFAULT_CACHE,
    refresh: bool = False,
) -> Path:
    """Build the package at `out` and return it."""
    site_packages = install_dependencies(root / LOCK_FILE, cache, refresh=refresh)
    write_zip(app_sources(root) + dependency_entries(site_packages), out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/package",
        description=__doc__.split("\n\n")[0],
        epilog="example: scripts/package && unzip -l dist/retier-function.zip | tail -1",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="zip to write")
    parser.add_argument(
        "--refresh", action="store_true", help="reinstall the dependencies instead of the cache"
    )
    parser.add_argument(
        "--package-url",
        metavar="URL",
        help="also write main.json beside the zip: infra/main.json with packageUri defaulting to "
        "URL, where the release publishes the zip (.github/workflows/release.yml)",
    )
    parser.add_argument(
        "--if-stale",
        action="store_true",
        help="keep an existing package newer than every app file and requirements.txt",
    )
    args = parser.parse_args(argv)
    if args.if_stale and is_up_to_date(args.out):
        print(f"{args.out} is up to date")
        return 0
    try:
        out = build(args.out, refresh=args.refresh)
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(out) as zf:
        count = len(zf.namelist())
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"{out} ({out.stat().st_size:,} bytes, {count} files, sha256 {digest})")
    if args.package_url:
        template = out.parent / "main.json"
        try:
            text = release_template((ROOT / "infra" / "main.json").read_text(), args.package_url)
        except PackageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        template.write_text(text)
        print(f"{template} (packageUri: {args.package_url})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
