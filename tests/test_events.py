"""Tests for retier.events: BlobCreated events in both schemas, validated down to one blob."""

from __future__ import annotations

import copy
import json
import re
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retier.events import (
    BLOB_CREATED,
    BlobCreated,
    EventError,
    IgnoredEvent,
    InvalidEvent,
    account_from_topic,
    parse_event,
    parse_events,
)

TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/backups"
    "/providers/Microsoft.Storage/storageAccounts/mybackupacct"
)
VOLUME = "host1/duplicity-full.20240101T020304Z.vol1.difftar.gpg"

# The shape Azure documents for BlobCreated ("Azure Blob Storage as an Event Grid
# source"). The documented sample names an impossible account ("my-storage-account")
# and a subject container that differs from its url; this fixture is consistent.
EVENTGRID_EVENT = {
    "topic": TOPIC,
    "subject": f"/blobServices/default/containers/duplicity/blobs/{VOLUME}",
    "eventType": "Microsoft.Storage.BlobCreated",
    "eventTime": "2024-01-01T02:10:00.9584103Z",
    "id": "831e1650-001e-001b-66ab-eeb76e069631",
    "data": {
        "api": "PutBlockList",
        "clientRequestId": "6d79dbfb-0e37-4fc4-981f-442c9ca65760",
        "requestId": "831e1650-001e-001b-66ab-eeb76e000000",
        "eTag": '"0x8D4BCC2E4835CD0"',
        "contentType": "application/octet-stream",
        "contentLength": 209715200,
        "blobType": "BlockBlob",
        "url": f"https://mybackupacct.blob.core.windows.net/duplicity/{VOLUME}",
        "sequencer": "00000000000004420000000000028963",
        "storageDiagnostics": {"batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"},
    },
    "dataVersion": "",
    "metadataVersion": "1",
}

CLOUDEVENTS_EVENT = {
    "source": TOPIC,
    "subject": EVENTGRID_EVENT["subject"],
    "type": "Microsoft.Storage.BlobCreated",
    "time": EVENTGRID_EVENT["eventTime"],
    "id": EVENTGRID_EVENT["id"],
    "data": copy.deepcopy(EVENTGRID_EVENT["data"]),
    "specversion": "1.0",
}

MANIFEST = "duplicity-full.20240101T020304Z.manifest.gpg"
AZURITE_EVENT = {
    "topic": (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local"
        "/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
    ),
    "subject": f"/blobServices/default/containers/duplicity/blobs/{MANIFEST}",
    "eventType": "Microsoft.Storage.BlobCreated",
    "eventTime": "2024-01-01T02:11:00Z",
    "id": "f1c2a3d4-0000-0000-0000-000000000001",
    "data": {
        "api": "PutBlob",
        "eTag": "0x8DC0A1B2C3D4E5F",
        "contentType": "application/octet-stream",
        "contentLength": 1843,
        "blobType": "BlockBlob",
        "url": f"http://127.0.0.1:10000/devstoreaccount1/duplicity/{MANIFEST}",
        "sequencer": "0000000000000000000000000000000100000000000000aa",
    },
    "dataVersion": "",
    "metadataVersion": "1",
}


def event_with(base: dict, *, drop: tuple[str, ...] = (), data: dict | None = None, **fields):
    """A deep copy of ``base`` with top-level fields set or dropped and data fields merged."""
    event = copy.deepcopy(base)
    for key in drop:
        event.pop(key, None)
    event.update(fields)
    if data is not None:
        event["data"].update(data)
    return event


HOST = "https://mybackupacct.blob.core.windows.net"
URL = f"{HOST}/duplicity/"


def grid(**fields):
    """The Event Grid fixture with top-level fields replaced."""
    return event_with(EVENTGRID_EVENT, **fields)


def grid_data(**data):
    return event_with(EVENTGRID_EVENT, data=data)


def grid_url(url: str, **fields):
    return event_with(EVENTGRID_EVENT, data={"url": url}, **fields)


def blob_event(url: str, subject_name: str, container: str = "duplicity", **fields) -> dict:
    """The Event Grid fixture moved to another url/subject, without a topic to cross-check."""
    return event_with(
        EVENTGRID_EVENT,
        drop=("topic",),
        subject=f"/blobServices/default/containers/{container}/blobs/{subject_name}",
        data={"url": url},
        **fields,
    )


# --- the happy paths -------------------------------------------------------------------


def test_eventgrid_blob_created_yields_the_blob_and_its_facts():
    created = parse_event(EVENTGRID_EVENT)

    assert created == BlobCreated(
        id="831e1650-001e-001b-66ab-eeb76e069631",
        schema="eventgrid",
        event_time="2024-01-01T02:10:00.9584103Z",
        account="mybackupacct",
        container="duplicity",
        blob=VOLUME,
        url=f"https://mybackupacct.blob.core.windows.net/duplicity/{VOLUME}",
        api="PutBlockList",
        content_length=209715200,
        blob_type="BlockBlob",
        access_tier=None,
        e_tag='"0x8D4BCC2E4835CD0"',
        sequencer="00000000000004420000000000028963",
    )


def test_cloudevents_and_eventgrid_schemas_give_the_same_blob():
    from_grid = parse_event(EVENTGRID_EVENT).to_dict()
    from_cloud = parse_event(CLOUDEVENTS_EVENT).to_dict()

    assert from_grid.pop("schema") == "eventgrid"
    assert from_cloud.pop("schema") == "cloudevents"
    assert from_cloud == from_grid


def test_azurite_path_style_url_takes_the_account_from_the_first_path_segment():
    created = parse_event(AZURITE_EVENT, account="devstoreaccount1", containers=["duplicity"])

    assert (created.account, created.container, created.blob) == (
        "devstoreaccount1",
        "duplicity",
        MANIFEST,
    )
    assert created.api == "PutBlob"


def test_access_tier_is_reported_when_the_event_carries_it():
    created = parse_event(event_with(EVENTGRID_EVENT, data={"accessTier": "Hot"}))

    assert created.access_tier == "Hot"


def test_to_dict_is_json_serialisable_and_complete():
    created = parse_event(EVENTGRID_EVENT)

    as_json = json.loads(json.dumps(created.to_dict()))

    assert BlobCreated(**as_json) == created


def test_the_type_constant_matches_the_azure_sdk_and_an_sdk_built_event_parses():
    from azure.eventgrid import EventGridEvent, SystemEventNames

    assert SystemEventNames.StorageBlobCreatedEventName == BLOB_CREATED
    sdk_event = EventGridEvent(
        subject=EVENTGRID_EVENT["subject"],
        event_type=SystemEventNames.StorageBlobCreatedEventName,
        data=copy.deepcopy(EVENTGRID_EVENT["data"]),
        data_version="1",
        topic=TOPIC,
    )

    created = parse_event(sdk_event.serialize())

    assert created.blob == VOLUME
    assert created.id == str(sdk_event.id)


# --- where the blob is: url shapes -----------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "http://127.0.0.1:10000",
        "http://localhost:10000",
        "http://[::1]:10000",
        "http://10.1.2.3:10000",
        "http://azurite:10000",  # a docker-compose service name: single label, so path-style
        "http://localhost",
    ],
)
def test_emulator_hosts_are_path_style(host):
    event = blob_event(f"{host}/devstoreaccount1/duplicity/{MANIFEST}", MANIFEST)

    created = parse_event(event)

    assert (created.account, created.container, created.blob) == (
        "devstoreaccount1",
        "duplicity",
        MANIFEST,
    )


@pytest.mark.parametrize(
    "host",
    [
        "https://mybackupacct.blob.core.windows.net",
        "https://mybackupacct.blob.core.chinacloudapi.cn",
        "https://mybackupacct.blob.core.usgovcloudapi.net",
        "https://mybackupacct.dfs.core.windows.net",  # hierarchical namespace accounts
        "https://mybackupacct.z12.blob.storage.azure.net",  # Azure DNS zone endpoints
        "https://MyBackupAcct.Blob.Core.Windows.Net",
        "https://mybackupacct.blob.core.windows.net:443",
        "http://mybackupacct.blob.localhost:10000",  # Azurite's production-style url
    ],
)
def test_storage_endpoints_are_host_style_in_every_cloud(host):
    created = parse_event(blob_event(f"{host}/duplicity/{MANIFEST}", MANIFEST))

    assert (created.account, created.container, created.blob) == (
        "mybackupacct",
        "duplicity",
        MANIFEST,
    )


def test_path_style_account_is_lower_cased():
    event = blob_event(f"http://127.0.0.1:10000/DevStoreAccount1/duplicity/{MANIFEST}", MANIFEST)

    assert parse_event(event).account == "devstoreaccount1"


@pytest.mark.parametrize(
    "raw_name, decoded",
    [
        ("my%20backups/vol%201.difftar.gpg", "my backups/vol 1.difftar.gpg"),
        ("a%2Bb.gpg", "a+b.gpg"),
        ("a+b.gpg", "a+b.gpg"),  # "+" is a plus in a path, never a space
        ("%C3%A9t%C3%A9/%E2%9C%93.gpg", "été/✓.gpg"),
        ("tasklog_14%F0%9F%92%8E.log", "tasklog_14💎.log"),
        ("dir%2Fsub%2Ffile", "dir/sub/file"),
        ("dir/sub%2Ffile", "dir/sub/file"),
        ("100%25.gpg", "100%.gpg"),
        ("a//b", "a//b"),
        ("%24logs-like.gpg", "$logs-like.gpg"),
    ],
)
def test_blob_names_are_percent_decoded_once_keeping_slashes_and_pluses(raw_name, decoded):
    url = f"https://mybackupacct.blob.core.windows.net/duplicity/{raw_name}"

    created = parse_event(blob_event(url, decoded))

    assert created.blob == decoded


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:10000/devstoreaccount1", "https://mybackupacct.blob.core.windows.net"],
)
@pytest.mark.parametrize("name", ["a b/c+d%e/été💎/x?y#z", "dir/file~!$&'()*,;=:@"])
def test_the_url_the_storage_sdk_builds_for_a_name_decodes_back_to_that_name(endpoint, name):
    from azure.storage.blob import (
        BlobClient,  # offline: building a client sends nothing
    )

    url = BlobClient(endpoint, "duplicity", name).url

    assert parse_event(blob_event(url, name)).blob == name


def test_subject_may_spell_the_name_as_the_url_does():
    url = "https://mybackupacct.blob.core.windows.net/duplicity/my%20backups/a%2Bb"

    created = parse_event(blob_event(url, "my%20backups/a%2Bb"))

    assert created.blob == "my backups/a+b"


def test_a_blob_name_containing_blobs_segment_is_taken_whole_from_the_subject():
    name = "x/blobs/y.gpg"
    url = f"https://mybackupacct.blob.core.windows.net/duplicity/{name}"

    assert parse_event(blob_event(url, name)).blob == name


@pytest.mark.parametrize("container", ["$root", "$web", "abc", "a-b-c", "x" * 63, "123"])
def test_valid_and_special_container_names_are_accepted(container):
    url = f"https://mybackupacct.blob.core.windows.net/{quote(container)}/{MANIFEST}"

    created = parse_event(blob_event(url, MANIFEST, container=container))

    assert created.container == container


def test_a_blob_name_of_exactly_1024_characters_is_accepted():
    name = "n" * 1024
    url = f"https://mybackupacct.blob.core.windows.net/duplicity/{name}"

    assert parse_event(blob_event(url, name)).blob == name


# --- cross-checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        f"/blobServices/default/containers/duplicity/blobs/other-{VOLUME}",
        f"/blobServices/default/containers/otherbackups/blobs/{VOLUME}",
        f"/blobServices/default/containers/duplicity/blobs/{VOLUME}.extra",
        "/blobServices/default/containers/duplicity/blobs/",
        f"/blobServices/default/containers/duplicity/{VOLUME}",
        f"/fileServices/default/shares/duplicity/files/{VOLUME}",
        f"blobServices/default/containers/duplicity/blobs/{VOLUME}",
        "",
    ],
)
def test_subject_that_does_not_name_the_url_blob_is_invalid(subject):
    with pytest.raises(InvalidEvent, match="subject"):
        parse_event(event_with(EVENTGRID_EVENT, subject=subject))


def test_subject_with_a_decoded_slash_only_matches_a_decoded_url():
    url = "https://mybackupacct.blob.core.windows.net/duplicity/dir%2Ffile"

    with pytest.raises(InvalidEvent, match="subject"):
        parse_event(blob_event(url, "dir%2Fother"))


def test_topic_naming_another_account_is_invalid():
    topic = TOPIC.replace("mybackupacct", "someoneelse")

    with pytest.raises(InvalidEvent, match="someoneelse"):
        parse_event(event_with(EVENTGRID_EVENT, topic=topic))


def test_cloudevents_source_naming_another_account_is_invalid():
    source = TOPIC.replace("mybackupacct", "someoneelse")

    with pytest.raises(InvalidEvent, match="source"):
        parse_event(event_with(CLOUDEVENTS_EVENT, source=source))


def test_topic_agrees_with_the_url_regardless_of_case():
    topic = TOPIC.replace("mybackupacct", "MyBackupAcct").replace(
        "Microsoft.Storage", "microsoft.storage"
    )

    assert parse_event(event_with(EVENTGRID_EVENT, topic=topic)).account == "mybackupacct"


@pytest.mark.parametrize(
    "topic",
    [
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/topics/relay",
        "custom-publisher",
        None,
    ],
)
def test_topic_that_names_no_storage_account_is_not_cross_checked(topic):
    assert parse_event(event_with(EVENTGRID_EVENT, topic=topic)).account == "mybackupacct"


# --- not ours: ignored -----------------------------------------------------------------


def test_event_for_another_storage_account_is_ignored_and_names_both():
    with pytest.raises(IgnoredEvent) as caught:
        parse_event(EVENTGRID_EVENT, account="prodbackups")

    assert (
        caught.value.reason == "event for storage account mybackupacct, this app serves prodbackups"
    )


@pytest.mark.parametrize("account", ["mybackupacct", "MyBackupAcct", "", None])
def test_configured_account_matches_case_insensitively_and_empty_means_any(account):
    assert parse_event(EVENTGRID_EVENT, account=account).account == "mybackupacct"


@pytest.mark.parametrize(
    "containers", [None, [], (), {"duplicity"}, ["other", "duplicity"], ["Duplicity"]]
)
def test_container_in_allow_list_or_no_allow_list_is_accepted(containers):
    assert parse_event(EVENTGRID_EVENT, containers=containers).container == "duplicity"


def test_container_outside_the_allow_list_is_ignored():
    with pytest.raises(IgnoredEvent, match="container duplicity"):
        parse_event(EVENTGRID_EVENT, containers=["photos", "documents"])


def test_containers_given_as_one_string_is_a_programming_error():
    with pytest.raises(TypeError):
        parse_event(EVENTGRID_EVENT, containers="duplicity")


SUBSCRIPTION_VALIDATION_EVENT = {
    "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
    "topic": "/subscriptions/00000000-0000-0000-0000-000000000000",
    "subject": "",
    "data": {
        "validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
        "validationUrl": (
            "https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/x/validate"
            "?id=1&t=2&apiVersion=2018-05-01-preview&token=1A1A1A1A"
        ),
    },
    "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
    "eventTime": "2018-01-25T22:12:19.4556811Z",
    "metadataVersion": "1",
    "dataVersion": "1",
}


@pytest.mark.parametrize(
    "event, type_name",
    [
        (SUBSCRIPTION_VALIDATION_EVENT, "Microsoft.EventGrid.SubscriptionValidationEvent"),
        (
            grid(eventType="Microsoft.Storage.BlobDeleted", data={"api": "DeleteBlob"}),
            "Microsoft.Storage.BlobDeleted",
        ),
        (
            grid(eventType="Microsoft.Storage.BlobTierChanged"),
            "Microsoft.Storage.BlobTierChanged",
        ),
        (
            event_with(CLOUDEVENTS_EVENT, type="Microsoft.Storage.BlobDeleted"),
            "Microsoft.Storage.BlobDeleted",
        ),
        (
            grid(eventType="microsoft.storage.blobcreated"),
            "microsoft.storage.blobcreated",
        ),
    ],
    ids=[
        "subscription-validation",
        "blob-deleted",
        "tier-changed",
        "cloudevents-deleted",
        "wrong-case",
    ],
)
def test_other_event_types_are_ignored_and_the_reason_names_the_type(event, type_name):
    with pytest.raises(IgnoredEvent) as caught:
        parse_event(event)

    assert type_name in caught.value.reason


def test_ignored_and_invalid_are_value_errors_with_a_reason():
    with pytest.raises(ValueError) as caught:
        parse_event(SUBSCRIPTION_VALIDATION_EVENT)

    assert isinstance(caught.value, EventError)
    assert str(caught.value) == caught.value.reason


# --- malformed or hostile: invalid -----------------------------------------------------

MALFORMED = {
    "not-a-mapping-list": [EVENTGRID_EVENT],
    "not-a-mapping-str": "Microsoft.Storage.BlobCreated",
    "not-a-mapping-none": None,
    "no-schema-markers": event_with(EVENTGRID_EVENT, drop=("eventType",)),
    "both-schemas": grid(specversion="1.0"),
    "cloudevents-0.3": event_with(CLOUDEVENTS_EVENT, specversion="0.3"),
    "cloudevents-number-version": event_with(CLOUDEVENTS_EVENT, specversion=1.0),
    "cloudevents-no-source": event_with(CLOUDEVENTS_EVENT, drop=("source",)),
    "cloudevents-no-type": event_with(CLOUDEVENTS_EVENT, drop=("type",)),
    "no-id": event_with(EVENTGRID_EVENT, drop=("id",)),
    "empty-id": grid(id=""),
    "numeric-id": grid(id=42),
    "huge-id": grid(id="x" * 100_000),
    "lone-surrogate-id": grid(id="abc\ud800"),
    "null-event-type": grid(eventType=None),
    "list-event-type": grid(eventType=[BLOB_CREATED]),
    "no-subject": event_with(EVENTGRID_EVENT, drop=("subject",)),
    "null-subject": grid(subject=None),
    "no-data": event_with(EVENTGRID_EVENT, drop=("data",)),
    "data-is-string": grid() | {"data": '{"url": "x"}'},
    "data-is-list": grid() | {"data": [EVENTGRID_EVENT["data"]]},
    "topic-is-object": grid(topic={"id": TOPIC}),
    "event-time-is-number": grid(eventTime=1704074400),
    "no-url": grid() | {"data": {"api": "PutBlob"}},
    "url-is-number": grid_data(url=7),
    "url-empty": grid_url(""),
    "url-huge": grid_url(URL + "a" * 20_000),
    "url-ftp": grid_url(f"ftp://mybackupacct.blob.core.windows.net/duplicity/{VOLUME}"),
    "url-file": grid_url(f"file:///duplicity/{VOLUME}"),
    "url-relative": grid_url(f"/duplicity/{VOLUME}"),
    "url-no-path": grid_url(HOST),
    "url-only-container": grid_url(URL),
    "url-no-blob-separator": grid_url(URL.rstrip("/")),
    "url-bad-port": grid_url(f"{HOST}:99999/duplicity/{VOLUME}"),
    "url-bad-ipv6": grid_url(f"http://[::1/devstoreaccount1/duplicity/{VOLUME}"),
    "url-user-info": grid_url(f"https://u:p@mybackupacct.blob.core.windows.net/duplicity/{VOLUME}"),
    "url-fragment": grid_url(f"{URL}{VOLUME}#frag"),
    "url-empty-query": grid_url(f"{URL}{VOLUME}?"),
    "url-tab-in-name": grid_url(f"{URL}host1/dupl\ticity-full.20240101T020304Z.vol1.difftar.gpg"),
    "url-newline-at-end": grid_url(f"{URL}{VOLUME}\n"),
    "url-leading-space": grid_url(f" {URL}{VOLUME}"),
    "host-not-storage": grid_url(f"https://example.com/duplicity/{VOLUME}"),
    "host-file-service": grid_url(f"https://mybackupacct.file.core.windows.net/duplicity/{VOLUME}"),
    "host-two-labels": grid_url(f"https://foo.localhost/devstoreaccount1/duplicity/{VOLUME}"),
    "host-empty-label": grid_url(f"https://mybackupacct.blob..windows.net/duplicity/{VOLUME}"),
    "account-with-hyphen": grid_url(
        f"https://my-storage-account.blob.core.windows.net/duplicity/{VOLUME}", topic=None
    ),
    "account-too-short": grid_url(
        f"https://ab.blob.core.windows.net/duplicity/{VOLUME}", topic=None
    ),
    "path-style-account-only": grid_url("http://127.0.0.1:10000/devstoreaccount1", topic=None),
    "path-style-empty-account": grid_url(
        f"http://127.0.0.1:10000//duplicity/{MANIFEST}", topic=None
    ),
    "content-length-bool": grid_data(contentLength=True),
    "content-length-negative": grid_data(contentLength=-1),
    "content-length-float": grid_data(contentLength=524288.0),
    "content-length-string": grid_data(contentLength="524288"),
    "content-length-huge": grid_data(contentLength=10**5000),
    "api-is-number": grid_data(api=1),
    "etag-is-object": grid_data(eTag={}),
    "sequencer-too-long": grid_data(sequencer="0" * 5000),
    "blob-type-is-list": grid_data(blobType=["BlockBlob"]),
    "access-tier-is-bool": grid_data(accessTier=False),
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_events_are_invalid_with_a_short_reason(event):
    with pytest.raises(InvalidEvent) as caught:
        parse_event(event)

    assert caught.value.reason
    assert len(caught.value.reason) < 400


def addressed(raw_container: str, raw_name: str, subject_name: str | None = None) -> dict:
    """An event whose subject names the same container and blob as its url, so only the name checks can object.

    The subject carries the decoded container and ``subject_name`` (the decoded
    blob name unless given), as Azure writes it.
    """
    container = unquote(raw_container, errors="strict")
    name = unquote(raw_name, errors="strict") if subject_name is None else subject_name
    return blob_event(f"{HOST}/{raw_container}/{raw_name}", name, container=container)


def bad_container(raw: str, decoded: str | None = None) -> tuple[dict, str]:
    return addressed(raw, VOLUME), f"{decoded or raw!r} is not a valid container name"


def bad_name(raw: str, fragment: str, *, subject_name: str | None = None) -> tuple[dict, str]:
    return addressed("duplicity", raw, subject_name), fragment


def unsafe_name(raw: str, problem: str) -> tuple[dict, str]:
    return bad_name(raw, f"blob name {unquote(raw)!r} {problem}")


# (event, the reason it must be rejected with). Each event is otherwise consistent,
# so removing the check it targets makes it parse.
BAD_BLOB_ADDRESSES = {
    "container-upper-case": bad_container("Duplicity"),
    "container-too-short": bad_container("ab"),
    "container-too-long": bad_container("a" * 64),
    "container-double-hyphen": bad_container("dup--licity"),
    "container-leading-hyphen": bad_container("-duplicity"),
    "container-trailing-hyphen": bad_container("duplicity-"),
    # No subject can agree with a container holding "/": the reason must still be this one.
    "container-encoded-slash": bad_container("dup%2Flicity", "dup/licity"),
    "container-unknown-special": bad_container("$secret"),
    "name-too-long": bad_name("n" * 1025, "blob name is 1025 characters; Azure allows 1024"),
    "name-encoded-nul": unsafe_name("a%00b", "contains control characters"),
    "name-encoded-newline": unsafe_name("a%0Ab", "contains control characters"),
    "name-encoded-del": unsafe_name("a%7Fb", "contains control characters"),
    "name-encoded-c1-control": unsafe_name("a%C2%85b", "contains control characters"),
    # Azure's subject may carry the name as in the url; a lenient decode would accept it.
    "name-invalid-utf8": bad_name(
        "a%FFb", "data.url blob name is not valid percent-encoded UTF-8", subject_name="a%FFb"
    ),
    "name-dot-dot-segment": unsafe_name(f"host1/../{VOLUME}", "has a '.' or '..' path segment"),
    "name-encoded-dot-segment": unsafe_name(
        f"host1/%2E%2E/{VOLUME}", "has a '.' or '..' path segment"
    ),
    "name-only-dot": unsafe_name(".", "has a '.' or '..' path segment"),
    "name-trailing-dot-segment": unsafe_name("host1/.", "has a '.' or '..' path segment"),
}


@pytest.mark.parametrize(
    "event, fragment", BAD_BLOB_ADDRESSES.values(), ids=BAD_BLOB_ADDRESSES.keys()
)
def test_bad_container_and_blob_names_are_invalid_for_that_reason(event, fragment):
    with pytest.raises(InvalidEvent, match=re.escape(fragment)):
        parse_event(event)


@pytest.mark.parametrize(
    "raw_container, raw_name",
    [
        ("duplicity", VOLUME),
        ("abc", "n" * 1024),
        ("a" * 63, "a%C2%A0b"),
        ("dup-li-city", "host1/..x/.y/...z"),
        ("%24web", "a%2Bb"),
    ],
)
def test_the_bad_address_events_differ_from_accepted_ones_only_in_the_bad_name(
    raw_container, raw_name
):
    created = parse_event(addressed(raw_container, raw_name))

    assert (created.container, created.blob) == (unquote(raw_container), unquote(raw_name))


def test_a_url_with_a_query_is_invalid_and_the_query_is_not_echoed():
    url = URL + VOLUME + "?sv=2022-11-02&sig=S3CR3TSIGNATURE"

    with pytest.raises(InvalidEvent) as caught:
        parse_event(event_with(EVENTGRID_EVENT, data={"url": url}))

    assert "S3CR3T" not in caught.value.reason
    assert "query" in caught.value.reason


def test_content_length_zero_or_absent_is_accepted():
    assert parse_event(event_with(EVENTGRID_EVENT, data={"contentLength": 0})).content_length == 0
    assert (
        parse_event(event_with(EVENTGRID_EVENT, data={"contentLength": None})).content_length
        is None
    )


def test_unused_data_fields_of_any_shape_are_not_checked():
    event = event_with(
        EVENTGRID_EVENT, data={"storageDiagnostics": [1, [2, [3]]], "contentType": 5}
    )

    assert parse_event(event).blob == VOLUME


def test_deeply_nested_data_is_harmless():
    nested: dict = {}
    for _ in range(5000):
        nested = {"x": nested}

    event = event_with(EVENTGRID_EVENT, data={"storageDiagnostics": nested})

    assert parse_event(event).blob == VOLUME


# --- parse_events and account_from_topic -----------------------------------------------


def test_parse_events_wraps_a_single_event_object():
    assert parse_events(EVENTGRID_EVENT) == [EVENTGRID_EVENT]


def test_parse_events_returns_the_array_items_without_validating_them():
    assert parse_events([EVENTGRID_EVENT, "junk", 3]) == [EVENTGRID_EVENT, "junk", 3]
    assert parse_events([]) == []


@pytest.mark.parametrize("payload", ["[]", b"{}", 3, 2.5, True, None])
def test_parse_events_rejects_anything_but_an_object_or_array(payload):
    with pytest.raises(InvalidEvent, match="expected an event object or an array"):
        parse_events(payload)


@pytest.mark.parametrize(
    "topic, account",
    [
        (TOPIC, "mybackupacct"),
        (TOPIC.replace("mybackupacct", "MyBackupAcct"), "mybackupacct"),
        (TOPIC.lower(), "mybackupacct"),
        (TOPIC + "/", "mybackupacct"),
        (TOPIC + "/blobServices/default", None),
        ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/topics/t", None),
        ("/providers/Microsoft.Storage/storageAccounts/mybackupacct", None),
        ("", None),
        ("x" * 5000, None),
    ],
)
def test_account_from_topic_reads_storage_account_resource_ids_only(topic, account):
    assert account_from_topic(topic) == account


def test_account_from_topic_of_a_non_string_is_none():
    assert account_from_topic(None) is None  # type: ignore[arg-type]


# --- properties ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

EVENT_KEYS = sorted(set(EVENTGRID_EVENT) | set(CLOUDEVENTS_EVENT))
DATA_KEYS = sorted(EVENTGRID_EVENT["data"]) + ["accessTier"]

url_like = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https", "ftp", "HTTPS", ""]),
    st.sampled_from(
        [
            "mybackupacct.blob.core.windows.net",
            "127.0.0.1:10000/devstoreaccount1",
            "localhost:10000",
            "[::1]",
            "a.b",
            "",
        ]
    ),
    st.text(max_size=40),
)


@st.composite
def mutated_events(draw):
    """A documented event with some fields replaced by arbitrary JSON values."""
    event = copy.deepcopy(
        draw(st.sampled_from([EVENTGRID_EVENT, CLOUDEVENTS_EVENT, AZURITE_EVENT]))
    )
    for key in draw(st.lists(st.sampled_from(EVENT_KEYS), max_size=3)):
        if draw(st.booleans()):
            event.pop(key, None)
        else:
            event[key] = draw(json_values)
    if isinstance(event.get("data"), dict):
        for key in draw(st.lists(st.sampled_from(DATA_KEYS), max_size=3)):
            event["data"][key] = draw(json_values | url_like if key == "url" else json_values)
    return event


def _parse_or_event_error(event, **kwargs):
    try:
        result = parse_event(event, **kwargs)
    except EventError as error:
        assert isinstance(error, (InvalidEvent, IgnoredEvent))
        assert isinstance(error.reason, str) and error.reason
        return None
    assert isinstance(result, BlobCreated)
    json.dumps(result.to_dict())
    return result


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_yields_a_blob_or_an_event_error_only(value):
    _parse_or_event_error(value)
    try:
        parse_events(value)
    except InvalidEvent:
        pass


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events(), st.sampled_from([None, "mybackupacct", "devstoreaccount1"]))
def test_mutated_documented_events_yield_a_blob_or_an_event_error_only(event, account):
    _parse_or_event_error(event, account=account, containers=["duplicity"])


blob_names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=200
).filter(lambda name: not ({".", ".."} & set(name.split("/"))))


@settings(max_examples=200, deadline=None)
@given(blob_names, st.booleans())
def test_any_valid_blob_name_survives_percent_encoding_and_decoding(name, subject_encoded):
    raw = quote(name, safe="/")
    url = f"https://mybackupacct.blob.core.windows.net/duplicity/{raw}"

    created = parse_event(blob_event(url, raw if subject_encoded else name))

    assert created.blob == name
