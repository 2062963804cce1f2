from __future__ import annotations

import json

from click.testing import CliRunner

from csbot.cli import cli


def run(home, *args):
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def test_ask_prints_a_reply(home):
    result = run(home, "ask", "I lost my card, what do I do?")
    assert result.exit_code == 0, result.output
    reply = json.loads(result.output)
    assert reply["action"] == "answer" and reply["intent"] == "lost_or_stolen_card"


def test_ingest_reports_and_refuses_plainly(home, tmp_path):
    good = tmp_path / "t.csv"
    good.write_text("q,a\nHow do I close my account?,Use Profile > Close account.\nbroken,row,here\n")
    result = run(home, "ingest", str(good), "--question-col", "q", "--answer-col", "a")
    assert result.exit_code == 0
    assert "added 1 tickets" in result.output and "line 3: expected 2 fields, found 3" in result.output
    result = run(home, "ingest", str(good), "--question-col", "subject", "--answer-col", "a")
    assert result.exit_code == 1
    assert "Error: t.csv has no column --question-col 'subject'" in result.output
    assert "Traceback" not in result.output


def test_models_list_promote_and_rollback(home):
    listing = run(home, "models", "list")
    assert listing.exit_code == 0 and listing.output.startswith("* v0001")
    assert run(home, "models", "promote", "v0009").exit_code == 1
    result = run(home, "models", "rollback")
    assert result.exit_code == 1 and "no earlier intent version" in result.output


def test_eval_writes_a_report(home, tmp_path):
    data = tmp_path / "eval.csv"
    data.write_text("question,intent\nI lost my card,lost_or_stolen_card\nmy card got stuck in the ATM,card_swallowed\n")
    out = tmp_path / "report.json"
    result = run(home, "eval", str(data), "--json", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["n"] == 2 and 0 <= report["accuracy"] <= 1
    assert set(report["retrieval"]["hit_at_1"]) == {"without_ranker", "baseline", "with_ranker"}
    assert report["per_intent"]["lost_or_stolen_card"]["support"] == 1 and "ece" in report
    assert out.with_suffix(".confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "out_of_scope" not in report


def test_eval_reports_out_of_scope_detection(home, tmp_path):
    data = tmp_path / "mixed.csv"
    data.write_text(
        "question,intent\nI lost my card,lost_or_stolen_card\nmy card got stuck in the ATM,card_swallowed\n"
        "how do I top up by bank transfer,transfer_into_account\nwhat's the weather in Paris,oos\n"
        "tell me a joke,oos\nrecommend a pizza place near me,restaurant_recommendation\n"
    )
    out = tmp_path / "report.json"
    result = run(home, "eval", str(data), "--json", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    oos = report["out_of_scope"]
    assert oos["in_scope_queries"] == 3 and oos["out_of_scope_queries"] == 3 and report["n"] == 3
    assert 0 <= oos["in_scope_accuracy"] <= 1 and oos["auroc"] is not None
    assert oos["out_of_scope_recall"] >= 2 / 3  # the handoff threshold chosen on validation catches them


def test_feedback_export(home, tmp_path):
    reply = json.loads(run(home, "ask", "I lost my card").output)
    from core.config import Settings
    from core.store import FeedbackStore
    from core.types import Feedback

    FeedbackStore(Settings(home=home).db_path).append_feedback(Feedback(reply["turn_id"], -1, comment="my phone is +44 20 7946 0958"))
    out = tmp_path / "votes.csv"
    assert run(home, "feedback", "export", "-o", str(out)).exit_code == 0
    text = out.read_text()
    assert reply["turn_id"] in text and "[PHONE]" in text and "7946" not in text


def test_reviewer_correction(home):
    reply = json.loads(run(home, "ask", "my card was eaten by the machine").output)
    result = run(home, "feedback", "correct", reply["turn_id"], "--intent", "card_swallowed")
    assert result.exit_code == 0 and "-> card_swallowed" in result.output
    assert run(home, "feedback", "correct", reply["turn_id"], "--intent", "nonsense").exit_code == 1
    assert run(home, "feedback", "correct", "no-such-turn", "--intent", "card_swallowed").exit_code == 1
    from core.config import Settings
    from core.store import FeedbackStore

    rows = list(FeedbackStore(Settings(home=home).db_path).feedback_rows())
    assert [(r["corrected_intent"], r["source"]) for r in rows] == [("card_swallowed", "reviewer")]


def test_tickets_delete(home):
    reply = json.loads(run(home, "ask", "I lost my card, what do I do?").output)
    top = reply["sources"][0]["ticket_id"]
    assert run(home, "tickets", "delete", str(top)).exit_code == 0
    again = json.loads(run(home, "ask", "I lost my card, what do I do?").output)
    assert top not in [s["ticket_id"] for s in again["sources"]]
    missing = run(home, "tickets", "delete", str(top))
    assert missing.exit_code == 1 and f"no ticket {top}" in missing.output


def test_agents_are_added_listed_and_removed_with_hashed_passwords(tmp_path):
    import sqlite3

    home = tmp_path / "home"
    result = CliRunner().invoke(cli, ["--home", str(home), "agents", "add", "Sam"], input="correct horse battery\ncorrect horse battery\n")
    assert result.exit_code == 0 and "agent Sam can log in" in result.output
    stored = sqlite3.connect(home / "csbot.db").execute("select password_hash from agents where name = 'Sam'").fetchone()[0]
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert run(home, "agents", "list").output.startswith("Sam\t")
    short = CliRunner().invoke(cli, ["--home", str(home), "agents", "add", "Alex"], input="short\nshort\n")
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    assert run(home, "agents", "remove", "Sam").exit_code == 0
    gone = CliRunner().invoke(cli, ["--home", str(home), "agents", "remove", "Sam"])
    assert gone.exit_code == 1 and "no agent 'Sam'" in gone.output


def test_a_quick_retrain_fits_the_first_starts_follow_up_reader(home, small_followups, monkeypatch):
    """`csbot train --quick` replaces a model whose follow-ups a reader reads: it fits the first start's reader
    (``CSBOT_FIRST_READER_PAIRS`` pairs made from the tickets, one draw, the quick 1% rule) unless told otherwise
    (``--followup-pairs 0``: tests/test_distributed.py)."""
    from core.registry import ModelRegistry
    from retrieval.followup_reader import QUICK_OWN_BELOW

    monkeypatch.setenv("CSBOT_FOLLOWUPS_FILE", str(small_followups))
    monkeypatch.setenv("CSBOT_FIRST_READER_PAIRS", "-1")
    refused = run(home, "train", "--quick")
    assert refused.exit_code == 1 and "first_reader_pairs must be at least 0" in refused.output and "Traceback" not in refused.output
    monkeypatch.setenv("CSBOT_FIRST_READER_PAIRS", "50")
    result = run(home, "train", "--quick")
    assert result.exit_code == 0, result.output
    version = json.loads(result.output[result.output.index("{") :])["version"]
    account = ModelRegistry(home / "models").card("intent", version)["followup_reader"]
    assert account["fitted"] and account["draws"] == 1 and account["own_below"] == QUICK_OWN_BELOW
