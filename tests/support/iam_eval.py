"""A tiny IAM policy evaluator, enough to ask what our policies allow.

Identity policies only: explicit Deny beats Allow, no Allow means denied.
Action and Resource (lists or strings, ``*``/``?`` wildcards; actions
case-insensitive), and the condition operators our policies use
(StringEquals, StringLike, Bool; a key missing from the request fails them;
``ForAllValues:`` before one of them: every value of the key, given as a
string or a list, must pass, and as in IAM a key missing passes).
NotAction, NotResource and policy variables are refused rather than guessed.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

ALLOW, DENY, IMPLICIT_DENY = "Allow", "Deny", "ImplicitDeny"


def _list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    # fnmatch also knows [...] sets, which IAM does not: escape them.
    pattern = pattern.replace("[", "[[]")
    if ignore_case:
        return fnmatchcase(value.lower(), pattern.lower())
    return fnmatchcase(value, pattern)


def _passes(operator: str, got: str, wanted: Any) -> bool:
    if operator == "StringEquals":
        return got in _list(wanted)
    if operator == "StringLike":
        return any(_like(p, got) for p in _list(wanted))
    if operator == "Bool":
        return got.lower() in [str(w).lower() for w in _list(wanted)]
    raise NotImplementedError(operator)


def _condition_holds(condition: dict, context: dict[str, Any]) -> bool:
    for operator, tests in condition.items():
        every = operator.startswith("ForAllValues:")
        operator = operator.removeprefix("ForAllValues:")
        for key, wanted in tests.items():
            if key not in context:
                if every:
                    continue
                return False
            values = _list(context[key]) if every else [context[key]]
            if not all(_passes(operator, got, wanted) for got in values):
                return False
    return True


def _applies(statement: dict, action: str, resource: str, context: dict[str, Any]) -> bool:
    unsupported = {"NotAction", "NotResource", "NotPrincipal"} & statement.keys()
    if unsupported:
        raise NotImplementedError(sorted(unsupported))
    return (
        any(_like(p, action, ignore_case=True) for p in _list(statement["Action"]))
        and any(_like(p, resource) for p in _list(statement["Resource"]))
        and _condition_holds(statement.get("Condition", {}), context)
    )


def evaluate(policy: dict, action: str, resource: str, context: dict[str, Any] | None = None):
    effects = {
        s["Effect"]
        for s in _list(policy["Statement"])
        if _applies(s, action, resource, context or {})
    }
    if DENY in effects:
        return DENY
    return ALLOW if ALLOW in effects else IMPLICIT_DENY


def allowed(policy: dict, action: str, resource: str, context: dict | None = None) -> bool:
    return evaluate(policy, action, resource, context) == ALLOW
