"""A notify job's templates, rendered for one recipient into a ``Mail``.

Templates come from the site (``postbag_notify()``); variables from the job's
``context`` and from each recipient's row. Both are untrusted as far as the
sender goes, so templates run only in jinja2's ``ImmutableSandboxedEnvironment``:
no attribute starting with ``_``, no ``str.format`` escape, no unsafe callables,
and no method that changes a list, dict or set (``append``, ``update``...): the
job's context is one object shared by every recipient, thread and chunk of an
instance, and a template that could write to it could put one recipient's data
in another's mail.

What bounds render time and memory (``tests/unit/test_render.py`` checks each):

- ``range()`` makes at most ``MAX_RANGE`` (100,000) items (jinja2's sandbox);
- ``*`` and ``**`` are intercepted: no string or list longer than
  ``MAX_REPEAT_LENGTH`` items, no power with an exponent above ``MAX_EXPONENT``;
- ``lipsum`` (which writes any number of paragraphs) is not offered.

Loops nested inside loops are not bounded by the sandbox (100,000² iterations
are possible): the templates are the site's own code, not its visitors', and
the Lambda's timeout is the last bound. A recipient's variables are data and
never run as a template.
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment, SecurityError

from chalicelib import fields
from chalicelib.errors import BatchFormatError, RenderError
from chalicelib.html_text import html_to_text
from chalicelib.model import Mail, NotifyJob, Recipient, Template

# Jobs whose compiled templates an instance keeps: a fan-out instance works on
# a few jobs at a time, and a compiled template is a few KB of Python code.
JOBS_CACHED = 16
MAX_REPEAT_LENGTH = 1_000_000
MAX_EXPONENT = 1_000


def _bounded_repeat(left: Any, right: Any) -> Any:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
            if len(sequence) * max(count, 0) > MAX_REPEAT_LENGTH:
                raise SecurityError(f"a repetition longer than {MAX_REPEAT_LENGTH:,} items")
    return operator.mul(left, right)


def _bounded_power(base: Any, exponent: Any) -> Any:
    if isinstance(exponent, (int, float)) and abs(exponent) > MAX_EXPONENT:
        raise SecurityError(f"an exponent above {MAX_EXPONENT:,}")
    return operator.pow(base, exponent)


class _Sandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox, with the operators that can take unbounded memory or time
    bounded."""

    intercepted_binops = frozenset({"*", "**"})
    _BINOPS = {"*": _bounded_repeat, "**": _bounded_power}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator in self._BINOPS:
            return self._BINOPS[operator](left, right)
        return super().call_binop(context, operator, left, right)


def _environment(autoescape: bool) -> SandboxedEnvironment:
    env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=autoescape)
    env.globals.pop("lipsum", None)
    return env


# One environment per escaping rule: HTML escapes what variables bring in, the
# subject and the text part are not HTML and take them as they are.
_HTML = _environment(autoescape=True)
_PLAIN = _environment(autoescape=False)


@dataclass(frozen=True)
class Compiled:
    """A job's templates, compiled once."""

    subject: jinja2.Template
    html: jinja2.Template
    text: jinja2.Template | None


def _compile(env: SandboxedEnvironment, source: str, field: str, job: str) -> jinja2.Template:
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise BatchFormatError(
            field, job, f"not a jinja2 template: {exc.message} (line {exc.lineno})"
        ) from exc
    except Exception as exc:  # jinja's compiler on input it did not foresee (deep nesting)
        raise BatchFormatError(
            field, job, f"cannot compile it: {type(exc).__name__}: {exc}"
        ) from exc


def compile_templates(template: Template, job: str) -> Compiled:
    """The compiled templates; ``BatchFormatError`` naming ``template.<name>`` and jinja's
    line for one that does not compile (``job`` names the job in the error)."""
    return Compiled(
        subject=_compile(_PLAIN, template.subject, "template.subject", job),
        html=_compile(_HTML, template.html, "template.html", job),
        text=(None if template.text is None
              else _compile(_PLAIN, template.text, "template.text", job)),
    )


# What templates see before any variable: range, dict, cycler, joiner, namespace.
_GLOBALS = dict(_PLAIN.globals)


def _variables(job: NotifyJob, recipient: Recipient) -> dict[str, Any]:
    # Later names win: the globals, the job's context, the recipient's own, then who they are.
    person = {"email": recipient.email, "name": recipient.name, "user_id": recipient.user_id}
    return {**_GLOBALS, **job.context, **recipient.vars, "recipient": person,
            "unsubscribe_url": recipient.unsubscribe_url}


def _run(template: jinja2.Template, variables: dict[str, Any], field: str, job: str,
         mail_id: str) -> str:
    """One template rendered; whatever it raises fails this recipient alone."""
    try:
        # Template.render without its copy of the globals into every context (a third of
        # the render time): ``variables`` holds them already, and no template writes it.
        context = template.new_context(variables, shared=True)
        return str(template.environment.concat(template.root_render_func(context)))
    except jinja2.TemplateError as exc:  # undefined variable, sandbox refusal, raise()
        reason = f"{type(exc).__name__}: {exc.message or exc}"
    except Exception as exc:  # the template's own code failing: 1/0, int('x'), recursion
        reason = f"the template raised {type(exc).__name__}: {exc}"
    raise RenderError(field, job, reason, mail_id)


def _checked(check: Any, value: str, field: str, job: str, mail_id: str) -> str:
    """``value`` through a ``fields`` check, its refusal as this recipient's ``RenderError``."""
    try:
        check(value, field, job, mail_id)
    except BatchFormatError as exc:
        raise RenderError(field, job, exc.reason, mail_id) from exc
    return value


class Renderer:
    """Renders mails of notify jobs; one per Lambda instance, safe to share between threads."""

    def __init__(self, jobs_cached: int = JOBS_CACHED):
        self._size = jobs_cached
        # Keyed by the templates too: a re-uploaded manifest (another ETag) may change them.
        self._compiled: OrderedDict[tuple[str, Template], Compiled] = OrderedDict()
        self._lock = threading.Lock()

    def compiled(self, job: NotifyJob) -> Compiled:
        """``job``'s templates, compiled on first use and kept for the last few jobs."""
        key = (job.job_id, job.template)
        with self._lock:
            found = self._compiled.get(key)
            if found is not None:
                self._compiled.move_to_end(key)
                return found
        compiled = compile_templates(job.template, job.job_id)
        with self._lock:
            self._compiled[key] = compiled
            while len(self._compiled) > self._size:
                self._compiled.popitem(last=False)
        return compiled

    def render(self, job: NotifyJob, recipient: Recipient, mail_id: str) -> Mail:
        """The mail for ``recipient``; ``RenderError`` (naming the template field, the job
        and ``mail_id``) when a template fails for this recipient."""
        templates = self.compiled(job)
        variables = _variables(job, recipient)
        jid = job.job_id
        subject = _run(templates.subject, variables, "template.subject", jid, mail_id)
        _checked(fields.header_value, subject, "template.subject", jid, mail_id)
        html = _run(templates.html, variables, "template.html", jid, mail_id)
        _checked(fields.body, html, "template.html", jid, mail_id)
        if templates.text is not None:
            text = _run(templates.text, variables, "template.text", jid, mail_id)
        else:
            text = html_to_text(html)
        _checked(fields.body, text, "template.text", jid, mail_id)
        return Mail(
            id=mail_id,
            to=((recipient.name, recipient.email),),
            subject=subject,
            html=html,
            text=text,
            attachments=job.attachments,
        )
