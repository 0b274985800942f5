"""postbag: the operator's tool. Provision a stage, wire it after `chalice deploy`,
look at it, re-drive failed mail, send and follow notify jobs, tear it down.

    postbag provision --stage prod --bucket my-site-mail --region eu-west-1 \\
        --sender-identity example.org --alarm-email ops@example.org --create-wp-user
    (cd chalice_app && ../.venv/bin/chalice deploy --stage prod)
    postbag wire --stage prod
    postbag notify new-post.json --stage prod      # prints the job id
    postbag status --stage prod --job JOB_ID
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import PostbagError
from postbag import chalice_config
from postbag.aws import Aws, CommandError
from postbag.report import Report
from postbag.resources import failure_queue, queues
from postbag.resources.bucket import Retention
from postbag.stack import Stack

STAGE = re.compile(r"^[a-z0-9][a-z0-9-]{0,29}$")
# Skipped rows of `postbag notify` printed one by one; the rest are counted.
SHOW_SKIPPED = 20


def stage_name(value: str) -> str:
    """Stages name every resource (``postbag-<stage>-...``): keep them valid everywhere."""
    if not STAGE.match(value):
        raise argparse.ArgumentTypeError(
            "a stage is 1-30 lower-case letters, digits or hyphens, e.g. prod"
        )
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stage", required=True, type=stage_name, help="Chalice stage, e.g. dev or prod"
    )
    parser.add_argument("--region", help="AWS region (default: AWS_DEFAULT_REGION)")
    parser.add_argument(
        "--chalice-dir",
        type=Path,
        default=chalice_config.CHALICE_DIR,
        help="the Chalice project (default: %(default)s)",
    )
    parser.add_argument(
        "--bucket",
        help="the batch bucket (default: the stage's POSTBAG_BUCKET in the generated "
        ".chalice/config.json; "
        "provision needs it the first time)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postbag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _provision_parser(commands)
    wire = commands.add_parser(
        "wire", help="after `chalice deploy`: set the functions' on-failure destination"
    )
    _common(wire)
    status = commands.add_parser(
        "status",
        help="count queued, failed and quarantined batches, notify work items; SES events "
        "on or off; or one job's progress",
    )
    _common(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--job", type=_job_id, help="print this notify job's status document")
    _job_parsers(commands)
    redrive = commands.add_parser("redrive", help="send failed mail again, once the cause is fixed")
    _common(redrive)
    which = redrive.add_mutually_exclusive_group()
    which.add_argument("--batch", help="only this batch id (default: every failed batch)")
    which.add_argument(
        "--job", type=_job_id, help="instead, queue this notify job's failed recipients again"
    )
    which.add_argument(
        "--failed-invocations",
        action="store_true",
        help="instead, deliver again the events in the failure queue (invocations Lambda "
        "gave up on after its retries)",
    )
    _suppression_parser(commands)
    _schedule_parsers(commands)
    teardown = commands.add_parser("teardown", help="remove what provision created")
    _common(teardown)
    teardown.add_argument(
        "--force", action="store_true",
        help="also delete unsent, held, queued, failed or quarantined mail and the "
             "suppression list"
    )
    return parser


def _job_id(value: str) -> str:
    from postbag.jobs import job_id

    try:
        return job_id(value)
    except CommandError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _job_parsers(commands: argparse._SubParsersAction) -> None:
    notify = commands.add_parser(
        "notify", help="send one notification to many recipients (a job spec file)"
    )
    notify.add_argument(
        "file", type=Path, metavar="FILE",
        help="job spec: meta, template, context and recipients (a list, or a CSV or NDJSON "
        "file's path); see docs/deploy.md",
    )
    _common(notify)
    cancel = commands.add_parser(
        "cancel", help="stop a notify job, or a held batch (mail already sent stays sent)")
    _common(cancel)
    _held_item(cancel)


def _held_item(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--job", type=_job_id, help="the job id")
    which.add_argument("--batch", type=_job_id, help="the batch id (a held batch)")


def _schedule_parsers(commands: argparse._SubParsersAction) -> None:
    schedule = commands.add_parser("schedule", help="held batches and jobs (docs/scheduling.md)")
    actions = schedule.add_subparsers(dest="action", required=True, metavar="ACTION")
    shown = actions.add_parser("list", help="what is held, earliest due first")
    _common(shown)
    shown.add_argument("--json", action="store_true", help="print JSON")
    moved = commands.add_parser(
        "reschedule", help="move a held batch or job (earlier, later, or now)")
    _common(moved)
    _held_item(moved)
    when = moved.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", metavar="TIME",
                      help="RFC 3339 with its offset, e.g. 2026-12-07T08:00:00+01:00")
    when.add_argument("--between", nargs=2, metavar=("START", "END"),
                      help="a send window (jobs): spread evenly from START to END")
    when.add_argument("--now", action="store_true", help="send at the drainer's next run")


def _suppression_parser(commands: argparse._SubParsersAction) -> None:
    suppression = commands.add_parser(
        "suppression", help="list, add or remove addresses on the suppression list")
    actions = suppression.add_subparsers(dest="action", required=True, metavar="ACTION")
    shown = actions.add_parser("list", help="address, scope, reason, source and date of each")
    _common(shown)
    shown.add_argument("--json", action="store_true", help="print JSON")
    for action, what in (("add", "never mail ADDRESS again in the scope"),
                         ("remove", "mail ADDRESS again in the scope")):
        change = actions.add_parser(action, help=what)
        _common(change)
        change.add_argument("--scope", default="all", help="all (default) or list:NAME")
        change.add_argument("address", metavar="ADDRESS")


def _provision_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "provision",
        help="create or update the bucket, table, queue, SES events, alarms and IAM for a stage",
    )
    _common(p)
    p.add_argument(
        "--sender-identity", action="append", default=[], metavar="ADDRESS_OR_DOMAIN",
        help="an SES identity the sender may send from (repeat; default: as before)",
    )
    p.add_argument(
        "--configuration-set",
        help="the SES configuration set every mail uses, created if missing, publishing Send "
        "events to the stage's topic (default: as before, else postbag-<stage>)",
    )
    p.add_argument("--reserved-concurrency", type=int, help="the function's reserved concurrency")
    p.add_argument(
        "--max-concurrency", type=int,
        help="notify jobs: fan-out senders SQS may run at once, also their reserved "
        "concurrency (2-1000; default: as before, else 2)",
    )
    p.add_argument("--kms-key", default="", help="SSE-KMS key id, alias or ARN (default: SSE-S3)")
    p.add_argument("--processed-days", type=int, default=7, help="keep sent batches (days)")
    p.add_argument("--failed-days", type=int, default=30,
                   help="keep failed and quarantined batches, and notify jobs (days)")
    p.add_argument("--receipts-days", type=int, default=30, help="keep receipts (days)")
    p.add_argument("--tracking", action="store_true",
                   help="publish SES open and click events (SES then rewrites links and adds a "
                   "pixel; off by default)")
    p.add_argument("--failure-queue-days", type=int, default=14,
                   help="keep messages in the failure queue (days, at most 14)")
    p.add_argument("--work-queue-days", type=int, default=4,
                   help="keep notify work items in the work queue (days, 1-13)")
    p.add_argument("--max-wait-minutes", type=int, default=15,
                   help="alarm when a batch waits longer than this")
    p.add_argument("--max-job-hours", type=int, default=6,
                   help="alarm when a notify job's work waits longer than this in the queue")
    alarm = p.add_mutually_exclusive_group()
    alarm.add_argument("--alarm-email", default="", help="create an SNS topic mailing this address")
    alarm.add_argument("--sns-topic", default="", help="notify this existing SNS topic ARN")
    p.add_argument("--switch-bucket", action="store_true",
                   help="let --bucket replace the stage's bucket (the old one is kept as it is)")
    p.add_argument("--create-wp-user", action="store_true",
                   help="create an IAM user for WordPress and print its key once")
    p.add_argument("--attach-to-role", default="", metavar="ROLE",
                   help="attach the WordPress policy to this role (e.g. the EC2 instance role)")


def _stage_env(args: argparse.Namespace) -> dict[str, str]:
    return chalice_config.stage_env(chalice_config.load(args.chalice_dir), args.stage)


def _configuration_set(args: argparse.Namespace, stack: Stack) -> str:
    """The set the stage sends with, as provisioned (``--configuration-set`` or Postbag's)."""
    return _stage_env(args).get("POSTBAG_DEFAULT_CONFIGURATION_SET") or stack.configuration_set


def _stage_bucket(args: argparse.Namespace) -> str:
    if args.bucket:
        return args.bucket
    env = _stage_env(args)
    if not env.get("POSTBAG_BUCKET"):
        raise CommandError(f"stage {args.stage} has no bucket yet: pass --bucket")
    return env["POSTBAG_BUCKET"]


def _provision_bucket(args: argparse.Namespace) -> str:
    """The stage's bucket; a different --bucket only with --switch-bucket, never silently:
    the old bucket keeps whatever mail it holds (unsent, failed, quarantined)."""
    current = _stage_env(args).get("POSTBAG_BUCKET")
    bucket = _stage_bucket(args)
    if current and bucket != current:
        if not args.switch_bucket:
            raise CommandError(
                f"stage {args.stage} uses bucket {current}, not {bucket}: switching would "
                f"leave {current} and the mail it holds behind. Check it is empty "
                f"(`postbag status --stage {args.stage}`), then pass --switch-bucket "
                f"(and remove {current} yourself), or use another --stage"
            )
        print(f"WARNING: stage {args.stage} moves from bucket {current} to {bucket}; "
              f"{current} is kept as it is: empty and delete it yourself", file=sys.stderr)
    return bucket


def _beside_python(command: str) -> str:
    """``command`` as installed beside this Python (the venv's, without activating it)."""
    beside = Path(sys.executable).parent / command
    return str(beside) if beside.exists() else command


def _chalice_command() -> str:
    return _beside_python("chalice")


def _postbag_command() -> str:
    return _beside_python("postbag")




def run_provision(args: argparse.Namespace, aws: Aws) -> None:
    from postbag.provision import Options, provision

    opts = Options(
        stage=args.stage,
        bucket=_provision_bucket(args),
        chalice_dir=args.chalice_dir,
        senders=[s.strip().lower() for s in args.sender_identity],
        configuration_set=args.configuration_set,
        reserved_concurrency=args.reserved_concurrency,
        max_concurrency=args.max_concurrency,
        kms_key=args.kms_key,
        retention=Retention(args.processed_days, args.failed_days, args.receipts_days),
        failure_queue_days=args.failure_queue_days,
        tracking=args.tracking,
        work_queue_days=args.work_queue_days,
        max_wait_minutes=args.max_wait_minutes,
        max_job_hours=args.max_job_hours,
        alarm_email=args.alarm_email,
        sns_topic=args.sns_topic,
        create_wp_user=args.create_wp_user,
        attach_to_role=args.attach_to_role,
    )
    print(f"Provisioning stage {args.stage} in {aws.region}:", file=sys.stderr)
    outcome = provision(aws, opts, Report())
    print("\nIAM policy for the WordPress side:\n" + json.dumps(outcome.wordpress_policy, indent=2))
    shown = "POSTBAG_AWS_SECRET_ACCESS_KEY" in outcome.wp_config
    print("\nPaste into wp-config.php"
          + (" (credentials are shown this once only):\n" if shown else ":\n"))
    print(outcome.wp_config)
    print("Next, deploy the functions and wire their failure destination:\n"
          f"  (cd {args.chalice_dir} && AWS_DEFAULT_REGION={aws.region} "
          f"{_chalice_command()} deploy --stage {args.stage})\n"
          f"  {_postbag_command()} wire --stage {args.stage} --region {aws.region}")


def _stack(args: argparse.Namespace, aws: Aws, bucket: str = "") -> Stack:
    return Stack(args.stage, aws.region, bucket or _stage_bucket(args), aws.account())


def run_wire(args: argparse.Namespace, aws: Aws) -> None:
    from postbag.wire import wire

    wire(aws.client("lambda"), _stack(args, aws), Report())


def run_status(args: argparse.Namespace, aws: Aws) -> None:
    from postbag.status import status

    if args.job:
        from postbag import jobs

        settings = chalice_config.stage_settings(chalice_config.load(args.chalice_dir), args.stage)
        document = jobs.status(
            aws.client("s3"), aws.client("dynamodb"), settings, _stage_bucket(args), args.job
        )
        print(json.dumps(document, indent=None if args.json else 2, ensure_ascii=False))
        return
    stack = _stack(args, aws)
    counts = status(
        aws.client("s3"), aws.client("sqs"), aws.client("ses"), stack,
        _configuration_set(args, stack),
    )
    if args.json:
        print(json.dumps(counts))
        return
    for name, count in counts.items():
        print(f"{name.replace('_', ' '):<18} {'-' if count is None else count}")


def run_redrive(args: argparse.Namespace, aws: Aws) -> None:
    from chalicelib.observe import logger
    from chalicelib.redrive import redrive

    # The sender logs JSON lines to stdout (Lambda's log stream); here stdout
    # carries the re-driven keys, so its log goes to stderr.
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(sys.stderr)
    try:
        if args.failed_invocations:
            stack = _stack(args, aws)
            keys = failure_queue.redrive_invocations(
                aws.client("sqs"), aws.client("lambda"), stack
            )
        elif args.job:
            keys = _redrive_job(args, aws)
        else:
            keys = redrive(aws.client("s3"), _stage_bucket(args), batch_id=args.batch)
    finally:
        # The logger is the process's: leave it as it was (a caller may close stderr).
        handler.setStream(previous)
    for key in keys:
        print(key)
    # The result on stdout, after the keys: what a script or an operator reads.
    print(f"re-driven: {len(keys)}")


def _redrive_job(args: argparse.Namespace, aws: Aws) -> list[str]:
    """The job's failed recipients back on the stage's work queue, one line per work item."""
    from chalicelib.redrive import redrive_job
    from chalicelib.workqueue import WorkQueue

    bucket = _stage_bucket(args)
    sqs = aws.client("sqs")
    name = Stack(args.stage, aws.region, bucket).work_queue
    url = queues.find_url(sqs, name)
    if url is None:
        raise CommandError(f"no work queue {name}: run `postbag provision` first")
    items = redrive_job(aws.client("s3"), WorkQueue(sqs, url), bucket, args.job)
    return [f"{item.job_id} redrive {item.redrive}: {len(item.rows)} recipient(s)"
            for item in items]


def run_notify(args: argparse.Namespace, aws: Aws) -> None:
    from postbag.notify import notify, sender_checks

    # Which bucket first: a stage without one fails before the file is read.
    bucket = _stage_bucket(args)
    checks = sender_checks(chalice_config.stage_settings(
        chalice_config.load(args.chalice_dir), args.stage))
    outcome = notify(aws.client("s3"), bucket, args.file, *checks)
    for reason in outcome.skipped[:SHOW_SKIPPED]:
        print(f"skipped {reason}", file=sys.stderr)
    if len(outcome.skipped) > SHOW_SKIPPED:
        print(f"... and {len(outcome.skipped) - SHOW_SKIPPED} more", file=sys.stderr)
    print(
        f"job {outcome.job_id}: {outcome.recipients} recipient(s) in {outcome.parts} part(s), "
        f"{len(outcome.skipped)} row(s) skipped; s3://{bucket}/{outcome.manifest_key}\n"
        f"follow it: postbag status --stage {args.stage} --job {outcome.job_id}",
        file=sys.stderr,
    )
    print(outcome.job_id)


def run_cancel(args: argparse.Namespace, aws: Aws) -> None:
    from postbag import jobs, schedules

    bucket = _stage_bucket(args)
    if args.batch:
        key = schedules.cancel_batch(aws.client("s3"), bucket, args.batch)
        print(f"cancel requested: s3://{bucket}/{key} (a batch already released is not "
              f"called back: see its receipt)", file=sys.stderr)
        return
    key = jobs.cancel(aws.client("s3"), bucket, args.job)
    print(f"cancelled: s3://{bucket}/{key} (mail already sent stays sent)", file=sys.stderr)


def run_schedule(args: argparse.Namespace, aws: Aws) -> None:
    from postbag import schedules

    settings = chalice_config.stage_settings(chalice_config.load(args.chalice_dir), args.stage)
    print(schedules.listing(aws.client("dynamodb"), aws.client("s3"), settings,
                            _stage_bucket(args), args.json))


def run_reschedule(args: argparse.Namespace, aws: Aws) -> None:
    from postbag import schedules

    bucket = _stage_bucket(args)
    kind, ident = ("batch", args.batch) if args.batch else ("job", args.job)
    key = schedules.reschedule(aws.client("s3"), bucket, kind, ident, args.at,
                               tuple(args.between) if args.between else None)
    print(f"reschedule requested: s3://{bucket}/{key} (refused by the sender if it was "
          f"released already: `postbag schedule list` shows what is held)", file=sys.stderr)


def run_suppression(args: argparse.Namespace, aws: Aws) -> None:
    from postbag import suppression

    settings = chalice_config.stage_settings(chalice_config.load(args.chalice_dir), args.stage)
    dynamodb = aws.client("dynamodb")
    if args.action == "list":
        print(suppression.listing(dynamodb, settings, args.json))
        return
    changed = suppression.change(dynamodb, settings, args.action, args.scope, args.address)
    verb = "added to" if args.action == "add" else "removed from"
    print(f"{args.address} {verb} {args.scope}" if changed
          else f"{args.address}: a change as new or newer is recorded already", file=sys.stderr)


def run_teardown(args: argparse.Namespace, aws: Aws) -> None:
    from postbag.teardown import teardown

    print(f"Tearing down stage {args.stage} in {aws.region}:", file=sys.stderr)
    stack = _stack(args, aws)
    teardown(aws, stack, _configuration_set(args, stack), args.force, Report())


COMMANDS = {
    "provision": run_provision,
    "wire": run_wire,
    "status": run_status,
    "redrive": run_redrive,
    "notify": run_notify,
    "cancel": run_cancel,
    "schedule": run_schedule,
    "reschedule": run_reschedule,
    "suppression": run_suppression,
    "teardown": run_teardown,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args, Aws(args.region))
    except CommandError as exc:
        print(f"postbag {args.command}: {exc}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as exc:
        print(f"postbag {args.command}: AWS said: {exc}", file=sys.stderr)
        return 2
    except PostbagError as exc:  # from the sender's own code (re-drive)
        print(f"postbag {args.command}: {exc}", file=sys.stderr)
        return 2 if exc.retryable else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
