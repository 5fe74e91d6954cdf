"""scripts/package's zip, unpacked and run the way the Functions Python worker runs it: in an
interpreter that sees only the zip (its own .python_packages, not the dev venv), indexing the
functions and handling one manifest event against Azurite. The zip holds exactly the hash-pinned
lock (requirements.lock), and the same commit builds the same bytes.

RETIER_PACKAGE=dist/retier-function.zip checks that zip (as the release workflow does with the
zip it publishes) instead of one built here; it must still equal a fresh build byte for byte.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
SITE_PACKAGES = ".python_packages/lib/site-packages"
T = "20240101T020304Z"
VOLUMES = [f"duplicity-full.{T}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
SIGNATURES = f"duplicity-full-signatures.{T}.sigtar.gpg"
MANIFEST = f"duplicity-full.{T}.manifest.gpg"


def _package_module():
    spec = importlib.util.spec_from_file_location("retier_package", ROOT / "scripts" / "package.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


package = _package_module()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    given = os.environ.get("RETIER_PACKAGE")
    if given:  # the release workflow's zip, checked before it is published
        assert Path(given).is_file(), f"RETIER_PACKAGE={given}: no such file"
        return Path(given)
    # The dependency install is cached in .tools/package-cache (keyed by the lock), so only the
    # first run downloads wheels; every run really zips.
    return package.build(tmp_path_factory.mktemp("dist") / "retier-function.zip")


@pytest.fixture(scope="module")
def unpacked(built, tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("wwwroot")
    with zipfile.ZipFile(built) as zf:
        zf.extractall(where)
    return where


def _names(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as zf:
        return zf.namelist()


def _tracked(path: str) -> set[str]:
    proc = subprocess.run(
        ["git", "ls-files", path], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(proc.stdout.split())


def test_package_holds_the_app_and_its_runtime_dependencies_and_nothing_else(built):
    names = _names(built)
    top = {n.split("/")[0] for n in names}
    assert top == {"function_app.py", "host.json", "requirements.txt", "retier", ".python_packages"}
    own = {n for n in names if not n.startswith(".python_packages/")}
    tracked_sources = {p for p in _tracked("retier") if p.endswith(".py")}
    assert own == {"function_app.py", "host.json", "requirements.txt"} | tracked_sources
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert all(n.startswith(SITE_PACKAGES + "/") for n in names if n.startswith(".python"))
    installed = {n[len(SITE_PACKAGES) + 1 :].split("/")[0] for n in names if n.startswith(".py")}
    for needed in ("azure_functions-", "azure_storage_blob-", "azure_identity-", "azure_core-"):
        assert any(d.startswith(needed) and d.endswith(".dist-info") for d in installed), needed
    # The CLI's and the tests' dependencies stay out of the function.
    for absent in ("azure_eventgrid-", "duplicity-", "pytest-", "hypothesis-", "ruff-"):
        assert not any(d.startswith(absent) for d in installed), absent
    assert "bin" not in installed  # console scripts for the build machine's interpreter


def test_compiled_dependencies_are_linux_x86_64_cpython_3_11(built):
    extensions = [n for n in _names(built) if n.endswith(".so")]
    assert extensions, "cffi and cryptography ship compiled code"
    for name in extensions:
        assert "cpython-311-x86_64-linux-gnu" in name or name.endswith(".abi3.so"), name
    with zipfile.ZipFile(built) as zf:
        wheels = [n for n in zf.namelist() if n.endswith(".dist-info/WHEEL")]
        tags = "\n".join(zf.read(n).decode() for n in wheels)
    assert "Tag: cp311-cp311-manylinux" in tags
    assert "win" not in tags and "macosx" not in tags


def _lock() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: canonical name -> (version, sha256 hashes)."""
    pins: dict[str, tuple[str, list[str]]] = {}
    text = (ROOT / "requirements.lock").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split(" --")
        name, version = spec.strip().split("==")
        hashes = [o.strip().removeprefix("hash=sha256:") for o in options if o.startswith("hash=")]
        pins[canonicalize_name(name)] = (version, hashes)
    return pins


def test_the_lock_pins_every_requirement_and_every_file_by_hash():
    lock = _lock()
    assert (
        "by the following command:\n#\n#    scripts/lock\n"
        in (ROOT / "requirements.lock").read_text()
    )
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            assert name in lock, f"{req.name} is in requirements.txt but not in the lock"
            assert req.specifier.contains(lock[name][0]), (line, lock[name][0])
    for name, (version, hashes) in lock.items():
        assert hashes and all(len(h) == 64 for h in hashes), name
    # What the function needs underneath (cryptography, cffi, ...) is pinned too.
    assert {"azure-core", "cryptography", "cffi"} <= set(lock)


def test_the_package_holds_exactly_what_the_lock_pins(built):
    installed = {}
    for name in _names(built):
        parts = name.split("/")
        if name.startswith(SITE_PACKAGES + "/") and parts[3].endswith(".dist-info"):
            dist, version = parts[3].removesuffix(".dist-info").rsplit("-", 1)
            installed[canonicalize_name(dist)] = version
    assert installed == {name: version for name, (version, _) in _lock().items()}


def test_a_file_whose_bytes_differ_from_the_lock_is_refused(tmp_path):
    version, _ = _lock()["azure-functions"]
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"azure-functions=={version} --hash=sha256:{'0' * 64}\n")
    with pytest.raises(package.PackageError, match="(?i)hash"):
        package.install_dependencies(lock, tmp_path / "cache")
    assert not (tmp_path / "cache" / package.dependencies_key(lock)).exists()


def test_the_released_template_differs_only_in_its_package_default():
    source = (ROOT / "infra" / "main.json").read_text()
    url = "https://github.com/OWNER/REPO/releases/download/v9.9.9/retier-function.zip"
    released = json.loads(package.release_template(source, url))
    original = json.loads(source)
    assert original["parameters"]["packageUri"]["defaultValue"] == ""  # scripts/deploy's case
    assert released["parameters"]["packageUri"]["defaultValue"] == url
    released["parameters"]["packageUri"]["defaultValue"] = ""
    assert released == original
    with pytest.raises(package.PackageError):
        package.release_template(source, "http://insecure.example/x.zip")


def test_the_same_sources_give_the_same_bytes(built, tmp_path):
    # Dependencies installed afresh from the lock (not the shared cache), as on another machine.
    again = package.build(tmp_path / "again.zip", cache=tmp_path / "cache")
    assert (
        hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(built.read_bytes()).digest()
    )
    with zipfile.ZipFile(built) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def _funcignore() -> list[str]:
    lines = (ROOT / ".funcignore").read_text().splitlines()
    return [ln.strip().rstrip("/") for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in _funcignore())


def test_funcignore_leaves_out_exactly_what_the_package_leaves_out(built):
    packaged = {n.split("/")[0] for n in _names(built)} - {".python_packages"}
    checkout = {p.split("/")[0] for p in _tracked(".")} | {".venv", ".tools", "dist"}
    for name in sorted(checkout):
        assert (name in packaged) != _ignored(name), name
    assert not any(_ignored(name) for name in packaged)


# -- the unpacked package, run as the platform runs it -------------------------------------

CHILD = r"""
import datetime, json, sys, sysconfig

app = sys.argv[1]
report = {"sys_path": sys.path}
report["importable"] = []
for extra in ("duplicity", "azure.eventgrid", "pytest", "hypothesis"):
    try:
        __import__(extra)
        report["importable"].append(extra)
    except ImportError:
        pass
for mod in [m for m in sys.modules if m.startswith(("retier", "azure", "duplicity"))]:
    del sys.modules[mod]  # what the probe above imported must not count as the app's

import azure.functions as func
import function_app

functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
report["bindings"] = {
    name: [
        {k: str(v) for k, v in b.get_dict_repr().items()} for b in f.get_bindings()
    ]
    for name, f in functions.items()
}
container, blob_url = sys.argv[2], sys.argv[3]
event = func.EventGridEvent(
    id="package-test-1",
    data={"api": "PutBlob", "contentLength": 4, "blobType": "BlockBlob", "url": blob_url},
    topic="/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
    subject=f"/blobServices/default/containers/{container}/blobs/{blob_url.rsplit('/', 1)[1]}",
    event_type="Microsoft.Storage.BlobCreated",
    event_time=datetime.datetime(2024, 1, 1, 2, 3, 5, tzinfo=datetime.timezone.utc),
    data_version="",
)
report["returned"] = functions["retier_blob_created"].get_user_function()(event)
stdlib = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
report["loaded_from_elsewhere"] = sorted(
    m.__name__ for m in list(sys.modules.values())
    if getattr(m, "__file__", None)
    and m.__name__ != "__main__"
    and not m.__file__.startswith(app)
    and not m.__file__.startswith(stdlib)
)
report["files"] = {
    "retier": sys.modules["retier"].__file__,
    "azure.functions": func.__file__,
    "azure.storage.blob": sys.modules["azure.storage.blob"].__file__,
}
print(json.dumps(report))
"""


def _python_311() -> str:
    base = getattr(sys, "_base_executable", sys.executable)
    if sys.version_info[:2] != (3, 11):
        pytest.fail(
            "the package targets CPython 3.11 (Flex Consumption runtime 3.11): run the tests "
            f"with Python 3.11, not {sys.version.split()[0]}",
            pytrace=False,
        )
    return base


@pytest.mark.azurite
def test_unpacked_package_indexes_both_functions_and_handles_a_manifest_event_alone(
    unpacked, blob_service, container, azurite_connection_string, tmp_path
):
    client = blob_service.get_container_client(container)
    for name in [*VOLUMES, SIGNATURES, MANIFEST]:
        client.upload_blob(name, b"data")
    blob_url = f"{blob_service.url.rstrip('/')}/{container}/{MANIFEST}"
    script = tmp_path / "run_as_worker.py"
    script.write_text(CHILD)
    site_packages = unpacked / SITE_PACKAGES
    # Only what the platform gives the worker: the app directory and its .python_packages.
    # -S: no site module, so neither this venv's nor the interpreter's site-packages.
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{unpacked}{os.pathsep}{site_packages}",
        "PYTHONNOUSERSITE": "1",
        "RETIER_STORAGE": azurite_connection_string,
        "RETIER_VOLUME_TIER": "Archive",
    }
    proc = subprocess.run(
        [_python_311(), "-S", str(script), str(unpacked), container, blob_url],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    # It saw only the zip: no dev venv, no site-packages but the zip's own.
    assert not [p for p in report["sys_path"] if ".venv" in p]
    assert [p for p in report["sys_path"] if "site-packages" in p] == [str(site_packages)]
    assert report["importable"] == []  # not duplicity, not the CLI's azure-eventgrid, not pytest
    assert report["loaded_from_elsewhere"] == []
    for module, path in report["files"].items():
        assert path.startswith(str(unpacked)), (module, path)

    # Indexed as the worker indexes it.
    bindings = report["bindings"]
    assert sorted(bindings) == ["retier_blob_created", "retier_sweep"]
    (grid,) = bindings["retier_blob_created"]
    assert (grid["type"], grid["name"]) == ("eventGridTrigger", "event")
    (timer,) = bindings["retier_sweep"]
    assert (timer["type"], timer["schedule"]) == ("timerTrigger", "0 30 3 * * *")

    # And it did the job: the set's volumes archived, metadata left where it was.
    assert report["returned"] is None
    tiers = {b.name: b.blob_tier for b in client.list_blobs()}
    assert tiers == {**{v: "Archive" for v in VOLUMES}, SIGNATURES: "Hot", MANIFEST: "Hot"}
