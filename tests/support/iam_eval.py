"""A tiny IAM policy evaluator, enough to ask what our policies allow.

Identity policies only: explicit Deny beats Allow, no Allow means denied.
Action and Resource (lists or strings, ``*``/``?`` wildcards; actions
case-insensitive), and the condition operators our policies use
(StringEquals, StringLike, Bool; a key missing from the request fails them).
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


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, wanted in tests.items():
            if key not in context:
                return False
            got = context[key]
            if operator == "StringEquals":
                ok = got in _list(wanted)
            elif operator == "StringLike":
                ok = any(_like(p, got) for p in _list(wanted))
            elif operator == "Bool":
                ok = got.lower() in [str(w).lower() for w in _list(wanted)]
            else:
                raise NotImplementedError(operator)
            if not ok:
                return False
    return True


def _applies(statement: dict, action: str, resource: str, context: dict[str, str]) -> bool:
    unsupported = {"NotAction", "NotResource", "NotPrincipal"} & statement.keys()
    if unsupported:
        raise NotImplementedError(sorted(unsupported))
    return (
        any(_like(p, action, ignore_case=True) for p in _list(statement["Action"]))
        and any(_like(p, resource) for p in _list(statement["Resource"]))
        and _condition_holds(statement.get("Condition", {}), context)
    )


def evaluate(policy: dict, action: str, resource: str, context: dict[str, str] | None = None):
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
