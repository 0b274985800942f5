"""What SES must already have before a stage can send: verified identities, and
production access (the sandbox only delivers to verified recipients).

``postbag provision`` refuses a sender identity SES does not know (every mail
from it would be refused), warns about one whose verification is pending or
failed, and says whether the account is in the sandbox, each with what to do.
Identities are SES's to create (DNS records are the domain owner's): provision
never creates them.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from postbag.aws import CommandError
from postbag.report import Report

VERIFIED = "Success"
# GetIdentityVerificationAttributes takes at most 100 identities a call.
MAX_IDENTITIES = 100


def candidates(sender: str) -> list[str]:
    """The identities that may cover ``sender``: an address is covered by itself or its domain."""
    return [sender, sender.split("@", 1)[1]] if "@" in sender else [sender]


def verification(ses: Any, senders: list[str]) -> dict[str, str]:
    """Each sender's best verification status (``Success`` first); ``""`` when SES knows none."""
    names = sorted({name for sender in senders for name in candidates(sender)})
    found: dict[str, str] = {}
    for start in range(0, len(names), MAX_IDENTITIES):
        answer = ses.get_identity_verification_attributes(
            Identities=names[start:start + MAX_IDENTITIES])
        found |= {k: v["VerificationStatus"] for k, v in answer["VerificationAttributes"].items()}
    states = {}
    for sender in senders:
        known = [found[name] for name in candidates(sender) if name in found]
        states[sender] = VERIFIED if VERIFIED in known else (known[0] if known else "")
    return states


def check_identities(ses: Any, senders: list[str], report: Report) -> None:
    """Refuse senders SES does not know; report the others' status, with what to do."""
    states = verification(ses, senders)
    missing = [sender for sender, state in states.items() if not state]
    if missing:
        raise CommandError(
            f"SES in this region has no identity for {', '.join(missing)}: create and verify "
            f"it first (`aws sesv2 create-email-identity --email-identity "
            f"{candidates(missing[0])[-1]}`, then publish the DKIM records it answers; "
            "docs/deploy.md section 1), or fix --sender-identity"
        )
    for sender, state in states.items():
        if state == VERIFIED:
            report.note(f"SES identity {sender}: verified")
        else:
            report.note(
                f"WARNING: SES identity {sender}: {state}, mail from it is refused until SES "
                f"verifies it (`aws sesv2 get-email-identity --email-identity "
                f"{candidates(sender)[-1]}`; check its DKIM records)")


def account(sesv2: Any) -> dict[str, bool | None]:
    """Production access and sending enabled as SES says (``None``: could not be read)."""
    try:
        got = sesv2.get_account()
    except (ClientError, BotoCoreError):
        return {"production_access": None, "sending_enabled": None}
    return {"production_access": got.get("ProductionAccessEnabled"),
            "sending_enabled": got.get("SendingEnabled")}


def report_account(sesv2: Any, report: Report) -> None:
    """Sandbox or production, and whether sending is paused, with what to do."""
    state = account(sesv2)
    if state["production_access"] is None:
        report.note("SES account: production access unknown (GetAccount not answered): "
                    "check it in the SES console's account dashboard")
    elif state["production_access"]:
        report.note("SES account: production access")
    else:
        report.note("WARNING: SES account in the sandbox: 200 mails a day, to verified "
                    "recipients only: request production access (docs/deploy.md section 1)")
    if state["sending_enabled"] is False:
        report.note("WARNING: SES account: sending is paused for the account: see the SES "
                    "console's account dashboard")
