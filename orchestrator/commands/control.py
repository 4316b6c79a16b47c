"""`atelier resume`, `cancel` and `retry`: thin commands over orchestrator.jobs.control."""

from __future__ import annotations

import click

from orchestrator.commands.common import pass_lab
from orchestrator.jobs import control


@click.command("resume")
@pass_lab
def resume_cmd(lab) -> None:
    """Re-enqueue every queued job and every running job whose worker is gone.

    Safe to run any time: a job runs once, because a worker must claim its row first.
    """
    sent, recovered = control.resume(lab)
    click.echo(f"re-enqueued {sent} job(s) ({recovered} recovered from lost workers)")


@click.command("cancel")
@click.argument("ref")
@pass_lab
def cancel_cmd(lab, ref) -> None:
    """Cancel a sweep, a style batch or a job: queued jobs never start, running ones stop at the next epoch or chunk."""
    done = control.cancel(lab, ref)
    ended = done.found - len(done.changed)
    click.echo(f"{done.name}: cancelled {len(done.changed)} job(s) ({ended} had already ended)")
    if done.note:
        click.echo(f"note: {done.note}", err=True)


@click.command("retry")
@click.argument("ref")
@click.option("--failed", "only_failed", is_flag=True, required=True, help="Re-run the failed (and cancelled) jobs.")
@pass_lab
def retry_cmd(lab, ref, only_failed) -> None:
    """Re-run the jobs of a sweep, batch or job that failed; finished ones are kept."""
    done = control.retry(lab, ref)
    click.echo(f"{done.name}: re-queued {len(done.changed)} job(s)")


COMMANDS = [resume_cmd, cancel_cmd, retry_cmd]
