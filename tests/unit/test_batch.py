"""The batch stage: valid batches parse, bad ones are refused with the field named."""

from __future__ import annotations

import base64
import binascii

import pytest
from conftest import fixture_bytes, parse_fixture
from support.bad_input import BAD_BATCHES, BAD_MAILS

from chalicelib.errors import SenderNotAllowed
from chalicelib.fields import base64_size
from chalicelib.formats import parse_batch
from chalicelib.pipeline import sender_refused


def test_version_1_batch(settings):
    batch = parse_fixture("batches/plain.json", settings)
    assert batch.batch_id == "0b7e9c1e-5a55-4c1d-9a43-3f1b8f2e7a01"
    assert batch.meta.sender == ("Blog Ünïcode", "news@example.org")
    assert batch.meta.bcc == (("", "archive@example.org"),)
    assert batch.meta.configuration_set == "postbag"
    assert batch.meta.tags == (("site", "blog"), ("source", "new-post"))
    first, second = batch.mails
    assert first.to == (("Zoë Follower", "zoe@example.net"),)
    assert first.subject == "New post: Café culture ☕"
    assert second.to == (("", "bob@example.net"), ("", "carol@example.net"))
    assert second.text is None and second.html.startswith("<p>")
    assert batch.rejected == ()


def test_inline_and_referenced_attachments(settings):
    inline = parse_fixture("batches/with-attachments.json", settings).mails[0].attachments
    assert [a.filename for a in inline] == ["pixel.png", "notes.txt"]
    pixel = fixture_bytes("attachments/pixel.png")
    assert base64.b64decode(inline[0].content_base64) == pixel
    assert inline[0].size == len(pixel)
    reference = parse_fixture("batches/attachment-reference.json", settings)
    referenced = reference.mails[0].attachments[0]
    assert referenced.content_base64 is None
    assert referenced.s3_key.startswith("queue/attachments/")


def test_original_layout_is_read_unchanged(settings):
    batch = parse_fixture("batches/legacy-layout.json", settings)
    assert [m.id for m in batch.mails] == ["m0", "m1"]
    assert batch.mails[0].html == "<p>Sent from a batch in the original layout.</p>"
    assert batch.mails[1].to == (("", "frank@example.net"), ("", "grace@example.net"))
    again = parse_fixture("batches/legacy-layout.json", settings)
    assert again.batch_id == batch.batch_id, "ids come from the bytes, so a re-upload dedupes"


def test_a_mail_to_a_bcc_list_needs_no_to(settings):
    batch = parse_fixture("batches/bcc-only.json", settings)
    assert batch.mails[0].to == ()
    assert len(batch.meta.bcc) == 3


def test_idn_domain_is_encoded(settings):
    data = fixture_bytes("batches/plain.json").replace(
        b"zoe@example.net", "zoe@bücher.example".encode()
    )
    assert parse_batch(data, "idn", settings).mails[0].to[0][1] == "zoe@xn--bcher-kva.example"


# A From not allowed is no format error: the batch parses, and the pipeline fails
# each mail for re-drive (issue 10: quarantine could not be re-driven).
def test_empty_allow_list_refuses_every_sender():
    from chalicelib.config import Settings

    batch = parse_fixture("batches/plain.json", Settings())
    refused = sender_refused(Settings(), batch.meta, batch.batch_id)
    assert isinstance(refused, SenderNotAllowed) and refused.field == "meta.from"
    assert "From news@example.org is not in POSTBAG_ALLOWED_SENDERS" in refused.reason


def test_an_allowed_address_need_not_be_a_whole_domain():
    from chalicelib.config import Settings

    settings = Settings(allowed_senders=("news@example.org",))
    batch = parse_fixture("batches/plain.json", settings)
    assert len(batch.mails) == 2
    assert sender_refused(settings, batch.meta, batch.batch_id) is None


@pytest.mark.parametrize(
    "name, error, field, reason", BAD_BATCHES, ids=[row[0] for row in BAD_BATCHES]
)
def test_bad_batch_is_refused_whole(settings, name, error, field, reason):
    with pytest.raises(error) as caught:
        parse_fixture(f"batches/bad/{name}.json", settings)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert f"batches/bad/{name}.json" in str(caught.value), "the error names the batch"




@pytest.mark.parametrize("name, field, reason", BAD_MAILS, ids=[row[0] for row in BAD_MAILS])
def test_bad_mail_fails_alone(settings, name, field, reason):
    batch = parse_fixture(f"batches/bad/{name}.json", settings)
    assert [m.id for m in batch.mails] == ["6f1c2a8e-1d2b-4c3a-8e9f-000000000001"]
    (rejected,) = batch.rejected
    assert rejected.error.field == field
    assert reason in rejected.error.reason
    assert batch.batch_id in str(rejected.error)


# Every way base64 can be wrong, and right, next to its nearest neighbour.
BASE64_CASES = [
    "", "QQ==", "QUI=", "QUJD", "QUJDRA==", "+/+/", "A", "QQ", "QQ=", "QUJ", "QQ===", "====",
    "=QUJ", "QQ==QQ==", "QU=D", "QUJD\n", "QU JD", "QUJD\r\nQUJD", "QUJ-", "QUJ_", "QUJé",
    "QUJD" * 1000 + "QQ==",
]


def _strict_size(text: str) -> int | None:
    try:
        return len(binascii.a2b_base64(text, strict_mode=True))
    except binascii.Error:
        return None


@pytest.mark.parametrize("text", BASE64_CASES, ids=range(len(BASE64_CASES)))
def test_base64_check_agrees_with_the_strict_decoder(text):
    if not text.isascii():  # binascii refuses str with non-ASCII outright, with ValueError
        assert base64_size(text) is None
        return
    assert base64_size(text) == _strict_size(text)


def test_base64_check_agrees_on_every_length_and_alphabet():
    for length in range(64):
        encoded = base64.b64encode(bytes(range(256))[:length]).decode()
        assert base64_size(encoded) == length
        for bad in "=\n .-_*":
            for at in {0, len(encoded) // 2, max(0, len(encoded) - 1)}:
                mangled = encoded[:at] + bad + encoded[at + 1:]
                assert base64_size(mangled) == _strict_size(mangled), mangled
