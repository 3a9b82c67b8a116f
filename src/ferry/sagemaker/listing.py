"""SageMaker's ``List*`` calls: filters, sorting and pages as botocore's service model documents
them (``NameContains``, ``StatusEquals``, ``CreationTime``/``LastModifiedTime`` ``After``/``Before``,
``SortBy`` ``Name|CreationTime|Status``, ``SortOrder``, ``MaxResults`` 1–100, ``NextToken``).

Every call has its own defaults (ListTrainingJobs sorts ascending, the others descending;
ListEndpoints answers 10 a page), so each passes them. A ``NextToken`` is one this server gave:
anything else is a ``ValidationException``, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

#: The SortBy values of the List* calls (Status only where the resource has one).
SORT_BY = ("Name", "CreationTime", "Status")


def list_page(items: list[dict[str, Any]], request: dict[str, Any], key: str, *, name: str, status: str | None = None,
              ascending: bool = False, default_max: int = 100,
              validation: Callable[[str], Exception]) -> dict[str, Any]:
    """One page of ``items`` (summaries with ``name``, ``CreationTime`` and maybe ``status``) under ``key``."""
    items = [item for item in items if _passes(item, request, name, status)]
    sort_by = request.get("SortBy") or "CreationTime"
    order = request.get("SortOrder") or ("Ascending" if ascending else "Descending")
    if not isinstance(sort_by, str) or sort_by not in SORT_BY or (sort_by == "Status" and status is None):
        raise validation(f"SortBy must be one of {', '.join(SORT_BY if status else SORT_BY[:2])}")
    if order not in ("Ascending", "Descending"):
        raise validation("SortOrder must be Ascending or Descending")
    field = {"Name": name, "CreationTime": "CreationTime", "Status": status}[sort_by]
    items.sort(key=lambda item: (item.get(field) or 0, item[name]), reverse=order == "Descending")
    size = request.get("MaxResults", default_max)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100:
        raise validation("MaxResults must be an integer from 1 to 100")
    start = _offset(request.get("NextToken"), validation)
    page: dict[str, Any] = {key: items[start:start + size]}
    if start + size < len(items):
        page["NextToken"] = base64.urlsafe_b64encode(json.dumps({"offset": start + size}).encode()).decode()
    return page


def _passes(item: dict[str, Any], request: dict[str, Any], name: str, status: str | None) -> bool:
    contains = request.get("NameContains")
    if isinstance(contains, str) and contains.lower() not in item[name].lower():
        return False
    if status is not None and request.get("StatusEquals") and item.get(status) != request["StatusEquals"]:
        return False
    for field in ("CreationTime", "LastModifiedTime"):
        value = item.get(field)
        after, before = _time(request.get(f"{field}After")), _time(request.get(f"{field}Before"))
        if value is None:
            continue
        if (after is not None and value < after) or (before is not None and value >= before):
            return False
    return True


def _time(value: Any) -> float | None:
    """boto3 sends timestamps as epoch seconds in the JSON protocol; ISO 8601 is taken too."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _offset(token: Any, validation: Callable[[str], Exception]) -> int:
    if token in (None, ""):
        return 0
    try:
        if len(str(token)) > 8192:  # the model's bound
            raise ValueError
        offset = json.loads(base64.urlsafe_b64decode(str(token).encode()))["offset"]
    except (ValueError, TypeError, KeyError, binascii.Error, RecursionError):
        raise validation("Invalid pagination token: use the NextToken of the previous page.") from None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise validation("Invalid pagination token: use the NextToken of the previous page.")
    return offset
