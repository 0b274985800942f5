"""Rendering a notify job per recipient: jinja2's sandbox, escaping, and failures that
stay with one recipient."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from conftest import fixture_bytes
from support.bad_jobs import EXAMPLE_JOB, MANIFEST_KEY

from chalicelib.errors import BatchFormatError, MailBuildError, RenderError
from chalicelib.formats.v2 import parse_manifest, read_rows
from chalicelib.model import Recipient, Template
from chalicelib.render import Renderer, compile_templates


@pytest.fixture
def job(settings):
    return parse_manifest(fixture_bytes("jobs/new-post/" + MANIFEST_KEY), MANIFEST_KEY, settings)


def _with(job, subject="Hi", html="<p>Hi</p>", text=None, context=None, job_id=None):
    return dataclasses.replace(
        job, template=Template(subject, html, text), context=context or {},
        job_id=job_id or job.job_id,
    )


ZOE = Recipient(row=0, email="zoe@example.net", name="Zoë", user_id=12)


def test_the_example_job_renders_for_every_row(job):
    renderer = Renderer()
    mails = []
    for index, name in enumerate(["part-00001.ndjson.gz", "part-00002.ndjson.gz"]):
        rows, bad = read_rows(fixture_bytes(EXAMPLE_JOB + name), index, 0, 10, name)
        assert bad == []
        mails += [renderer.render(job, row, f"m{index}-{row.row}") for row in rows]
    assert len(mails) == 5
    zoe = mails[0]
    assert zoe.to == (("Zoë Durand", "zoe@example.net"),)
    assert zoe.subject == "New post: Café culture & <tags>", "the subject is not HTML"
    assert "Café culture &amp; &lt;tags&gt;" in zoe.html
    assert "<p>New followers: Ana, Bo</p>" in zoe.html
    assert zoe.text == ("Hi Zoë Durand,\n\nCafé culture & <tags> is out: "
                        "https://blog.example.org/?p=42")
    assert "Hi there," in mails[1].html, "a row without a name"
    assert "New followers" not in mails[1].html, "the context's default, [], applies"
    dee = mails[4]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dee.html and "<script>" not in dee.html
    assert "Dee O&#39;Neil" in dee.html


def test_later_names_win_context_then_vars_then_recipient(job):
    job = _with(job, html="{{ who }} {{ recipient.email }}", text="{{ who }}",
                context={"who": "context", "recipient": "context"})
    mail = Renderer().render(job, dataclasses.replace(ZOE, vars={"who": "vars"}), "m")
    assert mail.html == "vars zoe@example.net" and mail.text == "vars"


def test_text_is_made_from_the_rendered_html_when_absent(job):
    job = _with(job, html='<p>Hi {{ recipient.name }},</p><p><a href="{{ url }}">read</a></p>',
                context={"url": "https://blog.example.org/?p=1"})
    mail = Renderer().render(job, ZOE, "m")
    assert mail.text == "Hi Zoë,\n\nread (https://blog.example.org/?p=1)\n"


def test_html_escapes_variables_subject_and_text_do_not(job):
    job = _with(job, subject="{{ t }}", html="<b>{{ t }}</b>{{ safe_html | safe }}",
                text="{{ t }}", context={"t": "<script>x</script> & \"q\"",
                                        "safe_html": "<i>ok</i>"})
    mail = Renderer().render(job, ZOE, "m")
    assert mail.html == "<b>&lt;script&gt;x&lt;/script&gt; &amp; &#34;q&#34;</b><i>ok</i>"
    assert mail.subject == mail.text == "<script>x</script> & \"q\""


def test_non_ascii_everywhere(job):
    job = _with(job, subject="Nouveauté : {{ t }} ☕", html="<p>{{ recipient.name }}</p>",
                context={"t": "Café"})
    recipient = Recipient(row=0, email="chen@xn--bcher-kva.example", name="陈伟")
    mail = Renderer().render(job, recipient, "m")
    assert mail.subject == "Nouveauté : Café ☕"
    assert mail.to == (("陈伟", "chen@xn--bcher-kva.example"),)
    assert mail.html == "<p>陈伟</p>"


def test_the_mail_carries_the_jobs_attachments(job):
    from chalicelib.model import Attachment

    attachment = Attachment("a.pdf", "application/pdf", s3_key="queue/attachments/a.pdf")
    job = dataclasses.replace(job, attachments=(attachment,))
    assert Renderer().render(job, ZOE, "m").attachments == (attachment,)


# (id, template field, its source, words of the reason): each fails that recipient alone.
REFUSED = [
    ("class-mro", "template.html", "{{ ''.__class__.__mro__ }}", "__class__"),
    ("cycler-globals", "template.html", "{{ cycler.__init__.__globals__ }}", "__init__"),
    ("underscore-attribute", "template.html", "{{ recipient._secret }}", "_secret"),
    ("format-string", "template.html", "{{ '{0.__class__}'.format(recipient) }}",
     "__class__"),
    ("format-map", "template.text", "{{ '{x.__class__}'.format_map({'x': 1}) }}",
     "__class__"),
    ("huge-range", "template.html", "{% for i in range(10**9) %}{{ i }}{% endfor %}",
     "Range too big"),
    ("huge-repeat", "template.html", "{{ 'x' * 10**9 }}", "repetition longer"),
    ("huge-list-repeat", "template.html", "{{ [1] * 2000000 }}", "repetition longer"),
    ("huge-power", "template.subject", "{{ 10 ** 100000000 }}", "exponent above"),
    ("lipsum-gone", "template.html", "{{ lipsum(100000) }}", "lipsum"),
    ("missing-variable", "template.html", "{{ nobody_set_this }}", "nobody_set_this"),
    ("missing-in-if", "template.text", "{% if maybe %}x{% endif %}", "maybe"),
    ("template-raises", "template.html", "{{ 1 // 0 }}", "ZeroDivisionError"),
    ("deep-recursion", "template.html",
     "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "RecursionError"),
    ("subject-crlf-from-variable", "template.subject", "Hi {{ evil }}", "CR or LF"),
    ("subject-encoded-word", "template.subject", "=?utf-8?b?QQ==?= {{ 1 }}", "encoded word"),
    ("lone-surrogate-in-body", "template.html", "{{ lone }}", "lone surrogate"),
    ("nul-in-text", "template.text", "{{ nul }}", "NUL"),
    ("list-append", "template.html", "{{ seen.append(1) }}", "append"),
    ("dict-update", "template.text", "{{ post.update({'x': 1}) }}", "update"),
    ("dict-setdefault", "template.subject", "{{ post.setdefault('x', 1) }}", "setdefault"),
]


@pytest.mark.parametrize("name, field, source, reason", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_render_fails_one_recipient_with_the_field(job, name, field, source, reason):
    templates = {"subject": "Hi", "html": "<p>Hi</p>", "text": "Hi"}
    templates[field.removeprefix("template.")] = source
    job = _with(job, **templates, context={
        "evil": "you\r\nBcc: victim@example.net", "lone": "\ud800", "nul": "a\0b",
        "seen": [], "post": {},
    })
    renderer = Renderer()
    with pytest.raises(RenderError) as caught:
        renderer.render(job, ZOE, "mail-7")
    error = caught.value
    assert isinstance(error, MailBuildError), "the engine fails a MailBuildError's mail alone"
    assert (error.field, error.batch, error.mail) == (field, job.job_id, "mail-7")
    assert reason in error.reason
    other = Recipient(row=1, email="bob@example.net", vars={"nobody_set_this": 1,
                                                          "maybe": False})
    if name in ("missing-variable", "missing-in-if"):
        assert renderer.render(job, other, "mail-8").id == "mail-8", "others still render"


def test_one_recipients_data_never_reaches_another_recipients_mail(job):
    job = _with(job, html='{{ post.seen.append(recipient.email) or "" }}'
                '{{ post.seen|join(",") }}', context={"post": {"seen": []}})
    renderer = Renderer()
    with pytest.raises(RenderError):
        renderer.render(job, ZOE, "m1")
    other = Recipient(row=1, email="bob@example.net")
    with pytest.raises(RenderError):
        renderer.render(job, other, "m2")
    assert job.context == {"post": {"seen": []}}


def test_a_job_whose_templates_changed_renders_the_new_ones(job):
    renderer = Renderer()
    assert renderer.render(_with(job, html="old"), ZOE, "m").html == "old"
    assert renderer.render(_with(job, html="new"), ZOE, "m").html == "new", "re-uploaded"


def test_bounded_operators_still_work_within_bounds(job):
    job = _with(job, html="{{ '-' * 3 }}{{ [0] * 2 }}{{ 2 ** 10 }}{{ 3 * 4 }}")
    assert Renderer().render(job, ZOE, "m").html == "---[0, 0]102412"


def test_a_syntax_error_names_the_template_and_line():
    with pytest.raises(BatchFormatError) as caught:
        compile_templates(Template("ok", "<p>\n{{ x }}\n{% for %}"), "job-1")
    assert caught.value.field == "template.html"
    assert "(line 3)" in caught.value.reason and caught.value.batch == "job-1"


def test_templates_are_compiled_once_per_job_and_the_cache_is_bounded(job):
    renderer = Renderer(jobs_cached=2)
    first = renderer.compiled(job)
    assert renderer.compiled(job) is first
    for other in ("b", "c"):
        renderer.compiled(_with(job, job_id=other))
    assert renderer.compiled(job) is not first, "the least recently used job was dropped"


def test_one_renderer_serves_threads(job):
    renderer, mails, errors = Renderer(), [], []

    def work(n: int) -> None:
        try:
            recipient = dataclasses.replace(ZOE, name=f"N{n}")
            mails.append(renderer.render(job, recipient, f"m{n}"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(mails) == 16
    assert {m.to[0][0] for m in mails} == {f"N{n}" for n in range(16)}
