"""The bad-input tables of notify jobs (format version 2): manifests refused whole, rows
refused alone, and stored parts that do not match their manifest."""

from __future__ import annotations

from chalicelib.errors import BatchFormatError, HeaderInjectionError

JOB_ID = "7d3f0c2a-9b1e-4f5a-8c6d-2e4b1a0f9c01"
JOB_FOLDER = f"jobs/{JOB_ID}/"
MANIFEST_KEY = JOB_FOLDER + "manifest.json"
# The example job as it lies in the bucket, under fixtures/.
EXAMPLE_JOB = "jobs/new-post/" + JOB_FOLDER

# (fixture under fixtures/jobs/bad/, error class, field, words of the reason): each is
# parsed as if uploaded at MANIFEST_KEY.
BAD_MANIFESTS = [
    ("not-json", BatchFormatError, "(file)", "looks truncated"),
    ("not-utf8", BatchFormatError, "(file)", "not UTF-8"),
    ("version-1", BatchFormatError, "version", "expected version 2"),
    ("wrong-kind", BatchFormatError, "kind", "must be same as const definition: notify"),
    ("missing-template", BatchFormatError, "(manifest)", "template"),
    ("job-id-not-its-folder", BatchFormatError, "job_id",
     "must be jobs/another-job/manifest.json"),
    ("part-outside-job-folder", BatchFormatError, "parts[1].key", f"not in {JOB_FOLDER}"),
    ("part-listed-twice", BatchFormatError, "parts[1].key", "is listed twice"),
    ("recipients-not-the-sum", BatchFormatError, "recipients",
     "6 recipients, but the parts hold 5 rows"),
    ("part-sha256-not-hex", BatchFormatError, "parts[0].sha256", "must match pattern"),
    ("malformed-from", BatchFormatError, "meta.from", "malformed address"),
    ("reply-to-injection", HeaderInjectionError, "meta.reply_to[0]", "CR or LF"),
    ("reserved-header", BatchFormatError, "meta.headers[1].name", "Bcc is set from"),
    # The sender builds a list job's unsubscribe headers per recipient (unsubscribe.py).
    ("list-sets-list-unsubscribe", BatchFormatError, "meta.headers[1].name",
     "built by the sender for a job that names a list"),
    ("unsubscribe-mailto-without-list", BatchFormatError, "meta.unsubscribe_mailto",
     "only with meta.list"),
    ("ledger-tag", BatchFormatError, "meta.tags.postbag-key.name", "set by the sender"),
    ("job-tag", BatchFormatError, "meta.tags.postbag-job.name", "set by the sender"),
    ("cc-in-meta", BatchFormatError, "meta", "must not contain {'cc'}"),
    # Re-drives carry their generation in their work items: a manifest's own would re-send
    # the whole job under the keys of that generation.
    ("redrive-in-manifest", BatchFormatError, "(manifest)", "must not contain {'redrive'}"),
    ("html-syntax-error", BatchFormatError, "template.html", "(line 3)"),
    ("subject-syntax-error", BatchFormatError, "template.subject", "not a jinja2 template"),
    ("text-lone-surrogate", BatchFormatError, "template.text", "lone surrogate"),
    ("attachment-outside-prefix", BatchFormatError, "attachments[0].s3_key",
     "must be under queue/attachments/"),
    ("created-at-not-a-day", BatchFormatError, "created_at", "must be date-time"),
    ("send-at-not-a-time", BatchFormatError, "send_at", "must be date-time"),
]

# (id, the row's line as stored, field, words of the reason): rows that fail alone.
BAD_ROWS = [
    ("not-json", b'{"email": "a@example.net"', "(row)", "not JSON"),
    ("not-an-object", b'["a@example.net"]', "(row)", "expected a JSON object, got list"),
    ("blank-line", b"", "(row)", "not JSON"),
    ("not-utf8", b'{"email": "caf\xe9@example.net"}', "(row)", "not UTF-8"),
    ("nan", b'{"email": "a@example.net", "vars": {"n": NaN}}', "(row)", "NaN"),
    ("no-email", b'{"name": "Ann"}', "(row)", "must contain ['email']"),
    ("unknown-field", b'{"email": "a@example.net", "cc": "b@example.net"}', "(row)",
     "must not contain {'cc'}"),
    ("email-not-an-address", b'{"email": "not-an-address"}', "email", "malformed address"),
    ("email-with-display-name", b'{"email": "Ann <ann@example.net>"}', "email",
     "expected a bare address"),
    ("email-with-comment", b'{"email": "ann@example.net (Ann)"}', "email",
     "expected a bare address"),
    ("two-addresses", b'{"email": "a@example.net, b@example.net"}', "email",
     "expected one mailbox"),
    ("email-injection", b'{"email": "a@example.net\\r\\nBcc: evil@bad.example"}', "email",
     "CR or LF"),
    ("name-injection", b'{"email": "a@example.net", "name": "Ann\\nBcc: evil@bad.example"}',
     "name", "CR or LF"),
    ("name-lone-surrogate", b'{"email": "a@example.net", "name": "\\ud800"}', "name",
     "U+D800"),
    ("name-encoded-word", b'{"email": "a@example.net", "name": "=?utf-8?b?QQ==?="}', "name",
     "encoded word"),
    ("vars-not-an-object", b'{"email": "a@example.net", "vars": [1, 2]}', "vars",
     "must be object"),
    ("user-id-boolean", b'{"email": "a@example.net", "user_id": true}', "user_id",
     "must be integer"),
    ("user-id-zero", b'{"email": "a@example.net", "user_id": 0}', "user_id",
     "must be bigger than or equal to 1"),
    ("unsubscribe-url-http", b'{"email": "a@example.net", "unsubscribe_url": "http://a.example/u"}',
     "unsubscribe_url", "must match pattern"),
    ("unsubscribe-url-second-uri",
     b'{"email": "a@example.net", "unsubscribe_url": "https://a.example/u>, <https://b.example"}',
     "unsubscribe_url", "must match pattern"),  # the schema's printable ASCII, as the sender's
]
