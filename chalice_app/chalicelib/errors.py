"""One exception tree for every outcome; the class says whether to retry.

``TransientError`` means "try again later" (Lambda may retry the batch);
``PermanentError`` means "this will never work" (record it, never retry).
"""

from __future__ import annotations


class PostbagError(Exception):
    """Base class of every error Postbag raises on purpose."""

    retryable = False


class ConfigurationError(PostbagError):
    """The function is deployed in a way the sender cannot work with; an operator must act."""


class TransientError(PostbagError):
    """Trouble that may pass: throttling, outages, network errors."""

    retryable = True


class PermanentError(PostbagError):
    """Trouble that retrying cannot fix."""


class HeldObjectGone(PermanentError):
    """A held batch's or job's object is gone when it falls due: nobody would be mailed,
    so the drainer gives it up (failed, logged, counted), never releases it silently."""


class BatchFormatError(PermanentError):
    """A batch, or one mail in it, breaks the batch format."""

    def __init__(self, field: str, batch: str, reason: str, mail: str | None = None):
        self.field = field
        self.batch = batch
        self.reason = reason
        self.mail = mail
        where = f"batch {batch}" + (f", mail {mail}" if mail else "")
        super().__init__(f"{where}: field {field}: {reason}")


class HeaderInjectionError(BatchFormatError):
    """A header value carries CR or LF."""


class SenderNotAllowed(BatchFormatError):
    """The From address is not among the configured sender identities."""


class AttachmentError(PermanentError):
    """An attachment is missing, refused by SES or too large."""


class MessageTooLarge(AttachmentError):
    """The raw message would exceed SES's 10 MB limit."""


class StorageUnavailable(TransientError):
    """S3 could not be reached or answered with a server error."""


class Throttled(TransientError):
    """SES refused the call for exceeding the send rate."""


class SesUnavailable(TransientError):
    """SES answered with a server error or could not be reached."""


class LedgerUnavailable(TransientError):
    """DynamoDB could not claim, complete or release a ledger record."""


class SendingPaused(TransientError):
    """The account cannot send now (sending paused, daily quota used up)."""


class SendAmbiguous(PostbagError):
    """The request may have reached SES (a timeout or a lost answer): whether it sent the
    mail is unknown until SES's own Send event says, so it is never simply retried."""


class RejectedBySes(PermanentError):
    """SES refused this message for good (MessageRejected, unverified identity...)."""


class MailBuildError(BatchFormatError):
    """A mail passed the format's checks but its MIME message could not be built: it fails
    alone."""


class RenderError(MailBuildError):
    """A notify job's template failed for one recipient (undefined variable, sandbox
    refusal, a rendered subject that is no header value): that recipient fails alone."""


class QueueUnavailable(TransientError):
    """SQS could not be reached or did not take every work item."""


class BatchTooLarge(BatchFormatError):
    """A batch file is larger than the sender reads (``store.MAX_BATCH_BYTES``)."""


class BatchUnreadable(BatchFormatError):
    """Reading a batch raised an error nothing else names; the batch is quarantined for a
    person to look at."""
