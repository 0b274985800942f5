"""What provision says about SES: identities (verified, pending, unknown) and the sandbox,
against botocore's Stubber (the exact requests; moto reports every identity verified
and answers no GetAccount)."""

from __future__ import annotations

import io

import boto3
import pytest
from botocore.stub import Stubber

from postbag.aws import CommandError
from postbag.report import Report
from postbag.ses_account import account, check_identities, report_account


def stubbed(service: str) -> tuple[object, Stubber]:
    client = boto3.client(service, region_name="us-east-1")
    return client, Stubber(client)


def attributes(states: dict[str, str]) -> dict:
    return {"VerificationAttributes": {
        name: {"VerificationStatus": state} for name, state in states.items()}}


def test_an_address_is_covered_by_its_verified_domain_and_a_pending_one_is_warned_about():
    ses, stub = stubbed("ses")
    stub.add_response(
        "get_identity_verification_attributes",
        attributes({"example.org": "Success", "news@example.com": "Pending"}),
        {"Identities": ["example.com", "example.org", "news@example.com", "news@example.org"]},
    )
    out = io.StringIO()
    with stub:
        check_identities(ses, ["news@example.org", "news@example.com"], Report(out))
    lines = out.getvalue().splitlines()
    assert lines[0] == "SES identity news@example.org: verified"
    assert lines[1].startswith("WARNING: SES identity news@example.com: Pending, mail from it "
                               "is refused until SES verifies it")


def test_an_identity_ses_does_not_know_is_refused_with_the_command_that_creates_it():
    ses, stub = stubbed("ses")
    stub.add_response("get_identity_verification_attributes",
                      attributes({"example.org": "Success"}))
    with stub, pytest.raises(CommandError, match=r"no identity for news@other\.example: .*"
                             r"create-email-identity --email-identity other\.example"):
        check_identities(ses, ["example.org", "news@other.example"], Report(io.StringIO()))


@pytest.mark.parametrize("answer,expected", [
    ({"ProductionAccessEnabled": False, "SendingEnabled": True},
     ["WARNING: SES account in the sandbox: 200 mails a day, to verified recipients only: "
      "request production access (docs/deploy.md section 1)"]),
    ({"ProductionAccessEnabled": True, "SendingEnabled": True},
     ["SES account: production access"]),
    ({"ProductionAccessEnabled": True, "SendingEnabled": False},
     ["SES account: production access",
      "WARNING: SES account: sending is paused for the account: see the SES console's account "
      "dashboard"]),
], ids=["sandbox", "production", "paused"])
def test_the_account_is_reported_with_what_to_do(answer, expected):
    sesv2, stub = stubbed("sesv2")
    stub.add_response("get_account", answer, {})
    out = io.StringIO()
    with stub:
        report_account(sesv2, Report(out))
    assert out.getvalue().splitlines() == expected


def test_an_account_that_cannot_be_read_is_unknown_not_a_failure():
    sesv2, stub = stubbed("sesv2")
    stub.add_client_error("get_account", "AccessDeniedException")
    with stub:
        assert account(sesv2) == {"production_access": None, "sending_enabled": None}
