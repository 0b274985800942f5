"""The bad-input tables shared by the parser's tests and the handler's: each row
names the fixture under ``fixtures/batches/bad/``, the field and the reason."""

from __future__ import annotations

from chalicelib.errors import BatchFormatError, HeaderInjectionError

# (fixture, error class, field, words of the reason): batches refused whole.
BAD_BATCHES = [
    ("not-json", BatchFormatError, "(file)", "not JSON"),
    ("truncated", BatchFormatError, "(file)", "truncated"),
    ("not-utf8", BatchFormatError, "(file)", "not UTF-8"),
    ("unknown-version", BatchFormatError, "version", "unknown format version 3"),
    ("missing-batch-id", BatchFormatError, "(batch)", "batch_id"),
    ("emails-not-a-list", BatchFormatError, "emails", "must be array"),
    ("empty-emails", BatchFormatError, "emails", "at least 1"),
    ("malformed-from", BatchFormatError, "meta.from", "malformed address"),
    ("header-injection-custom-header", HeaderInjectionError, "meta.headers[2].value", "CR or LF"),
    ("header-injection-reply-to", HeaderInjectionError, "meta.reply_to[0]", "CR or LF"),
    ("reserved-custom-header", BatchFormatError, "meta.headers[2].name", "Bcc is set from"),
    # A batch that names a list carries both RFC 8058 headers the plugin built (unsubscribe.py).
    ("list-without-one-click", BatchFormatError, "meta.headers",
     "List-Unsubscribe-Post: List-Unsubscribe=One-Click header is required"),
    ("list-unsubscribe-not-https", BatchFormatError, "meta.headers[1].value", "<https://...>"),
]


# A From not in POSTBAG_ALLOWED_SENDERS is not among them: the batch parses and
# each of its mails fails, for re-drive (tests/functional/test_sender_app.py).
FROM_NOT_ALLOWED = ("from-not-allowed", "meta.from", "From mallory@evil.example is not in")


# (fixture, field of the second mail, words of the reason)
BAD_MAILS = [
    ("mail-malformed-to", "emails[1].to[0]", "malformed address"),
    ("mail-to-wrong-type", "emails[1].to", "must be array"),
    ("mail-missing-subject", "emails[1]", "subject"),
    ("mail-subject-injection", "emails[1].subject", "CR or LF"),
    ("mail-too-many-recipients", "emails[1].to", "more than 50 recipients"),
    ("mail-refused-attachment-type", "emails[1].attachments[0].filename", "refuses .exe"),
    ("mail-attachment-not-base64", "emails[1].attachments[0].content_base64", "not base64"),
    ("mail-attachment-outside-prefix", "emails[1].attachments[0].s3_key", "queue/attachments/"),
    ("mail-duplicate-id", "emails[1].id", "duplicate mail id"),
    ("mail-no-recipient", "emails[1].to", "no recipient in to, cc or bcc"),
]
