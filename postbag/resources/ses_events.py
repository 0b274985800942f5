"""SES's own evidence of each send: a configuration set publishing Send events to SNS.

Every mail is sent with the stage's configuration set and carries its ledger
key as a message tag. The set's event destination ``postbag-ledger``
publishes SES's ``Send`` event for each accepted mail to the topic
``postbag-<stage>-ses-events``; the ``on_ses_event`` function (subscribed by
``chalice deploy``) records it in the ledger, so that a send whose outcome
was unknown (a timeout after the request may have reached SES) is settled by
what SES says rather than by sending again (docs/exactly-once.md).

The topic is not encrypted with SSE (a choice): SES can publish to an
encrypted topic only under a customer-managed KMS key whose key policy lets
SES use it — $1 a month, and a mistake in that key policy makes SES drop
every event without an error anywhere, after which each ambiguous send would
be resent. What the events hold (From, To, Subject, the message tags) is
already in the batch in S3; SNS keeps a message only until Lambda took it,
and TLS protects it on the way.

The set and the destination are read once, before provisioning changes
anything (:func:`read`), so that a set already publishing to another stage's
topic is refused with nothing changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from postbag.aws import CommandError, error_code
from postbag.report import ABSENT, CREATED, DELETED, UNCHANGED, Report
from postbag.resources.alarms import topic_exists
from postbag.stack import SES_EVENT_DESTINATION, Stack

# Send: SES accepted the mail (the ledger's evidence). The others feed the suppression
# list and the feedback counts (chalicelib/feedback.py).
EVENT_TYPES = ["send", "bounce", "complaint", "delivery", "reject", "renderingFailure"]
# Open and click tracking: only when the operator turns it on (`postbag provision
# --tracking`); SES then rewrites links and adds a pixel to every HTML mail.
TRACKING_TYPES = ["open", "click"]
KEPT = "kept"


@dataclass(frozen=True)
class EventsState:
    """What exists of a configuration set, read before provisioning changes anything."""

    configuration_set: str
    set_exists: bool
    # Event destinations by name, as SES describes them.
    destinations: dict[str, dict[str, Any]]

    @property
    def ours(self) -> dict[str, Any] | None:
        return self.destinations.get(SES_EVENT_DESTINATION)

    @property
    def topic(self) -> str | None:
        """Where ``postbag-ledger`` publishes; None when the set has no such destination."""
        ours = self.ours
        return _view(ours)["SNSDestination"]["TopicARN"] if ours else None

    def foreign(self, stack: Stack) -> bool:
        """``postbag-ledger`` publishes to a topic that is not this stage's."""
        return self.topic not in (None, stack.ses_events_topic_arn)

    @property
    def others(self) -> list[str]:
        return sorted(name for name in self.destinations if name != SES_EVENT_DESTINATION)


def topic_policy(stack: Stack, configuration_set: str) -> dict[str, Any]:
    """Only SES may publish, and only for this account's configuration set."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SesPublishesSendEvents",
                "Effect": "Allow",
                "Principal": {"Service": "ses.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": stack.ses_events_topic_arn,
                "Condition": {
                    "StringEquals": {
                        "AWS:SourceAccount": stack.account,
                        "AWS:SourceArn": stack.configuration_set_arn(configuration_set),
                    }
                },
            }
        ],
    }


def event_destination(stack: Stack, tracking: bool = False) -> dict[str, Any]:
    return {
        "Name": SES_EVENT_DESTINATION,
        "Enabled": True,
        "MatchingEventTypes": EVENT_TYPES + (TRACKING_TYPES if tracking else []),
        "SNSDestination": {"TopicARN": stack.ses_events_topic_arn},
    }


def _view(destination: dict[str, Any]) -> dict[str, Any]:
    """The parts of a destination that provisioning owns, in a comparable form."""
    return {
        "Name": destination["Name"],
        "Enabled": destination.get("Enabled", False),
        "MatchingEventTypes": sorted(t.lower() for t in destination.get("MatchingEventTypes", [])),
        "SNSDestination": {
            "TopicARN": (destination.get("SNSDestination") or {}).get("TopicARN")
        },
    }


def read(ses: Any, configuration_set: str) -> EventsState:
    try:
        found = ses.describe_configuration_set(
            ConfigurationSetName=configuration_set,
            ConfigurationSetAttributeNames=["eventDestinations"],
        )
    except ClientError as exc:
        if error_code(exc) != "ConfigurationSetDoesNotExist":
            raise
        return EventsState(configuration_set, False, {})
    destinations = {d["Name"]: d for d in found.get("EventDestinations", []) if d}
    return EventsState(configuration_set, True, destinations)


def refuse_foreign_destination(stack: Stack, state: EventsState) -> None:
    """Two stages cannot share a set: one destination name, one topic."""
    if state.foreign(stack):
        raise CommandError(
            f"configuration set {state.configuration_set} already publishes its "
            f"{SES_EVENT_DESTINATION} events to {state.topic}, not {stack.ses_events_topic_arn}: "
            "give each stage its own --configuration-set"
        )


def ensure(sns: Any, ses: Any, stack: Stack, state: EventsState, report: Report,
           tracking: bool = False) -> None:
    """The topic and its policy, then the set, then the destination (SES checks the topic)."""
    _ensure_topic(sns, stack, state.configuration_set, report)
    name = state.configuration_set
    if state.set_exists:
        report.add(f"SES configuration set {name}", UNCHANGED)
    else:
        # SES v1 takes no tags here; the set is named after the stage instead.
        ses.create_configuration_set(ConfigurationSet={"Name": name})
        report.add(f"SES configuration set {name}", CREATED)
    desired = event_destination(stack, tracking)
    ours = state.ours
    change = (
        ses.update_configuration_set_event_destination
        if ours
        else ses.create_configuration_set_event_destination
    )
    report.converge(
        f"SES event destination {name}/{SES_EVENT_DESTINATION} -> {stack.ses_events_topic}",
        lambda: _view(ours) if ours else None,
        _view(desired),
        lambda: change(ConfigurationSetName=name, EventDestination=desired),
    )


def _ensure_topic(sns: Any, stack: Stack, configuration_set: str, report: Report) -> None:
    arn = stack.ses_events_topic_arn
    policy = topic_policy(stack, configuration_set)
    what = f"SNS topic {stack.ses_events_topic}"
    if not topic_exists(sns, arn):
        sns.create_topic(
            Name=stack.ses_events_topic,
            Attributes={"Policy": json.dumps(policy)},
            Tags=stack.tag_list,
        )
        report.add(what, CREATED)
        return
    report.converge(
        f"{what} policy",
        lambda: json.loads(sns.get_topic_attributes(TopicArn=arn)["Attributes"]["Policy"]),
        policy,
        lambda: sns.set_topic_attributes(
            TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(policy)
        ),
    )


def destination_state(ses: Any, stack: Stack, configuration_set: str) -> str:
    """For ``postbag status``: enabled, disabled, elsewhere (another topic) or missing."""
    state = read(ses, configuration_set)
    ours = state.ours
    if ours is None:
        return "missing"
    if state.foreign(stack):
        return "elsewhere"
    return "enabled" if _view(ours)["Enabled"] else "disabled"


def delete(sns: Any, ses: Any, stack: Stack, configuration_set: str, report: Report) -> None:
    """The destination, the set unless it holds the operator's own destinations, the topic."""
    _delete_from_set(ses, stack, read(ses, configuration_set), report)
    arn = stack.ses_events_topic_arn
    exists = topic_exists(sns, arn)
    if exists:
        sns.delete_topic(TopicArn=arn)
    report.add(f"SNS topic {stack.ses_events_topic}", DELETED if exists else ABSENT)


def _delete_from_set(ses: Any, stack: Stack, state: EventsState, report: Report) -> None:
    name = state.configuration_set
    what_set = f"SES configuration set {name}"
    what_destination = f"SES event destination {name}/{SES_EVENT_DESTINATION}"
    ours = state.ours
    if state.foreign(stack):
        # Another stage's: it would lose its evidence and resend ambiguous mail.
        report.add(f"{what_set} (publishes to another topic)", KEPT)
        return
    if not state.set_exists:
        report.add(what_destination, ABSENT)
        report.add(what_set, ABSENT)
        return
    if state.others:
        # Destinations the operator added (bounces, complaints) keep the set alive.
        if ours:
            ses.delete_configuration_set_event_destination(
                ConfigurationSetName=name, EventDestinationName=SES_EVENT_DESTINATION
            )
        report.add(what_destination, DELETED if ours else ABSENT)
        report.add(f"{what_set} (holds {', '.join(state.others)})", KEPT)
        return
    # Deleting the set deletes its destination with it.
    ses.delete_configuration_set(ConfigurationSetName=name)
    report.add(what_destination, DELETED if ours else ABSENT)
    report.add(what_set, DELETED)
