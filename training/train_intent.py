"""Fine-tune the intent classifier with HF accelerate, in the shape of accelerate's ``nlp_example.py``.

Runs unchanged on a CPU, one GPU (bf16 when supported) or several processes: ``accelerate launch
--multi_gpu --num_processes N -m csbot train`` (over NCCL on GPUs; over gloo when spawned without CUDA).
Data parallel: ``batch_size`` is the global batch, split across the processes, so N processes take the same
steps as one and reach the same accuracy.
Two modes share one function: ``quick`` trains only the cosine head on frozen embeddings (seconds; the
first model a fresh install serves), the full mode fine-tunes the encoder too.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator, PartialState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, gather_object, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoTokenizer, BertConfig, get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

from retrieval.encoder import base_model_path, embed_shortest_first
from retrieval.intent import MAX_TOKENS, IntentModel
from retrieval.onnx_encoder import export_encoder
from training.data import Example

log = logging.getLogger(__name__)
hf_logging.set_verbosity_error()


@dataclass(frozen=True)
class IntentTrainConfig:
    """Hyper-parameters; serialised into the model card."""

    epochs: int = 5
    max_steps: int | None = None  # stop after this many optimiser steps (tests, smoke runs)
    batch_size: int = 32
    lr_encoder: float = 8e-5
    lr_head: float = 1e-3
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    scale: float = 20.0
    grad_accum: int = 1
    patience: int = 3  # epochs without validation improvement before stopping (2 stopped a run at epoch 3 on noise)
    quick: bool = False  # head only, encoder frozen
    from_base: bool = False  # start from the packaged encoder even when a model serves (default: continue from serving)
    # Fine-tuning also reads follow-ups made from the tickets with an earlier message (training.context_pairs). Off by
    # default: measured +1.2 points on the test half's follow-ups, -2.5 on the dev half, -1.0 on single questions.
    context_pairs: bool = False
    # Follow-up pairs made from the tickets that the follow-up reader (retrieval.followup_reader) is fitted on, beside
    # the bundled and the labelled follow-ups; 0: no reader. None: READER_PAIRS (training.context_pairs) for a
    # fine-tuned candidate, 0 for a quick one (on the quick model a reader cost single questions 0.36 points: README).
    followup_pairs: int | None = None
    head_steps: int = 300
    head_lr: float = 0.02
    seed: int = 42
    cpu: bool = False
    layer_decay: float = 1.0  # learning rate of layer i = lr_encoder * layer_decay ** (layers above i); 1.0 = off
    supcon_weight: float = 0.0  # weight of an in-batch supervised contrastive term (0 = off)
    supcon_temperature: float = 0.05
    distill_weight: float = 0.5  # share of the soft-target loss for examples that carry teacher probabilities
    linear_probe_first: bool = True  # fit a new head on frozen embeddings before fine-tuning (LP-FT: +1.2 points)
    bf16: bool = True  # bf16 mixed precision on a GPU that supports it (never on a CPU)
    # Continuing from serving: also try the candidate averaged with serving's weights and keep whichever passes
    # most held-out examples (training.interpolate). Off: the plain fine-tuned candidate goes to the gate.
    interpolate: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("epochs, batch_size and grad_accum must be at least 1")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, found {self.max_steps}")


def on_cpu(cfg: IntentTrainConfig | None = None) -> bool:
    """Train on the CPU: asked for, or several processes were spawned (``accelerate launch --multi_gpu``,
    ``torchrun``) on a machine without CUDA. Then accelerate joins them over gloo instead of running each alone."""
    spawned = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return bool(cfg and cfg.cpu) or (spawned and not torch.cuda.is_available())


def process_state() -> PartialState:
    """The processes of this training run (one, or those ``accelerate launch`` started); create it before any model."""
    return PartialState(cpu=on_cpu())


def embed_texts(model: IntentModel, tokenizer, texts: list[str], device: torch.device, batch_size: int = 64) -> torch.Tensor:
    """The pooled embeddings of ``texts`` (in their order), in length-sorted batches: padding every batch to the
    longest of a random 128 cost about twice the CPU (a quick retrain embeds every ticket)."""
    model.eval()

    def padded(batch: list[str]) -> np.ndarray:
        enc = tokenizer(batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt").to(device)
        with torch.inference_mode():
            return model.embed(**enc).float().cpu().numpy()

    return torch.from_numpy(embed_shortest_first(texts, batch_size, model.config.hidden_size, padded))


def example_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    negative: torch.Tensor,
    smoothing: float,
    soft: torch.Tensor | None = None,
    distill_weight: float = 0.5,
) -> torch.Tensor:
    """Weighted mean of cross-entropy for positive examples and -log(1 - p(label)) for negative ones.

    The second term is the complementary-label loss: a down-vote only says which intent was wrong, so
    it pushes that intent's probability down and leaves the rest of the distribution to the data.
    Rows of ``soft`` that sum to 1 are teacher probabilities (distillation): their cross-entropy is mixed in
    with ``distill_weight``; rows of zeros mean "no teacher for this example".
    """
    logits = logits.float()
    positive_loss = F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)
    if soft is not None:
        has_soft = soft.sum(-1) > 0
        soft_loss = -(soft.float() * logits.log_softmax(-1)).sum(-1)
        positive_loss = torch.where(has_soft, (1 - distill_weight) * positive_loss + distill_weight * soft_loss, positive_loss)
    p_label = logits.softmax(-1).gather(1, labels[:, None]).squeeze(1)
    negative_loss = -torch.log1p(-p_label.clamp(max=1 - 1e-6))
    loss = torch.where(negative, negative_loss, positive_loss)
    return (loss * weights).sum() / weights.sum().clamp(min=1e-6)


def supervised_contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon (Khosla et al. 2020) on normalised embeddings: pull same-intent queries of a batch together.

    Anchors without a same-intent partner in the batch are skipped.
    """
    sim = embeddings.float() @ embeddings.float().T / temperature
    eye = torch.eye(len(labels), dtype=torch.bool, device=sim.device)
    sim = sim.masked_fill(eye, float("-inf"))
    positives = (labels[:, None] == labels[None, :]) & ~eye
    log_prob = sim - sim.logsumexp(dim=1, keepdim=True)
    count = positives.sum(1)
    anchor = count > 0
    if not anchor.any():
        return embeddings.sum() * 0.0
    mean_log_prob = log_prob.masked_fill(~positives, 0.0).sum(1)[anchor] / count[anchor]
    return -mean_log_prob.mean()


def calibrate_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature T minimising the NLL of softmax(logits / T) on held-out data (Guo et al. 2017)."""
    if len(labels) == 0:
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


OPEN_REJECT_SHARE = 0.05  # the handoff threshold rejects this share of known validation queries (issue 9 benchmark)
ANSWER_PRECISION = 0.9  # answer below 0.5 confidence only where validation answers that confident were this often right


def choose_thresholds(val_probs: torch.Tensor, y_val: torch.Tensor) -> dict | None:
    """Answer / handoff thresholds on calibrated validation confidence; None without enough validation data.

    handoff: below it a query looks like none of the intents (open-intent detection without out-of-scope
    examples): the confidence under which only ``OPEN_REJECT_SHARE`` of known validation queries fall, at most
    half the answer threshold.
    answer: 0.5 (a calibrated answer more likely right than wrong), lowered to the confidence down to which the
    answered validation queries are still ``ANSWER_PRECISION`` right; between the two the bot asks which of its
    top intents was meant.
    """
    if len(y_val) < 20:
        return None
    confidence, predicted = val_probs.max(1)
    handoff = float(torch.quantile(confidence, OPEN_REJECT_SHARE))
    order = confidence.argsort(descending=True)
    correct = (predicted == y_val)[order].float()
    precision = correct.cumsum(0) / torch.arange(1, len(correct) + 1)
    ok = torch.nonzero(precision >= ANSWER_PRECISION).flatten()
    answer = float(confidence[order][ok.max()]) if len(ok) else 0.5
    answer = min(max(answer, handoff), 0.5)
    return {
        "answer": round(answer, 4),
        # Capped at half the answer threshold so that a band of clarification remains: a sharp fine-tuned model puts
        # 5% of validation near 0.5, and without the cap every vague in-scope question would go to a person.
        "handoff": round(min(handoff, answer / 2), 4),
        "rule": f"handoff: {OPEN_REJECT_SHARE:.0%} of validation below (at most answer / 2); "
        f"answer: min(0.5, lowest confidence with precision >= {ANSWER_PRECISION})",
    }


def calibrate(model: IntentModel, tokenizer, val: list[Example], device: torch.device) -> tuple[float, float]:
    """Set the model's calibration temperature and answer/handoff thresholds from validation; returns
    (temperature, validation accuracy). Run on every model that may serve: a fine-tuned one, or a mix of two."""
    label_id = model.config.label2id
    val = [e for e in val if e.label in label_id and not e.negative]
    val_logits = _logits(model, tokenizer, [e.text for e in val], device)
    y_val = torch.tensor([label_id[e.label] for e in val], dtype=torch.long)
    temperature = calibrate_temperature(val_logits, y_val)
    model.config.calibration_temperature = temperature
    model.config.thresholds = choose_thresholds((val_logits / temperature).softmax(-1), y_val)
    return temperature, (float((val_logits.argmax(1) == y_val).float().mean()) if len(val) else float("nan"))


def _init_model(init_dir: Path, labels: list[str], cfg: IntentTrainConfig) -> IntentModel:
    """Start from ``init_dir`` (the base encoder or a previous intent version); keep its head if the labels match."""
    config = BertConfig.from_pretrained(init_dir)
    same_labels = getattr(config, "architectures", None) == ["IntentModel"] and [config.id2label[i] for i in range(config.num_labels)] == labels
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.scale = cfg.scale
    config.label_smoothing = cfg.label_smoothing
    model = IntentModel.from_pretrained(init_dir, config=config, ignore_mismatched_sizes=True)
    model._keep_head = same_labels  # noqa: SLF001 - read once by train_intent_model
    return model


def train_intent_model(
    train: list[Example],
    val: list[Example],
    *,
    init_dir: Path,
    out_dir: Path,
    cfg: IntentTrainConfig = IntentTrainConfig(),
    checkpoint_dir: Path | None = None,
) -> dict:
    """Train, calibrate and ``save_pretrained`` an intent model into ``out_dir``; returns training facts.

    With ``checkpoint_dir`` the trainer state is saved there after every epoch (``accelerator.save_state``,
    last two kept). Without validation examples there is no early stopping and no calibration (T = 1).

    Example:
        >>> train_intent_model(train, val, init_dir=base_model_path(), out_dir=Path("/tmp/m"),   # doctest: +SKIP
        ...                    cfg=IntentTrainConfig(quick=True))
    """
    started = time.perf_counter()
    if not train:
        raise ValueError("no labelled training examples: ingest tickets with an intent column first")
    # 1. Accelerator first: it decides the device and precision (bf16 on a GPU that supports it).
    use_bf16 = cfg.bf16 and torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not on_cpu(cfg)
    project = ProjectConfiguration(project_dir=str(checkpoint_dir), automatic_checkpoint_naming=True, total_limit=2) if checkpoint_dir else None
    accelerator = Accelerator(
        cpu=on_cpu(cfg),
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True),  # the batch size is global: N processes share it
        mixed_precision="bf16" if use_bf16 else "no",
        gradient_accumulation_steps=cfg.grad_accum,
        project_config=project,
    )
    # 2. Seed before the model is built so the seed controls every random init and shuffle.
    set_seed(cfg.seed)
    labels = sorted({e.label for e in train if not e.negative})
    label_id = {label: i for i, label in enumerate(labels)}
    train = [e for e in train if e.label in label_id]  # a down-vote on an intent we no longer have teaches nothing
    val = [e for e in val if e.label in label_id and not e.negative]
    tokenizer = AutoTokenizer.from_pretrained(init_dir)
    model = _init_model(init_dir, labels, cfg).to(accelerator.device)

    # 3. Head initialisation from class means of the starting encoder: a nearest-centroid classifier.
    train_texts = [e.text for e in train]
    y_train = torch.tensor([label_id[e.label] for e in train])
    w_train = torch.tensor([e.weight for e in train], dtype=torch.float)
    neg_train = torch.tensor([e.negative for e in train], dtype=torch.bool)
    soft_train = _soft_targets(train, labels)
    quick = cfg.quick or cfg.max_steps == 0
    fit_head_first = quick or (cfg.linear_probe_first and not model._keep_head)  # noqa: SLF001
    # Embeddings are needed for the head fit and to initialise a new head; a kept head needs none.
    embeddings = embed_texts(model, tokenizer, train_texts, accelerator.device) if fit_head_first or not model._keep_head else None  # noqa: SLF001
    if not model._keep_head:  # noqa: SLF001
        pos = ~neg_train
        means = torch.zeros(len(labels), embeddings.shape[1]).index_add_(0, y_train[pos], embeddings[pos])
        model.classifier.weight.data = F.normalize(means, dim=-1).to(model.classifier.weight)

    # 4. Optimise the head alone on the cached embeddings (full batch): the whole of quick mode, and the first
    #    stage of "linear probing, then fine-tuning" (Kumar et al. 2022), which spares the pretrained features
    #    the large early gradients of a random or centroid head.
    if fit_head_first:
        head = torch.nn.Parameter(model.classifier.weight.detach().cpu().clone())
        opt = torch.optim.Adam([head], lr=cfg.head_lr)
        for _ in range(cfg.head_steps):
            opt.zero_grad()
            logits = cfg.scale * embeddings @ F.normalize(head, dim=-1).T
            loss = example_loss(logits, y_train, w_train, neg_train, cfg.label_smoothing, soft_train, cfg.distill_weight)
            loss.backward()
            opt.step()
        model.classifier.weight.data = head.detach().to(model.classifier.weight)
        steps_done = 0
    if not quick:
        steps_done = _fine_tune(accelerator, model, tokenizer, train_texts, y_train, w_train, neg_train, soft_train, val, label_id, cfg)
        model = accelerator.unwrap_model(model)

    # 5. Calibrate on validation data, never on the test split.
    temperature, val_accuracy = calibrate(model, tokenizer, val, accelerator.device)
    # A head on the untouched packaged encoder can share the retrieval encoder's pass at serving time.
    model.config.frozen_base_encoder = quick and Path(init_dir).resolve() == base_model_path().resolve()

    # 6. Save in the Hugging Face format (main process only when distributed).
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        export_onnx(out_dir, tokenizer)
    processes = gather_object([f"rank {accelerator.process_index}: pid {os.getpid()} on {socket.gethostname()} ({accelerator.device})"])
    accelerator.end_training()
    return {
        "config": asdict(cfg),
        "labels": len(labels),
        "train_examples": len(train),
        "val_examples": len(val),
        "steps": steps_done,
        "val_accuracy": val_accuracy,
        "temperature": temperature,
        "thresholds": model.config.thresholds,
        "train_seconds": round(time.perf_counter() - started, 2),
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "num_processes": accelerator.num_processes,
        "processes": processes,
    }


def export_onnx(out_dir: Path, tokenizer) -> None:
    """The ONNX graph next to the weights (CPU servers without bf16 use it, ``retrieval.onnx_encoder``): made here,
    from the saved fp32 weights, so a promoted version serves its first request without exporting. A failure
    only costs that: serving exports (or falls back to PyTorch) itself."""
    if os.environ.get("CSBOT_ONNX", "auto").strip().lower() == "off":
        return
    try:
        export_encoder(IntentModel.from_pretrained(out_dir).eval(), tokenizer, out_dir)
    except Exception as err:
        log.warning("no ONNX export for %s (%s: %s); serving will try again", out_dir, type(err).__name__, err)


def _soft_targets(train: list[Example], labels: list[str]) -> torch.Tensor | None:
    """Teacher probabilities aligned with ``labels`` (zeros where an example has none), or None if no example has any."""
    if not any(e.soft for e in train):
        return None
    soft = torch.zeros(len(train), len(labels))
    for row, e in enumerate(train):
        if e.soft:
            if len(e.soft) != len(labels):
                raise ValueError(f"soft targets have {len(e.soft)} intents, the training data {len(labels)}")
            soft[row] = torch.tensor(e.soft)
    return soft


def _param_groups(model: IntentModel, cfg: IntentTrainConfig) -> list[dict]:
    """A gentle rate for the pretrained encoder (decaying towards the embeddings unless layer_decay is 1), a fast
    one for the small head. The encoder is its embeddings and its layers (no pooler)."""
    layers = model.bert.encoder.layer
    groups = [{"params": model.classifier.parameters(), "lr": cfg.lr_head}]
    for i, layer in enumerate(layers):
        groups.append({"params": layer.parameters(), "lr": cfg.lr_encoder * cfg.layer_decay ** (len(layers) - 1 - i)})
    groups.append({"params": model.bert.embeddings.parameters(), "lr": cfg.lr_encoder * cfg.layer_decay ** len(layers)})
    return groups


def _logits(model: IntentModel, tokenizer, texts: list[str], device: torch.device) -> torch.Tensor:
    embeddings = embed_texts(model, tokenizer, texts, device).to(device)
    with torch.no_grad():
        return model.head(embeddings).float().cpu()


def _fine_tune(accelerator, model, tokenizer, texts, y, w, neg, soft, val, label_id, cfg: IntentTrainConfig) -> int:
    """The accelerate training loop; keeps the weights of the best validation epoch. Returns optimiser steps."""
    soft_rows = soft if soft is not None else torch.zeros(len(texts), 0)
    dataset = list(zip(texts, y.tolist(), w.tolist(), neg.tolist(), range(len(texts))))

    def collate(batch):
        enc = tokenizer([b[0] for b in batch], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        enc["labels"] = torch.tensor([b[1] for b in batch])
        enc["weights"] = torch.tensor([b[2] for b in batch], dtype=torch.float)
        enc["negative"] = torch.tensor([b[3] for b in batch], dtype=torch.bool)
        enc["soft"] = soft_rows[[b[4] for b in batch]]
        return enc

    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate)
    steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
    total = steps_per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg), weight_decay=cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    val_texts = [e.text for e in val]
    y_val = torch.tensor([label_id[e.label] for e in val], dtype=torch.long)
    best_acc, best_state, stale, step = -1.0, None, 0, 0
    progress = tqdm(total=total, desc="training intent model", disable=not accelerator.is_local_main_process)
    for epoch in range(cfg.epochs):
        model.train()
        for batch in loader:
            with accelerator.accumulate(model):
                weights, labels, negative, soft_batch = batch.pop("weights"), batch.pop("labels"), batch.pop("negative"), batch.pop("soft")
                out = model(**batch, output_hidden_states=cfg.supcon_weight > 0)
                soft_batch = soft_batch if soft_batch.shape[1] else None
                loss = example_loss(out.logits, labels, weights, negative, cfg.label_smoothing, soft_batch, cfg.distill_weight)
                if cfg.supcon_weight > 0:
                    keep = ~negative
                    loss = loss + cfg.supcon_weight * supervised_contrastive_loss(out.hidden_states[-1][keep], labels[keep], cfg.supcon_temperature)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                step += 1
                progress.update(1)
                progress.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch)
            if step >= total:
                break
        if accelerator.project_configuration.automatic_checkpoint_naming:  # a checkpoint per epoch when asked
            accelerator.save_state()
        # Early stopping on the validation split carved from the training tickets (none without one).
        unwrapped = accelerator.unwrap_model(model)
        if not val:
            if step >= total:
                break
            continue
        acc = float((_logits(unwrapped, tokenizer, val_texts, accelerator.device).argmax(1) == y_val).float().mean())
        if accelerator.is_local_main_process:  # on stderr: `csbot train` prints its result as JSON on stdout
            tqdm.write(f"epoch {epoch}: validation accuracy {acc:.4f}", file=sys.stderr)
        if acc > best_acc:
            best_acc, stale = acc, 0
            best_state = {k: v.detach().cpu().clone() for k, v in unwrapped.state_dict().items()}
        else:
            stale += 1
        if step >= total or stale >= cfg.patience:
            break
    progress.close()
    if best_state is not None:
        accelerator.unwrap_model(model).load_state_dict(best_state)
    return step
