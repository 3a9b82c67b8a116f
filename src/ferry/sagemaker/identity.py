"""STS and IAM, as far as the stack's own identity goes: ``sts:GetCallerIdentity``, and
``iam:GetRole`` and ``iam:SimulatePrincipalPolicy`` for the local SageMaker's execution role.

Why they are here: Airflow's "Test connection" for an ``aws`` connection calls
GetCallerIdentity, the SageMaker SDK calls it to name its default bucket, and SDKs validate an
execution role with GetRole before they train. Both are AWS query-protocol APIs (a form-encoded
POST with ``Action=…``, an XML answer, XML errors), which is all that differs from the JSON APIs
beside them; the control plane checks their SigV4 signatures like the others'.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape

ACCOUNT = "000000000000"
#: The execution role the DAGs use here (dags/digits_classifier.py's LOCAL_ROLE).
ROLE_NAME = "ferry-sagemaker"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
#: When the role "was created": fixed, so that answers do not change between calls.
ROLE_CREATED = datetime(2026, 1, 1, tzinfo=timezone.utc)
TRUST_POLICY = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":'
                '"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
ROLE_NAME_PATTERN = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
XML_UNSAFE = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
NAMESPACES = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/", "iam": "https://iam.amazonaws.com/doc/2010-05-08/"}


class QueryError(Exception):
    """An error as the query protocol answers it: HTTP status, code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def answer(service: str, params: dict[str, str], access_key_id: str) -> bytes:
    """The XML answer to ``params["Action"]`` on ``service`` (``sts`` or ``iam``)."""
    action = params.get("Action", "")
    if service == "sts" and action == "GetCallerIdentity":
        user_id = "AIDA" + hashlib.sha256(access_key_id.encode()).hexdigest()[:17].upper()
        return _result(service, action, f"<Arn>arn:aws:iam::{ACCOUNT}:user/ferry</Arn><UserId>{user_id}</UserId>"
                                        f"<Account>{ACCOUNT}</Account>")
    if service == "iam" and action == "GetRole":
        name = params.get("RoleName", "")
        if not ROLE_NAME_PATTERN.fullmatch(name):  # IAM's own pattern; it also keeps the XML answer well-formed
            raise QueryError(400, "ValidationError", "1 validation error detected: Value at 'roleName' failed to "
                             "satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+")
        if name != ROLE_NAME:
            raise QueryError(404, "NoSuchEntity", f"The role with name {name} cannot be found.")
        return _result(service, action, (
            f"<Role><Path>/</Path><RoleName>{ROLE_NAME}</RoleName><RoleId>AROAFERRYSAGEMAKER0001</RoleId>"
            f"<Arn>{ROLE_ARN}</Arn><CreateDate>{ROLE_CREATED.strftime('%Y-%m-%dT%H:%M:%SZ')}</CreateDate>"
            f"<AssumeRolePolicyDocument>{escape(TRUST_POLICY)}</AssumeRolePolicyDocument>"
            f"<MaxSessionDuration>3600</MaxSessionDuration></Role>"))
    if service == "iam" and action == "SimulatePrincipalPolicy":
        return _result(service, action, _simulate(params))
    raise QueryError(400, "InvalidAction", f"{service}:{action[:64] or '(no Action)'} is not served here "
                                           "(GetCallerIdentity, GetRole and SimulatePrincipalPolicy are)")


def _members(params: dict[str, str], name: str) -> list[str]:
    """A query-protocol list (``Name.member.1``, ``Name.member.2``, …), in its order."""
    found = {}
    for key, value in params.items():
        prefix, _, number = key.rpartition(".member.")
        if prefix == name and number.isdigit():
            found[int(number)] = value
    return [found[n] for n in sorted(found)]


def _simulate(params: dict[str, str]) -> str:
    """``iam:SimulatePrincipalPolicy`` for the stack's role: its one policy allows every action on
    every resource (the stack lets in one key pair, and everything it serves is that key's), so
    each action asked about is ``allowed``. The SageMaker SDK v3 asks before it trains."""
    source = params.get("PolicySourceArn", "")
    if not source:
        raise QueryError(400, "ValidationError", "1 validation error detected: Value null at 'policySourceArn' "
                         "failed to satisfy constraint: Member must not be null")
    if source != ROLE_ARN:
        raise QueryError(404, "NoSuchEntity", f"The role with ARN {source[:200]} cannot be found.")
    actions, resources = _members(params, "ActionNames"), _members(params, "ResourceArns") or ["*"]
    if not actions:
        raise QueryError(400, "ValidationError", "1 validation error detected: Value null at 'actionNames' "
                         "failed to satisfy constraint: Member must not be null")
    if len(actions) * len(resources) > 1000:
        raise QueryError(400, "InvalidInput", "at most 1000 action and resource pairs can be simulated at once")
    statement = ("<MatchedStatements><member><SourcePolicyId>ferry-stack</SourcePolicyId>"
                 "<SourcePolicyType>IAM Policy</SourcePolicyType></member></MatchedStatements>")
    results = "".join(
        f"<member><EvalActionName>{escape(XML_UNSAFE.sub('?', action))}</EvalActionName>"
        f"<EvalResourceName>{escape(XML_UNSAFE.sub('?', resource))}</EvalResourceName>"
        f"<EvalDecision>allowed</EvalDecision>{statement}<MissingContextValues/></member>"
        for action in actions for resource in resources)
    return f"<IsTruncated>false</IsTruncated><EvaluationResults>{results}</EvaluationResults>"


def error(service: str, exc: QueryError) -> bytes:
    kind = "Sender" if exc.status < 500 else "Receiver"
    exc.message = XML_UNSAFE.sub("?", exc.message)  # characters XML 1.0 cannot carry, even escaped
    return (f'<ErrorResponse xmlns="{NAMESPACES.get(service, NAMESPACES["sts"])}"><Error><Type>{kind}</Type>'
            f"<Code>{escape(exc.code)}</Code><Message>{escape(exc.message)}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>").encode()


def _result(service: str, action: str, inner: str) -> bytes:
    return (f'<{action}Response xmlns="{NAMESPACES[service]}"><{action}Result>{inner}</{action}Result>'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            f"</{action}Response>").encode()


def form(body: bytes) -> dict[str, Any]:
    """A query-protocol body's parameters (the last value of each, as AWS reads them)."""
    from urllib.parse import parse_qsl

    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        raise QueryError(400, "MalformedQueryString", "the body is not UTF-8 form data") from None
