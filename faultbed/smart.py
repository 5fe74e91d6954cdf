"""A stand-in for an Azure account whose default access tier is Smart, made of Azurite's answers.

Azurite (3.35) refuses the Smart tier, so the fault proxy rewrites what Azurite answers into
what Azure documents for a Smart-tier account, and the real SDK parses it:

- Azure stores a blob whose tier was never set at the account's default tier and reports
  `AccessTierInferred` true; on a Smart account that tier reads `Smart`, and the tier the blob
  sits in now is in `SmartAccessTier` (listings) or `x-ms-smart-access-tier` (Get Blob
  Properties): Hot for new data, Cool after 30 days unread, Cold after 90.
  So a blob that Azurite reports as inferred Hot is rewritten to `Smart` with the underlying
  tier `underlying` gives for its name (default Hot). A blob whose tier was set (Azurite
  reports it as not inferred) keeps its explicit tier, as on Azure: an explicit tier takes a
  blob out of Smart for good.
  https://learn.microsoft.com/azure/storage/blobs/access-tiers-smart;
  learn.microsoft.com/dotnet/api/azure.storage.blobs.models.blobproperties.smartaccesstier
- Smart needs a zone-redundant account (ZRS, GZRS, RA-GZRS): Get Account Information answers
  `x-ms-sku-name: Standard_ZRS` (or `sku`), and a plain Set Blob Tier to Archive is refused with
  `BlobAccessTierNotSupportedForAccountType`, which Azure documents without a status (409 here,
  an assumption; see retier.storage.TIER_NOT_SUPPORTED). A Blob Batch asking for Archive is not
  refused by this stand-in: tests of that path use one volume (one plain Set Blob Tier).

The stand-in counts what it rewrote, so a test can tell that the Smart answers were seen.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from faultbed import http1
from faultbed.proxy import RequestInfo, StandIn, azure_error

SMART = "Smart"
ZRS = "Standard_ZRS"
TIER_NOT_SUPPORTED = "BlobAccessTierNotSupportedForAccountType"

_BLOB = re.compile(rb"<Blob>.*?</Blob>", re.DOTALL)
_NAME = re.compile(rb"<Name>(?P<name>.*?)</Name>", re.DOTALL)
_INFERRED = re.compile(rb"<AccessTierInferred>true</AccessTierInferred>", re.IGNORECASE)
_TIER = re.compile(rb"<AccessTier>Hot</AccessTier>")


class SmartTierStandIn(StandIn):
    """Azurite's answers rewritten as a Smart-default, zone-redundant Azure account's (see module)."""

    def __init__(self, underlying: Mapping[str, str] | None = None, *, sku: str = ZRS):
        self.underlying = dict(underlying or {})  # blob name -> Hot / Cool / Cold
        self.sku = sku
        self.rewritten: Counter[str] = Counter()  # "list-blob", "properties", "account", "refused"
        self._lock = threading.Lock()

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.rewritten[what] += n

    def _under(self, name: str) -> str:
        return self.underlying.get(name, "Hot")

    # -- in Azurite's place -----------------------------------------------------------------------
    def answer(self, info: RequestInfo, request: http1.Message) -> http1.Message | None:
        tier = request.header("x-ms-access-tier") or ""
        if info.operation == "set-tier" and tier.lower() == "archive" and "ZRS" in self.sku:
            self._count("refused")
            return azure_error(
                request,
                409,
                "Conflict",
                TIER_NOT_SUPPORTED,
                "The specified blob access tier is not supported on this storage account type.",
            )
        return None

    # -- Azurite's answers, rewritten -------------------------------------------------------------
    def rewrite(
        self, info: RequestInfo, request: http1.Message, response: http1.Message
    ) -> http1.Message:
        if not 200 <= response.status < 300:
            return response
        query = dict(parse_qsl(urlsplit(request.target).query, keep_blank_values=True))
        if query.get("restype") == "account" and query.get("comp") == "properties":
            self._count("account")
            return _with_headers(response, {"x-ms-sku-name": self.sku})
        if info.operation == "list" and info.container:
            return self._listing(response)
        if info.blob and request.method in ("HEAD", "GET") and not query.get("comp"):
            return self._properties(info.blob, response)
        return response

    def _listing(self, response: http1.Message) -> http1.Message:
        rewritten = 0

        def blob(match: re.Match) -> bytes:
            nonlocal rewritten
            xml = match.group(0)
            name = _NAME.search(xml)
            if not name or not _INFERRED.search(xml) or not _TIER.search(xml):
                return xml
            under = self._under(name["name"].decode("utf-8"))
            rewritten += 1
            smart = f"<AccessTier>{SMART}</AccessTier><SmartAccessTier>{under}</SmartAccessTier>"
            return _TIER.sub(smart.encode(), xml, count=1)

        body = _BLOB.sub(blob, response.body)
        self._count("list-blob", rewritten)
        return http1.Message(response.start, list(response.headers), body, response.close)

    def _properties(self, blob: str, response: http1.Message) -> http1.Message:
        inferred = (response.header("x-ms-access-tier-inferred") or "").lower() == "true"
        if not inferred or response.header("x-ms-access-tier") != "Hot":
            return response
        self._count("properties")
        return _with_headers(
            response, {"x-ms-access-tier": SMART, "x-ms-smart-access-tier": self._under(blob)}
        )


def _with_headers(response: http1.Message, values: Mapping[str, str]) -> http1.Message:
    """`response` with the headers in `values` replaced (or added)."""
    wanted = {k.lower(): (k, v) for k, v in values.items()}
    headers = [(k, v) for k, v in response.headers if k.lower() not in wanted]
    headers += list(wanted.values())
    return http1.Message(
        response.start, headers, response.body, response.close, bodiless=response.bodiless
    )
