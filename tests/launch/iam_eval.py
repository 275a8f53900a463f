"""A small evaluator of the identity-based policies in the rendered cluster template, for tests.

It answers "would this role be allowed this request?" the way IAM evaluates Allow statements
(IAM user guide, "Policy evaluation logic"; the template has no Deny statements, which this
evaluator refuses to handle rather than get wrong): a statement applies when one of its actions
matches (``*`` and ``?`` wildcards, case-insensitive), one of its resources matches the
request's resource (wildcards), and every condition holds against the request context
(``StringEquals``, ``StringLike``, ``ArnLike``, ``Bool``; a key missing from the context fails the
condition). CloudFormation intrinsics are resolved with fixed account values: ``Fn::Sub`` of
``${AWS::Partition}``, ``${AWS::Region}``, ``${AWS::AccountId}``, and ``Fn::GetAtt [X, Arn]``
of the cluster key, lock table and snapshot bucket (``arn:aws:s3:::snapshotbucket-<account>``;
``${X.Arn}`` in ``Fn::Sub`` the same).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0000aaaa-bbbb-cccc-dddd-eeeeffff0000"


def parameter_arn(name: str) -> str:
    """The ARN of an SSM parameter (``/a/b`` -> ``arn:aws:ssm:...:parameter/a/b``)."""
    return f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}"


def _resolve(value: Any, template: dict) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [_resolve(v, template) for v in value]
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]

        def sub(m: re.Match) -> str:
            if m.group(1).endswith(".Arn"):  # ${Logical.Arn}: as Fn::GetAtt [Logical, Arn]
                return _resolve({"Fn::GetAtt": [m.group(1)[:-4], "Arn"]}, template)
            return PSEUDO[m.group(1)]

        return re.sub(r"\$\{([^}]+)\}", sub, text)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical, attr = value["Fn::GetAtt"]
        assert attr == "Arn", value
        kind = template["Resources"][logical]["Type"]
        if kind == "AWS::KMS::Key":
            return KEY_ARN
        if kind == "AWS::DynamoDB::Table":
            name = template["Resources"][logical]["Properties"]["TableName"]
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
        if kind == "AWS::S3::Bucket":  # a generated name; tests use this one
            return f"arn:aws:s3:::{logical.lower()}-{ACCOUNT}"
        raise AssertionError(f"no ARN for {logical} ({kind})")
    raise AssertionError(f"cannot resolve {value!r}")


def _listify(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str, case: bool = True) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


@dataclass(frozen=True)
class Request:
    """One API request: ``action`` (``ssm:GetParameter``), ``resource`` (ARN), ``context``
    (condition keys such as ``kms:ViaService``, ``kms:EncryptionContext:PARAMETER_ARN``)."""

    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)


class Role:
    """The inline policies of one ``AWS::IAM::Role`` of a rendered template."""

    def __init__(self, template: dict, logical_id: str) -> None:
        props = template["Resources"][logical_id]["Properties"]
        self.statements: list[dict] = []
        for policy in props.get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                if st["Effect"] != "Allow":
                    raise AssertionError("Deny statements are not evaluated here")
                self.statements.append(
                    {
                        "Sid": st.get("Sid", ""),
                        "Action": _listify(st["Action"]),
                        "Resource": [_resolve(r, template) for r in _listify(st["Resource"])],
                        "Condition": {
                            op: {k: _resolve(v, template) for k, v in body.items()}
                            for op, body in st.get("Condition", {}).items()
                        },
                    }
                )

    def _condition_holds(self, condition: dict, context: dict[str, str]) -> bool:
        for op, body in condition.items():
            for key, wanted in body.items():
                if key not in context:
                    return False
                values = _listify(wanted)
                actual = context[key]
                if op == "StringEquals":
                    ok = actual in values
                elif op in ("StringLike", "ArnLike"):
                    ok = any(_matches(v, actual) for v in values)
                elif op == "Bool":  # "true"/"false", as IAM compares them
                    ok = str(actual).lower() in [str(v).lower() for v in values]
                elif op == "ForAllValues:StringLike":  # every request value matches a pattern
                    ok = all(any(_matches(v, a) for v in values) for a in _listify(actual))
                else:
                    raise AssertionError(f"condition operator {op} not evaluated here")
                if not ok:
                    return False
        return True

    def allowing(self, request: Request) -> list[str]:
        """The Sids of the statements that allow ``request`` (empty: implicitly denied)."""
        out = []
        for st in self.statements:
            if not any(_matches(a, request.action, case=False) for a in st["Action"]):
                continue
            if not any(_matches(r, request.resource) for r in st["Resource"]):
                continue
            if self._condition_holds(st["Condition"], request.context):
                out.append(st["Sid"])
        return out

    def allows(self, request: Request) -> bool:
        """True when some statement allows ``request``."""
        return bool(self.allowing(request))
