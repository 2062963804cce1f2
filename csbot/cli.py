"""The ``csbot`` command line (``python -m csbot``). Every command is a thin layer over the Assistant, the knowledge base,
the registry or the retraining command; errors become one plain sentence and exit code 1.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import sys
from pathlib import Path

import click

from core.config import Settings
from core.errors import CsbotError

GRACEFUL_S = 5  # on stop, requests get this long to finish; live streams (SSE) would otherwise hold the server open


class PlainErrors(click.Group):
    """Turn our domain errors into a one-line message instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CsbotError as err:
            raise click.ClickException(str(err)) from err


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


@click.group(cls=PlainErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(path_type=Path), default=None, help="Folder for the database, index and models [env CSBOT_HOME; default ./var]")
@click.option("--database-url", default=None, help="postgresql://… to keep the data in PostgreSQL [env CSBOT_DATABASE_URL; default: SQLite in home]")
@click.option("-v", "--verbose", is_flag=True, help="Log progress")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, database_url: str | None, verbose: bool) -> None:
    """csbot: a customer-service bot that answers from historical tickets and learns from votes."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    ctx.obj = {"settings": Settings.from_env(home=home, database_url=database_url)}


@cli.command()
@click.option("--host", default=None, help="Address to bind [env CSBOT_HOST; default 127.0.0.1]")
@click.option("--port", type=int, default=None, help="Port [env CSBOT_PORT; default 7860]")
@click.option("--workers", type=int, default=1, show_default=True, help="Server processes sharing the port and the database")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int) -> None:
    """Serve the chat UI, the REST API and the widget on one port. The first start trains a quick model.

    With --workers N, N processes (uvicorn's) each load the models and share one SQLite database (WAL).

    Example: csbot serve --port 7860 --workers 2
    """
    import uvicorn

    from bot.admin import admin_credentials
    from bot.api import create_app
    from csbot.wiring import ensure_ready, open_assistant

    settings = Settings.from_env(home=_settings(ctx).home, database_url=_settings(ctx).database_url or None, host=host, port=port)
    if admin_credentials() is None:
        local = settings.host in ("127.0.0.1", "localhost", "::1")
        click.echo(
            "csbot: admin console and admin API disabled (set CSBOT_ADMIN_USER and CSBOT_ADMIN_PASSWORD)"
            + ("" if local else "; this server is reachable from other machines"),
            err=True,
        )
    parts = ensure_ready(settings, on_step=lambda m: click.echo(f"csbot: {m}", err=True))
    if workers < 1:
        raise click.UsageError("--workers must be at least 1")
    if workers > 1:
        os.environ["CSBOT_HOME"] = str(settings.home)  # the worker processes build their settings from the environment
        os.environ["CSBOT_DATABASE_URL"] = settings.database_url
        click.echo(f"csbot: {workers} workers on http://{settings.host}:{settings.port}/", err=True)
        uvicorn.run(
            "csbot.wiring:app_from_env",
            factory=True,
            workers=workers,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            timeout_graceful_shutdown=GRACEFUL_S,
        )
        return
    assistant = open_assistant(settings, parts).warm_up()
    gc.freeze()  # the models and start-up objects never die: keep them out of every garbage collection (shorter pauses)
    click.echo(f"csbot: serving model {assistant.model_version} on http://{settings.host}:{settings.port}/", err=True)
    uvicorn.run(create_app(assistant), host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=GRACEFUL_S)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--question-col", default="question", show_default=True)
@click.option("--answer-col", default="answer", show_default=True)
@click.option("--intent-col", default=None, help="Column with the intent label, if any")
@click.option("--id-col", default=None, help="Column with your own ticket id, if any")
@click.option("--source", default=None, help="Where the tickets come from (default: the file name)")
@click.pass_context
def ingest(ctx, file: Path, question_col: str, answer_col: str, intent_col: str | None, id_col: str | None, source: str | None) -> None:
    """Add historical tickets from a CSV or JSONL file to the knowledge base and its index.

    Example: csbot ingest tickets.csv --question-col subject --answer-col reply --intent-col category
    """
    from csbot.wiring import open_parts

    report = open_parts(_settings(ctx)).kb.ingest(file, question_col=question_col, answer_col=answer_col, intent_col=intent_col, id_col=id_col, source=source)
    click.echo(report.summary())


@cli.group()
def tickets() -> None:
    """Manage the knowledge base's tickets."""


@tickets.command(name="delete")
@click.argument("ticket_id", type=int)
@click.pass_context
def tickets_delete(ctx, ticket_id: int) -> None:
    """Remove a ticket from the knowledge base and its index (no rebuild).

    Example: csbot tickets delete 1533
    """
    from csbot.wiring import open_parts

    if not open_parts(_settings(ctx)).kb.delete(ticket_id):
        raise click.ClickException(f"there is no ticket {ticket_id}")
    click.echo(f"deleted ticket {ticket_id}")


@cli.command()
@click.argument("message")
@click.option("--session", default=None, help="Continue this session id")
@click.pass_context
def ask(ctx, message: str, session: str | None) -> None:
    """Print the bot's Reply to one message as JSON.

    Example: csbot ask "I lost my card, what do I do?"
    """
    from csbot.wiring import open_assistant

    _echo_json(open_assistant(_settings(ctx)).respond(message, session).to_dict())


@cli.command()
@click.option("--from-feedback", is_flag=True, help="Add examples from customers' votes and reviewers' corrections")
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimiser steps")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--quick", is_flag=True, help="Train only the classifier head on a frozen encoder (about a minute)")
@click.option(
    "--context-pairs",
    is_flag=True,
    help="Also train on follow-ups made from the tickets (measured: +1.2 points on test follow-ups, -2.5 on dev, -1.0 alone: README)",
)
@click.option(
    "--followup-pairs",
    type=int,
    default=None,
    help="Follow-ups made from the tickets that the follow-up reader learns from, beside the bundled and labelled ones "
    "(default: 6000 for a fine-tuned model, training.context_pairs.READER_PAIRS; with --quick, CSBOT_FIRST_READER_PAIRS "
    "as at a first start, 6000; 0: no reader)",
)
@click.option("--from-base", is_flag=True, help="Start from the packaged encoder instead of the serving model (a full retrain on everything)")
@click.option(
    "--no-interpolate",
    is_flag=True,
    help="Send the plain fine-tuned candidate to the gate, without trying its mixes with the serving model's weights",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.pass_context
def train(
    ctx,
    from_feedback: bool,
    epochs: int,
    max_steps: int | None,
    batch_size: int,
    quick: bool,
    context_pairs: bool,
    followup_pairs: int | None,
    from_base: bool,
    no_interpolate: bool,
    seed: int,
) -> None:
    """Retrain the intent model, evaluate it against the serving version, promote it if not worse.

    On several processes or GPUs, data parallel: `accelerate launch --multi_gpu --num_processes 2 -m csbot train`
    (the main process alone evaluates, publishes and promotes; --batch-size is the global batch).

    Example: csbot train --from-feedback --epochs 3
    """
    from csbot.wiring import ensure_ready, is_ready, open_parts
    from training.retrain import retrain
    from training.train_intent import IntentTrainConfig, process_state

    cfg = IntentTrainConfig(
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        quick=quick,
        context_pairs=context_pairs,
        followup_pairs=followup_pairs,
        from_base=from_base,
        interpolate=not no_interpolate,
        seed=seed,
    )
    state = process_state()
    say = (lambda m: click.echo(m, err=True)) if state.is_main_process else (lambda m: None)  # noqa: E731
    if state.num_processes == 1:
        parts = ensure_ready(_settings(ctx), on_step=say)  # a fresh home: the bundled tickets and the quick model first, as `serve` does
    else:
        parts = open_parts(_settings(ctx))
        if not is_ready(parts):
            raise click.ClickException("this home has no tickets or no model yet: run `csbot train` once on one process first (the first start)")
        if batch_size % state.num_processes:
            raise click.ClickException(f"--batch-size {batch_size} must be a multiple of the {state.num_processes} processes (it is the global batch)")
    if quick and followup_pairs is None:  # a quick model gets the first start's follow-up reader (CSBOT_FIRST_READER_PAIRS)
        cfg = dataclasses.replace(cfg, followup_pairs=parts.settings.first_reader_pairs)
    result = retrain(parts.settings, cfg, kb=parts.kb, registry=parts.registry, from_feedback=from_feedback, on_step=say)
    if not state.is_main_process:
        return
    _echo_json({"version": result.version, "promoted": result.promoted, "rule": result.rule, "reason": result.reason, "ranker": result.ranker})


@cli.command(name="eval")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--question-col", default="question", show_default=True)
@click.option("--intent-col", default="intent", show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the report here")
@click.pass_context
def evaluate(ctx, file: Path, question_col: str, intent_col: str, json_out: Path | None) -> None:
    """Intent accuracy, macro-F1, per-intent scores, ECE, retrieval hit@1 and MRR@10, latency, on a labelled CSV or JSONL file.

    Rows whose intent the model does not know (or "oos") are out of scope: the report adds in-scope accuracy,
    out-of-scope recall and precision, and AUROC. With --json, the confusion matrix goes beside it as PNG.

    Example: csbot eval data/eval.csv --json report.json
    """
    from bot.evaluation import evaluate_file
    from csbot.wiring import open_assistant

    png = json_out.with_suffix(".confusion.png") if json_out else None
    report = evaluate_file(open_assistant(_settings(ctx)).warm_up(), file, question_col=question_col, intent_col=intent_col, confusion_png=png)
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))
    _echo_json({k: v for k, v in report.items() if k != "per_intent"})


@cli.group()
def models() -> None:
    """List, promote and roll back model versions."""


KIND_OPTION = click.option("--kind", type=click.Choice(["intent", "ranker"]), default="intent", show_default=True)


@models.command(name="list")
@KIND_OPTION
@click.pass_context
def models_list(ctx, kind: str) -> None:
    """Show every intent model version with its card; '*' marks the serving one.

    Example: csbot models list
    """
    from csbot.wiring import open_registry

    for card in open_registry(_settings(ctx)).versions(kind):
        metrics = card.get("metrics") or {}
        score = (metrics.get("validation") or {}).get("accuracy") if kind == "intent" else metrics.get("hit_at_1")
        gate = card.get("gate", {})
        click.echo(
            f"{'*' if card['serving'] else ' '} {card['version']}  {card.get('created_at', '?')}  "
            f"{'val_acc' if kind == 'intent' else 'hit@1'}={score if score is not None else float('nan'):.4f}  "
            f"parent={card.get('parent')}  {gate.get('decision', '?')}: {gate.get('reason', '')}"
        )


@models.command(name="promote")
@click.argument("version")
@KIND_OPTION
@click.pass_context
def models_promote(ctx, version: str, kind: str) -> None:
    """Serve VERSION (a running server switches on its next request).

    Example: csbot models promote v0002
    """
    from csbot.wiring import open_registry

    open_registry(_settings(ctx)).promote(kind, version, reason="manual promote")
    click.echo(f"serving {kind} model {version}")


@models.command(name="rollback")
@KIND_OPTION
@click.pass_context
def models_rollback(ctx, kind: str) -> None:
    """Serve the version that served before the current one.

    Example: csbot models rollback
    """
    from csbot.wiring import open_registry

    click.echo(f"serving {kind} model {open_registry(_settings(ctx)).rollback(kind)}")


@cli.group()
def feedback() -> None:
    """Work with the recorded votes."""


@feedback.command(name="correct")
@click.argument("turn_id")
@click.option("--intent", required=True, help="The intent the customer meant")
@click.option("--comment", default="", help="Why (kept with the correction)")
@click.pass_context
def feedback_correct(ctx, turn_id: str, intent: str, comment: str) -> None:
    """Record a reviewer's correction of a turn: a full label, weighted most in the next retrain.

    Example: csbot feedback correct 3f2a... --intent lost_or_stolen_card
    """
    from core.types import Feedback
    from csbot.wiring import open_parts

    parts = open_parts(_settings(ctx))
    known = parts.kb.intents()
    if intent not in known:
        raise click.ClickException(f"unknown intent {intent!r}; known intents: {', '.join(known[:10])}, ...")
    row = parts.store.append_feedback(Feedback(turn_id, 0, comment=comment, corrected_intent=intent, source="reviewer"))
    click.echo(f"recorded correction {row}: turn {turn_id} -> {intent}")


@feedback.command(name="export")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None, help="CSV file (default: standard output)")
@click.pass_context
def feedback_export(ctx, output: Path | None) -> None:
    """Export every vote with its (redacted) turn as CSV.

    Example: csbot feedback export -o votes.csv
    """
    from csbot.wiring import open_store

    store = open_store(_settings(ctx))
    if output is None:
        store.export_csv(sys.stdout)
        return
    with output.open("w", newline="") as out:
        store.export_csv(out)


@cli.group(name="db")
def database() -> None:
    """The database: bring its schema up to date, or move an install to PostgreSQL."""


@database.command(name="upgrade")
@click.pass_context
def db_upgrade(ctx) -> None:
    """Apply the schema migrations not applied yet (every command does on open; run this before a rollout).

    Example: CSBOT_DATABASE_URL=postgresql://csbot@db/csbot csbot db upgrade
    """
    from core.config import redact_url
    from csbot.wiring import open_store

    settings = _settings(ctx)
    store = open_store(settings)
    applied = store.sql.migrations_applied()
    click.echo(f"{redact_url(settings.database)}: schema up to date ({len(applied)} migrations, last {applied[-1] if applied else 'none'})")


@database.command(name="copy")
@click.option("--to", "target", required=True, help="The empty database to copy into, e.g. postgresql://csbot:…@db/csbot")
@click.pass_context
def db_copy(ctx, target: str) -> None:
    """Copy every row of this install's database into another (an empty one), then check counts and SHA-256 per table.

    Then serve from the copy: set CSBOT_DATABASE_URL to the same URL. Stop the servers first: rows written
    during the copy would stay behind.

    Example: csbot db copy --to postgresql://csbot:secret@db.internal/csbot
    """
    from core.config import redact_url
    from core.store import FeedbackStore
    from csbot.wiring import open_store

    settings = _settings(ctx)
    if target == settings.database:
        raise click.ClickException("the source and the destination are the same database")
    source, dest = open_store(settings), FeedbackStore(target, busy_timeout_s=settings.db_busy_timeout_s)
    click.echo(f"copying {redact_url(settings.database)} -> {redact_url(target)}", err=True)
    report = source.copy_to(dest, on_table=lambda table, n: click.echo(f"  {table}: {n} rows", err=True))
    for table, r in report.items():
        click.echo(f"{table:15} {r['rows']:>9} rows  {'match' if r['match'] else 'MISMATCH'}  sha256 {r['sha256'][:16]}")
    if not all(r["match"] for r in report.values()):
        raise click.ClickException("the copy does not match the source (see the tables marked MISMATCH); do not switch to it")
    click.echo(f"every row copied and checked; serve from it with CSBOT_DATABASE_URL={redact_url(target)}")


@cli.group()
def agents() -> None:
    """The people who answer customers in the agent inbox (/agent)."""


def _agents(ctx):
    from bot.agents import AgentDirectory
    from csbot.wiring import open_store

    return AgentDirectory(open_store(_settings(ctx)))


@agents.command(name="add")
@click.argument("name")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, envvar="CSBOT_AGENT_PASSWORD", help="[env CSBOT_AGENT_PASSWORD]")
@click.pass_context
def agents_add(ctx, name: str, password: str) -> None:
    """Add an agent (or set a new password for one). The password is stored only as a scrypt hash.

    Example: csbot agents add Sam
    """
    _agents(ctx).add(name, password)
    click.echo(f"agent {name} can log in to the inbox at /agent")


@agents.command(name="list")
@click.pass_context
def agents_list(ctx) -> None:
    """List agents and when each was last at the inbox.

    Example: csbot agents list
    """
    for agent in _agents(ctx).list():
        click.echo(f"{agent['name']}\tadded {agent['created_at']}\tlast seen {agent['last_seen_at'] or 'never'}")


@agents.command(name="remove")
@click.argument("name")
@click.pass_context
def agents_remove(ctx, name: str) -> None:
    """Remove an agent: their login stops working at once.

    Example: csbot agents remove Sam
    """
    _agents(ctx).remove(name)
    click.echo(f"removed agent {name}")


if __name__ == "__main__":
    cli()
