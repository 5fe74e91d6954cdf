"""The `retier` command: classify and handle-event contracts, exit codes 0 / 1 / 2."""

from __future__ import annotations

import argparse
import json

import pytest

T = "20240101T020304Z"
VOLS = [f"duplicity-full.{T}.vol{i}.difftar.gpg" for i in (1, 2)]
MANIFEST = f"duplicity-full.{T}.manifest.gpg"


def lines(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_classify_prints_one_json_object_per_name(run_retier):
    proc = run_retier(
        "classify",
        VOLS[0],
        MANIFEST,
        "duplicity-new-signatures.20240101T020304Z.to.20240102T020304Z.sigtar.gz",
        "duplicity-inc.20240101T020304Z.to.20240102T020304Z.jsonstat",
        "photo.jpg",
    )
    assert proc.returncode == 0
    got = [(o["name"], o["kind"], o["type"]) for o in lines(proc.stdout)]
    assert got == [
        (VOLS[0], "volume", "full"),
        (MANIFEST, "manifest", "full"),
        (
            "duplicity-new-signatures.20240101T020304Z.to.20240102T020304Z.sigtar.gz",
            "signatures",
            "inc",
        ),
        ("duplicity-inc.20240101T020304Z.to.20240102T020304Z.jsonstat", "jsonstat", "inc"),
        ("photo.jpg", "unknown", None),
    ]


def test_no_command_or_bad_arguments_exit_2(run_retier):
    assert run_retier().returncode == 2
    assert run_retier("classify").returncode == 2
    assert run_retier("frobnicate").returncode == 2


def test_every_command_has_an_example_in_its_help():
    from retier.cli import build_parser

    # The parsers `retier COMMAND --help` prints, without a process per command.
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert {"classify", "handle-event", "sweep", "restore-plan", "doctor", "bridge"} <= set(
        sub.choices
    )
    for command, parser in sub.choices.items():
        assert "example" in parser.format_help(), command


@pytest.mark.parametrize("payload", ["{not json", "42", '"a string"'])
def test_handle_event_rejects_input_that_is_not_events_with_exit_2(
    payload, azurite_connection_string, run_retier
):
    proc = run_retier(
        "handle-event", "-", stdin=payload, env={"RETIER_STORAGE": azurite_connection_string}
    )
    assert proc.returncode == 2 and "retier:" in proc.stderr


def test_handle_event_without_a_connection_is_bad_usage(run_retier):
    proc = run_retier("handle-event", "-", stdin="[]")
    assert proc.returncode == 2 and "RETIER_STORAGE" in proc.stderr


def test_handle_event_bad_setting_is_bad_usage_and_names_it(azurite_connection_string, run_retier):
    proc = run_retier(
        "handle-event",
        "-",
        stdin="[]",
        env={"RETIER_STORAGE": azurite_connection_string, "RETIER_METADATA_TIER": "Archive"},
    )
    assert proc.returncode == 2 and "RETIER_METADATA_TIER" in proc.stderr
    assert "AccountKey" not in proc.stderr


@pytest.mark.azurite
def test_emit_then_handle_events_retiers_the_set_and_a_replay_changes_nothing(
    blob_service, container, azurite_connection_string, run_retier
):
    client = blob_service.get_container_client(container)
    for name in [*VOLS, MANIFEST, "notes.txt"]:
        client.upload_blob(name, b"data")
    # duplicity's own variable is enough for the CLI
    env = {"AZURE_CONNECTION_STRING": azurite_connection_string, "RETIER_VOLUME_TIER": "Archive"}
    emitted = run_retier("emit-events", "--container", container, env=env)
    assert emitted.returncode == 0
    events = json.loads(emitted.stdout)
    assert len(events) == 4 and {e["eventType"] for e in events} == {
        "Microsoft.Storage.BlobCreated"
    }

    first = run_retier("handle-event", "-", stdin=emitted.stdout, env=env)
    assert first.returncode == 0, first.stderr
    outcomes = lines(first.stdout)
    assert len(outcomes) == 4
    # in upload order; the volumes' own events change nothing, the manifest's moves the set
    assert [(o["blob"], o["status"], len(o["moved"])) for o in outcomes] == [
        (VOLS[0], "ignored", 0),
        (VOLS[1], "ignored", 0),
        (MANIFEST, "handled", 2),
        ("notes.txt", "ignored", 0),
    ]
    assert {b.name: b.blob_tier for b in client.list_blobs()} == {
        VOLS[0]: "Archive",
        VOLS[1]: "Archive",
        MANIFEST: "Hot",
        "notes.txt": "Hot",
    }

    replay = run_retier("handle-event", "-", stdin=emitted.stdout, env=env)
    assert replay.returncode == 0
    assert sum(len(o["moved"]) for o in lines(replay.stdout)) == 0


@pytest.mark.azurite
def test_handle_event_exit_1_when_storage_is_unreachable(
    tmp_path, azurite_connection_string, run_retier
):
    event = {
        "id": "1",
        "topic": "/subscriptions/x/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "subject": f"/blobServices/default/containers/backups/blobs/{MANIFEST}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2024-01-01T02:03:05Z",
        "dataVersion": "",
        "data": {
            "api": "PutBlob",
            "url": f"http://127.0.0.1:9/devstoreaccount1/backups/{MANIFEST}",
            "contentLength": 1,
        },
    }
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    unreachable = (
        azurite_connection_string.split("BlobEndpoint=")[0]
        + "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    proc = run_retier("handle-event", str(path), env={"RETIER_STORAGE": unreachable})
    assert proc.returncode == 1
    assert lines(proc.stdout)[0]["status"] == "retry"


@pytest.mark.azurite
def test_handle_event_exit_2_for_a_malformed_event_in_the_batch(
    azurite_connection_string, run_retier
):
    proc = run_retier(
        "handle-event",
        "-",
        stdin=json.dumps([{"id": "x", "subject": "/nope", "data": {}}]),
        env={"RETIER_STORAGE": azurite_connection_string},
    )
    assert proc.returncode == 2
    assert lines(proc.stdout)[0]["status"] == "invalid"


# What `retier` runs in a fresh interpreter, then reports whether the storage SDK was loaded.
_COLD = """
import sys
from retier.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("storage SDK loaded" if "azure.storage.blob" in sys.modules else "light", file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["classify", VOLS[0]], ["--help"], ["sweep", "--help"]])
def test_classify_and_help_do_not_load_the_storage_sdk(argv):
    """Issue 18's debt: exception classes live in retier.errors, so a name check stays light."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _COLD, *argv], capture_output=True, text=True, check=False
    )
    assert proc.stderr.strip().splitlines()[-1] == "light", proc.stderr


# -- the CLI's conventions (issue 15 item 5) ---------------------------------------------------------
@pytest.mark.parametrize(
    "argv, verbose, quiet",
    [
        (["sweep", "--container", "backups"], False, False),
        (["-v", "sweep", "--container", "backups"], True, False),
        (["sweep", "--container", "backups", "-v"], True, False),
        (["sweep", "--verbose", "--container", "backups"], True, False),
        (["-q", "cost", "--container", "backups"], False, True),
        (["cost", "--container", "backups", "--quiet"], False, True),
        (["classify", "x", "-q"], False, True),
    ],
)
def test_verbose_and_quiet_are_accepted_before_or_after_the_command(argv, verbose, quiet):
    from retier.cli import build_parser

    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


def test_every_command_takes_the_common_options_and_storage_commands_the_connection():
    from retier.cli import NO_STORAGE, build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for name, parser in sub.choices.items():
        options = {o for a in parser._actions for o in a.option_strings}
        assert {"-v", "--verbose", "-q", "--quiet"} <= options, name
        assert ("--connection-string" in options) == (name not in NO_STORAGE), name
        assert ("--account-url" in options) == (name not in NO_STORAGE), name


@pytest.mark.azurite
def test_the_connection_can_come_from_a_flag_or_standard_input(
    container, azurite_connection_string, run_retier
):
    typed = run_retier(
        "sweep",
        "--container",
        container,
        "--dry-run",
        "--connection-string",
        azurite_connection_string,
    )
    assert typed.returncode == 0, typed.stderr
    assert typed.stdout.startswith(f"{container}: 0 blobs listed")
    assert "stays in your shell history" in typed.stderr  # decided: accepted, with a warning

    piped = run_retier(
        "sweep",
        "--container",
        container,
        "--dry-run",
        "--connection-string",
        "-",
        stdin=azurite_connection_string + "\n",
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith(f"{container}: 0 blobs listed")
    assert "shell history" not in piped.stderr

    both = run_retier(
        "sweep",
        "--container",
        container,
        "--connection-string",
        "-",
        "--account-url",
        "https://acct.blob.core.windows.net",
    )
    assert both.returncode == 2 and "not both" in both.stderr


def test_help_topics_and_command_help(run_retier):
    index = run_retier("help")
    assert index.returncode == 0
    for topic in ("settings", "exit-codes", "containers", "credentials", "completion"):
        assert f"  {topic} " in index.stdout
    codes = run_retier("help", "exit-codes")
    assert codes.returncode == 0 and "2  bad usage or bad input" in codes.stdout
    sweep = run_retier("help", "sweep")
    assert sweep.returncode == 0 and "usage: retier sweep" in sweep.stdout
    unknown = run_retier("help", "frobnicate")
    assert unknown.returncode == 2 and "no help topic 'frobnicate'" in unknown.stderr


def _complete(script: str, *words: str) -> list[str]:
    """What bash offers after `words` (the last one being typed), with the generated script."""
    import subprocess

    array = " ".join(f"'{w}'" for w in ("retier", *words))
    probe = (
        f"{script}\nCOMP_WORDS=({array}); COMP_CWORD={len(words)}; _retier; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_bash_completion_offers_commands_options_and_choices(run_retier):
    proc = run_retier("completion", "bash")
    assert proc.returncode == 0
    script = proc.stdout
    assert _complete(script, "sw") == ["sweep"]
    assert "restore-plan" in _complete(script, "re")
    assert _complete(script, "rehydrate", "--priority", "") == ["Standard", "High"]
    assert _complete(script, "-v", "sweep", "--dr") == ["--dry-run"]
    assert _complete(script, "--connection-string", "x", "sweep", "--y") == ["--yes"]
    assert _complete(script, "completion", "z") == ["zsh"]
    assert "--connection-string" in _complete(script, "cost", "--con")


def test_zsh_completion_is_the_same_function_through_bashcompinit(run_retier):
    bash = run_retier("completion", "bash").stdout
    zsh = run_retier("completion", "zsh")
    assert zsh.returncode == 0
    assert zsh.stdout.startswith("#compdef retier\n")
    assert "autoload -U +X bashcompinit && bashcompinit\n" in zsh.stdout
    assert zsh.stdout.endswith(bash)
