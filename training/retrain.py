"""The retraining command: build data, train a candidate, evaluate it against serving, promote if not worse.

The candidate is trained in a staging folder and only published (renamed to a version) once complete,
so a crash leaves serving and the database untouched. Every candidate gets a card, promoted or not, with
what the gate (``training.gate``) saw: the ticket validation split, the live slice, the recent chain.
"""

from __future__ import annotations

import logging
import shutil
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from accelerate.utils import broadcast_object_list
from transformers import AutoConfig, AutoTokenizer

from core.config import Settings
from core.next_questions import WINDOW_S as NEXT_WINDOW_S
from core.next_questions import NextQuestions
from core.registry import ModelRegistry
from core.store import FeedbackStore
from retrieval.encoder import base_model_path
from retrieval.followup_reader import QUICK_OWN_BELOW
from retrieval.intent import IntentClassifier, with_context
from retrieval.knowledge_base import KnowledgeBase
from retrieval.metrics import classification_metrics
from retrieval.onnx_encoder import ONNX_FILE
from retrieval.query_map import fit_query_map
from retrieval.ranker import BASELINE, Ranker
from training.context_pairs import READER_DRAWS, READER_PAIRS, bundled_followups, fit_followup_reader, make_pairs, reader_pairs
from training.data import Example, split_tickets
from training.feedback import FeedbackDataset, FeedbackFilter, build_feedback_dataset
from training.gate import (
    CHAIN_LENGTH,
    CONFIDENT,
    GateDecision,
    Outcomes,
    VoteAudit,
    decide,
    ranker_gate,
    refuse_suspect_feedback,
    rules_text,
    suspect_votes,
    worse_intents,
)
from training.interpolate import CANDIDATE_WEIGHTS, can_interpolate, choose_weight, write_mix
from training.live_slice import LIVE_BUCKETS, LiveSlice, split_rows
from training.train_intent import IntentTrainConfig, export_onnx, process_state, train_intent_model
from training.train_ranker import answer_priors, build_ranking_set, fit_ranker, join_ranking_sets, ranking_means

log = logging.getLogger(__name__)
KIND = "intent"
RANKER = "ranker"


@dataclass(frozen=True)
class RetrainResult:
    version: str
    promoted: bool
    reason: str
    candidate: dict
    serving: dict | None
    ranker: dict | None = None
    rule: str = ""


SEED_SAMPLE = 2000  # replayed tickets on which forgetting is measured (fixed: the first ones in id order)


@dataclass
class ModelScores:
    """One model on the gate's sets: validation metrics, pass/fail outcomes, live-slice summary, seed accuracy."""

    validation: dict
    outcomes: Outcomes
    live: dict
    seed_accuracy: float | None
    confident_precision: float | None = None  # validation precision at >= gate.CONFIDENT (the suspect-feedback rule)


def score_model(model_dir: Path, val: list[Example], live: LiveSlice, seeds: list[Example]) -> ModelScores:
    """Predict once on validation, live slice and seed tickets and score each."""
    clf = IntentClassifier(model_dir)
    texts = [e.text for e in val] + live.texts + [e.text for e in seeds]
    predictions = clf.predict(texts, top=1) if texts else []
    a, b = len(val), len(val) + len(live)
    on_val, on_live, on_seeds = predictions[:a], [p.intent for p in predictions[a:b]], predictions[b:]
    validation = classification_metrics([e.label for e in val], [p.intent for p in on_val], [p.confidence for p in on_val])
    live_outcomes = live.outcomes(on_live)
    confident = [p.intent == e.label for p, e in zip(on_val, val) if p.confidence >= CONFIDENT]
    return ModelScores(
        validation=validation,
        outcomes=Outcomes([p.intent == e.label for p, e in zip(on_val, val)], live_outcomes),
        live=live.summary(live_outcomes),
        seed_accuracy=sum(p.intent == e.label for p, e in zip(on_seeds, seeds)) / len(seeds) if seeds else None,
        confident_precision=sum(confident) / len(confident) if len(confident) >= 10 else None,
    )


def audit_votes(rows: list[dict], since: str | None, serving: ModelScores | None) -> VoteAudit:
    """The suspect-feedback rule's view of the customers' votes on answers cast after ``since`` (a down-vote
    followed by a picked alternative counts: its row keeps the vote beside the label)."""
    votes = [
        (float(r["confidence"] or 0.0), int(r["vote"]))
        for r in rows
        if r["action"] == "answer" and r["source"] == "customer" and r["vote"] != 0 and (since is None or r["created_at"] > since)
    ]
    return suspect_votes(votes, serving.confident_precision if serving else None)


def context_examples(tickets: list[Example], cfg: IntentTrainConfig) -> list[Example]:
    """Follow-ups made from the tickets, read with an earlier message as serving reads them (fine-tuning only:
    a head on a frozen encoder cannot learn which of the two messages to follow)."""
    if cfg.quick or not cfg.context_pairs:
        return []
    pairs = make_pairs([(e.text, e.label) for e in tickets], seed=cfg.seed, standalone_share=0.5)
    return [Example(with_context([p.context], p.message), p.intent) for p in pairs]


def reader_limit(cfg: IntentTrainConfig) -> int:
    """How many pairs made from the tickets the candidate's follow-up reader is fitted with; 0: no reader."""
    return cfg.followup_pairs if cfg.followup_pairs is not None else (0 if cfg.quick else READER_PAIRS)


def followup_reader_pairs(
    tickets: list[Example],
    extra: list[Example],
    cfg: IntentTrainConfig,
    draw: int = 0,
    val: list[Example] = (),
    followups: list[tuple[str, str, str]] | None = None,
) -> list[tuple[list[str], str, str]]:
    """What the candidate's follow-up reader learns from: the written ``followups`` (default: the bundled ones,
    ``data/followups_train.csv``), pairs made from the training
    tickets, the short validation questions after unrelated ones (the encoder never trained on those), and the
    feedback's labelled follow-ups as they were read (``Example.followup``; not down-votes). None for a quick
    model unless asked for (``IntentTrainConfig.followup_pairs``). ``draw`` k: the made pairs drawn with seed
    ``cfg.seed + k`` (``READER_DRAWS`` of them are fitted); the earlier messages of the bundled follow-ups and
    the validation questions with ``cfg.seed`` in every draw, so the draws share those texts and ``csbot train``
    embeds them once (3,102 bundled follow-ups, three contexts each)."""
    labelled = [(list(e.followup[0]), e.followup[1], e.label) for e in extra if e.followup and not e.negative]
    unseen = [(e.text, e.label) for e in val]
    questions = [(e.text, e.label) for e in tickets]
    return reader_pairs(questions, labelled, limit=reader_limit(cfg), seed=cfg.seed + draw, unseen=unseen, contexts_seed=cfg.seed, followups=followups)


def followup_reader_draws(
    tickets: list[Example],
    extra: list[Example],
    cfg: IntentTrainConfig,
    val: list[Example] = (),
    followups: list[tuple[str, str, str]] | None = None,
) -> list[list[tuple[list[str], str, str]]]:
    """The ``READER_DRAWS`` draws of ``followup_reader_pairs`` that ``fit_followup_reader`` fits and averages."""
    return [followup_reader_pairs(tickets, extra, cfg, draw=k, val=val, followups=followups) for k in range(reader_draws(cfg))]


def reader_draws(cfg: IntentTrainConfig) -> int:
    """How many draws the reader averages: ``READER_DRAWS`` for a fine-tuned model, one for a quick one (a first
    start waits for it; offline on the first start's v0001, one draw against four: follow-ups within a point, the
    3,080 test queries after another -0.16 against -0.10 points, for a quarter of the time)."""
    return 1 if cfg.quick else READER_DRAWS


def retrain(
    settings: Settings,
    cfg: IntentTrainConfig = IntentTrainConfig(),
    *,
    kb: KnowledgeBase,
    registry: ModelRegistry,
    from_feedback: bool = False,
    feedback_filter: FeedbackFilter = FeedbackFilter(),
    on_step: Callable[[str], None] = log.info,
) -> RetrainResult:
    """Train an intent model candidate; promote it if the gate (``training.gate``) lets it through.

    The knowledge base (with its store) and the registry come built from the settings (``csbot.wiring``).
    """
    store = kb.store
    # Under `accelerate launch --num_processes N` every process runs this function: all of them train (data
    # parallel, same data: the main process's feedback cutoff is broadcast), the main one alone evaluates,
    # publishes and promotes. On one process the calls below are no-ops.
    state = process_state()
    if state.is_main_process:
        registry.clean_staging(KIND)
        registry.clean_staging(RANKER)
    state.wait_for_everyone()
    cutoff = broadcast_object_list([datetime.now(timezone.utc).isoformat(timespec="milliseconds")])[0]

    # 1. Data: labelled tickets (always replayed, so nothing learnt before is forgotten) + feedback outside the
    #    live slice. The live slice's labels are only ever evaluated on, also when training ignores feedback.
    tickets, val = split_tickets(kb.labelled())
    labels = {e.label for e in tickets}
    seeds = tickets[:SEED_SAMPLE]
    # read before any training time is spent: a broken follow-ups file is one plain sentence, not a lost run
    followups = bundled_followups(settings.followups_file) if reader_limit(cfg) > 0 else []
    all_rows = list(store.feedback_rows(cutoff=cutoff))
    train_rows, live_rows = split_rows(all_rows)
    feedback = build_feedback_dataset(train_rows, labels, feedback_filter) if from_feedback else None
    live = LiveSlice.from_rows(live_rows, labels, feedback_filter)
    extra = feedback.examples if feedback else []
    pairs = context_examples(tickets, cfg)
    train = tickets + extra + pairs

    # 2. Score serving and the recent chain first (they do not depend on the candidate), and audit the votes cast
    #    since serving was trained: feedback that looks poisoned is refused before any training time is spent.
    serving_version = registry.current_version(KIND)
    chain: dict[str, ModelScores] = {}
    votes: VoteAudit | None = None
    since: str | None = None
    if state.is_main_process:
        for version in registry.recent_versions(KIND, CHAIN_LENGTH):
            try:
                # Seed accuracy only for serving (the forgetting rule): the chain needs the two evaluation sets alone.
                chain[version] = score_model(registry.path(KIND, version), val, live, seeds if version == serving_version else [])
            except Exception as err:  # a broken old version must not block training; it just leaves the chain
                log.warning("cannot evaluate %s for the drift rule: %s", version, err)
        since = (registry.card(KIND, serving_version).get("data") or {}).get("feedback_cutoff") if serving_version else None
        votes = audit_votes(all_rows, since, chain.get(serving_version)) if from_feedback else None
    serving = chain.get(serving_version) if serving_version else None
    # The card's account of what a candidate learns from (and, for the live slice, is measured on).
    data = {
        "tickets": len(tickets),
        "feedback_examples": len(extra),
        "context_pairs": len(pairs),
        "feedback_counts": dict(feedback.counts) if feedback else {},
        # Estimated share of votes that say the opposite of the truth; each vote was weighed by its belief.
        "vote_noise": feedback.vote_noise if feedback else None,
        # Full labels by who gave them (reviewers, agents resolving handoffs, customers picking a topic), all of them:
        # those in the live slice are evaluated on, the others trained on when training from feedback.
        "labels_by_source": dict(Counter(r["source"] for r in all_rows if r["corrected_intent"])),
        "feedback_filter": asdict(feedback_filter) if feedback else None,
        "feedback_cutoff": cutoff,
        "vote_audit": (
            {
                "since": since,
                "confident_votes": votes.confident_votes,
                "down_votes": votes.down_votes,
                "down_share": votes.down_share,
                "expected_wrong": votes.expected_wrong,
                "suspect": votes.suspect,
                "detail": votes.detail,
            }
            if votes
            else None
        ),
        "live_slice": {"sessions": f"1 in {LIVE_BUCKETS}, by a hash of the session id; never trained on", **dict(live.counts)},
    }
    refusal = refuse_suspect_feedback(votes) if serving else None
    if broadcast_object_list([refusal is not None])[0]:
        if not state.is_main_process:
            return RetrainResult("", False, "a worker process: the main process refused the feedback", {}, None, None, "worker")
        return _refuse_untrained(registry, serving_version, serving, refusal, data, on_step=on_step)

    # 3. Start from the serving model when there is one (continual learning), else (or when asked) the packaged encoder.
    on_step(
        f"training on {len(train)} examples ({len(extra)} from feedback, {len(pairs)} follow-ups made from tickets), "
        f"validating on {len(val)} tickets and {len(live)} live-slice labels"
    )
    init_dir = base_model_path() if serving_version is None or cfg.quick or cfg.from_base else registry.path(KIND, serving_version)
    staging = Path(broadcast_object_list([str(registry.staging_dir(KIND)) if state.is_main_process else ""])[0])
    facts = train_intent_model(train, val, init_dir=init_dir, out_dir=staging, cfg=cfg)
    if not state.is_main_process:
        return RetrainResult("", False, "a worker process: the main process evaluates, publishes and promotes", {}, None, None, "worker")

    # 4. Evaluate the candidate on the same sets (and, continuing from serving, its mixes with serving: the one
    #    that passes most held-out examples stands for the candidate); the gate decides.
    mixing = None
    if cfg.interpolate and serving_version and not cfg.quick and init_dir == registry.path(KIND, serving_version):
        staging, candidate, mixing = interpolate_with_parent(registry, staging, init_dir, val, live, seeds, on_step=on_step)
        kept = AutoConfig.from_pretrained(staging)  # a mix was calibrated anew: the card shows what serves
        facts["thresholds"], facts["temperature"] = kept.thresholds, kept.calibration_temperature
    else:
        candidate = score_model(staging, val, live, seeds)
    decision = decide(
        candidate.outcomes,
        serving.outcomes if serving else None,
        {v: s.outcomes for v, s in chain.items()},
        seed_accuracy=candidate.seed_accuracy,
        serving_seed_accuracy=serving.seed_accuracy if serving else None,
        votes=votes,
    )
    card = {
        "parent": serving_version,
        "init": str(init_dir),
        "data": data,
        "training": facts,
        "interpolation": mixing,
        "metrics": {
            "validation": _summary(candidate.validation),
            "serving_validation": _summary(serving.validation) if serving else None,
            "live": candidate.live,
            "serving_live": serving.live if serving else None,
            "seed_accuracy": candidate.seed_accuracy,
            "serving_seed_accuracy": serving.seed_accuracy if serving else None,
            "chain": {
                v: {"validation_accuracy": s.validation["accuracy"], "live": s.live, "combined": Outcomes.rate(s.outcomes.combined)} for v, s in chain.items()
            },
            "combined": Outcomes.rate(candidate.outcomes.combined),
        },
        "gate": {
            "rules": rules_text(),
            "decision": "promoted" if decision.promoted else "refused",
            "rule": decision.rule,
            "reason": decision.reason,
            "best_of_chain": decision.best_of_chain,
            "worse_intents": worse_intents(candidate.validation, serving.validation) if serving else [],
        },
        "thresholds": facts.get("thresholds") or {"answer": settings.answer_threshold, "handoff": settings.handoff_threshold},
    }
    if not cfg.quick:  # one encoder pass when it serves (retrieval.query_map); fitted for a refused one too, which may be promoted by hand
        on_step("fitting the map of the candidate's embeddings into the ticket index")
        card["retrieval_map"] = fit_query_map(kb, IntentClassifier(staging).embed, staging, seed=cfg.seed)
    on_step("fitting the follow-up reader on the candidate's embeddings")
    draws = followup_reader_draws(tickets, extra, cfg, val, followups)
    card["followup_reader"] = fit_followup_reader(staging, draws, seed=cfg.seed, own_below=QUICK_OWN_BELOW if cfg.quick else 1.0)
    version = registry.publish(KIND, staging, card)
    if decision.promoted:
        registry.promote(KIND, version, reason=decision.reason)
    on_step(f"{version}: {'promoted' if decision.promoted else 'kept ' + str(serving_version)} ({decision.rule}: {decision.reason})")
    ranker = retrain_ranker(settings, registry, kb, val, feedback, train_rows, on_step=on_step)
    refresh_next_questions(store, settings, on_step=on_step)
    return RetrainResult(
        version, decision.promoted, decision.reason, card["metrics"]["validation"], card["metrics"]["serving_validation"], ranker, decision.rule
    )


def interpolate_with_parent(
    registry: ModelRegistry,
    staging: Path,
    parent_dir: Path,
    val: list[Example],
    live: LiveSlice,
    seeds: list[Example],
    *,
    on_step: Callable[[str], None] = log.info,
) -> tuple[Path, ModelScores, dict | None]:
    """Score the candidate and its mixes with the parent (``training.interpolate``) on the held-out sets; keep
    the one with most passes. Returns its folder (the others are removed), its scores and the card's account."""
    scores = {1.0: score_model(staging, val, live, seeds)}
    if not can_interpolate(staging, parent_dir):
        return staging, scores[1.0], None
    folders = {1.0: staging}
    for weight in CANDIDATE_WEIGHTS[1:]:
        folders[weight] = write_mix(staging, parent_dir, weight, registry.staging_dir(KIND), val)
        scores[weight] = score_model(folders[weight], val, live, seeds)
    passes = {w: sum(s.outcomes.combined) for w, s in scores.items()}
    chosen = choose_weight(passes)
    for weight, folder in folders.items():
        if weight != chosen:
            shutil.rmtree(folder, ignore_errors=True)
    if chosen != 1.0 and not (folders[chosen] / ONNX_FILE).exists():  # scoring on a CPU exported it already
        export_onnx(folders[chosen], AutoTokenizer.from_pretrained(folders[chosen]))
    n = len(scores[1.0].outcomes.combined)
    on_step("candidate weight " + ", ".join(f"{w:g}: {p}/{n}" for w, p in passes.items()) + f" held-out passes; kept {chosen:g}")
    account = {
        "parent": str(parent_dir),
        "rule": "weights averaged with the parent at each candidate weight; kept the one with most held-out passes "
        "(ticket validation + live slice), ties to the smallest weight",
        "held_out_passes": {f"{w:g}": p for w, p in passes.items()},
        "held_out_examples": n,
        "candidate_weight": chosen,
    }
    return folders[chosen], scores[chosen], account


def _refuse_untrained(
    registry: ModelRegistry, serving_version: str, serving: ModelScores, decision: GateDecision, data: dict, *, on_step: Callable[[str], None]
) -> RetrainResult:
    """Suspect feedback, seen before training: publish a card without weights (``trained: false``) so the card
    history and the console's Models tab show the refusal and why; nothing is trained, the ranker and the next
    questions are left as they are, serving is untouched."""
    reason = f"{decision.reason} (refused before training: no candidate was trained)"
    serving_validation = _summary(serving.validation)
    card = {
        "parent": serving_version,
        "trained": False,
        "data": data,
        "training": None,
        "metrics": {
            "validation": None,
            "serving_validation": serving_validation,
            "live": None,
            "serving_live": serving.live,
            "seed_accuracy": None,
            "serving_seed_accuracy": serving.seed_accuracy,
        },
        "gate": {"rules": rules_text(), "decision": "refused", "rule": decision.rule, "reason": reason, "best_of_chain": None, "worse_intents": []},
    }
    version = registry.publish(KIND, registry.staging_dir(KIND), card)
    on_step(f"{version}: kept {serving_version} ({decision.rule}: {reason})")
    return RetrainResult(version, False, reason, {}, serving_validation, None, decision.rule)


def retrain_ranker(
    settings: Settings,
    registry: ModelRegistry,
    kb: KnowledgeBase,
    val: list[Example],
    feedback: FeedbackDataset | None,
    vote_rows: list[dict],
    *,
    on_step: Callable[[str], None] = log.info,
) -> dict:
    """Fit the ranker on the held-out tickets (+ confirmed feedback); gate it by two-fold cross-fitting.

    The validation tickets are split in two halves by a hash of their text; a ranker fitted on one half (+ the
    feedback) is measured on the other, both ways, so the gate sees every validation ticket once instead of half
    of them (a young deployment has few). The ranker that serves is fitted on both halves. Promoted only when
    neither its hit@1 nor its MRR@10 is below FAISS order's, the baseline's or the serving ranker's.
    """
    intent_version, intent_dir = registry.current(KIND)
    classifier = IntentClassifier(intent_dir)
    halves = [
        build_ranking_set([e for e in val if zlib.crc32(("ranker:" + e.text).encode()) % 2 == side], kb, classifier, settings.top_k, settings.min_similarity)
        for side in (0, 1)
    ]
    confirmed = build_ranking_set(
        [e for e in (feedback.examples if feedback else []) if not e.negative], kb, classifier, settings.top_k, settings.min_similarity
    )
    prior = answer_priors(vote_rows, kb) if feedback else {}
    eval_set = join_ranking_sets(*halves)
    candidate = fit_ranker(join_ranking_sets(eval_set, confirmed), answer_prior=prior)
    folds = [(fit_ranker(join_ranking_sets(halves[1 - side], confirmed), answer_prior=prior), halves[side]) for side in (0, 1)]
    serving_version = registry.current_version(RANKER)
    alternatives = {"FAISS order": Ranker(), BASELINE: Ranker.baseline()}
    if serving_version:
        alternatives[f"serving {serving_version}"] = Ranker.load(registry.path(RANKER, serving_version))
    scores = {name: ranking_means([(r, eval_set)]) for name, r in alternatives.items()}
    cand_hit1, cand_mrr = ranking_means(folds)  # each half measured with the ranker not fitted on it
    promoted, reason = ranker_gate((cand_hit1, cand_mrr), scores)
    staging = registry.staging_dir(RANKER)
    candidate.save(staging)
    card = {
        "parent": serving_version or BASELINE,
        "intent_version": intent_version,
        "objective": "pairwise logistic regression (RankNet, linear scorer) over the candidates of each query",
        "order": "the best-scored ticket leads, then the baseline's lead where that is another ticket, then FAISS order",
        "weights": candidate.weights,
        "bias": candidate.bias,
        "data": {
            "fit_queries": len(eval_set.queries) + len(confirmed.queries),
            "eval_queries": len(eval_set.queries),
            "evaluation": "two-fold cross-fitting: fitted on one half of the validation tickets (+ feedback), measured on the other",
            "answer_priors": len(candidate.answer_prior),
        },
        "metrics": {"hit_at_1": cand_hit1, "mrr_at_10": cand_mrr, "alternatives": {k: {"hit_at_1": h, "mrr_at_10": m} for k, (h, m) in scores.items()}},
        "gate": {
            "rule": "promote only when neither hit@1 nor MRR@10 (cross-fitted, held-out) is below FAISS order's, the baseline's or the serving ranker's",
            "decision": "promoted" if promoted else "refused",
            "reason": reason,
        },
    }
    version = registry.publish(RANKER, staging, card)
    if promoted:
        registry.promote(RANKER, version, reason=reason)
    on_step(f"ranker {version}: {'promoted' if promoted else 'kept ' + str(serving_version or BASELINE)} ({reason})")
    fallback = None if promoted or not serving_version else _baseline_if_stale(registry, serving_version, intent_version, scores, on_step)
    return {
        "version": version,
        "promoted": promoted,
        "hit_at_1": cand_hit1,
        "mrr_at_10": cand_mrr,
        "alternatives": card["metrics"]["alternatives"],
        "fallback": fallback,
    }


def _baseline_if_stale(registry: ModelRegistry, serving_version: str, intent_version: str, scores: dict, on_step: Callable[[str], None]) -> str | None:
    """A learned ranker was fitted to the intent model of its day; with a new one its signals mean something else.

    When the candidate is refused, the serving ranker is measured again under the serving intent model, and if it
    is now below the baseline on either metric the baseline takes over (published as a version of its own, so the
    history says when and why). Returns that version, or None when the serving ranker is still fine.
    """
    fine, why = ranker_gate(scores[f"serving {serving_version}"], {BASELINE: scores[BASELINE]})
    if fine:
        return None
    reason = f"the serving ranker {serving_version} under intent {intent_version}: {why}; the baseline takes over"
    staging = registry.staging_dir(RANKER)
    Ranker.baseline().save(staging)
    card = {
        "parent": serving_version,
        "intent_version": intent_version,
        "objective": BASELINE,
        "metrics": {"hit_at_1": scores[BASELINE][0], "mrr_at_10": scores[BASELINE][1]},
        "gate": {"rule": "a serving ranker below the baseline gives way to it", "decision": "promoted", "reason": reason},
    }
    version = registry.publish(RANKER, staging, card)
    registry.promote(RANKER, version, reason=reason)
    on_step(f"ranker {version}: {reason}")
    return version


def refresh_next_questions(store: FeedbackStore, settings: Settings, *, on_step: Callable[[str], None] = log.info) -> NextQuestions:
    """Recount which intents followed which in real sessions; serving offers them as 'customers also asked'."""
    counts = NextQuestions.from_transitions(store.intent_transitions(within_s=NEXT_WINDOW_S))
    counts.save(settings.models_dir)
    offered = sum(bool(counts.suggest(a)) for a in counts.counts)
    on_step(f"next questions: {sum(sum(v.values()) for v in counts.counts.values())} session steps counted; offered after {offered} intents")
    return counts


def _summary(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("per_intent", "correct")}


def ensure_ready(settings: Settings, *, kb: KnowledgeBase, registry: ModelRegistry, on_step: Callable[[str], None] = log.info) -> None:
    """First start: load the bundled tickets, build the index and train the quick model. Later starts: nothing."""
    if kb.count() == 0:
        on_step(f"first start: ingesting {settings.default_tickets} and building the index (about a minute)")
        report = kb.ingest(settings.default_tickets, question_col="question", answer_col="answer", intent_col="intent", id_col="id")
        on_step(report.summary())
    kb.open()
    if registry.current_version(KIND) is None:
        on_step("first start: training the quick intent model (frozen encoder + cosine head)")
        cfg = replace(IntentTrainConfig(), quick=True, followup_pairs=settings.first_reader_pairs)
        retrain(settings, cfg, kb=kb, registry=registry, on_step=on_step)
