"""One rank of the Hugging Face Trainer + DeepSpeed side of ``benchmarks/vs_hf_trainer.py``.

Started by DeepSpeed's launcher, as ``flanforge train`` starts its ranks. It
trains the same Llama-style model on the same tokenised examples the way HF
Trainer users do: ``TrainingArguments(deepspeed=...)``, the usual
``DataCollatorForSeq2Seq`` (dynamic padding to the longest example of each
batch, labels padded with -100), the loss on the targets only (prompt labels
are -100), a shuffled sampler. It writes ``rank<R>.json`` into ``--out``: the
wall-clock time at the end of every optimizer step, and the non-pad and all
tokens of every batch the collator built.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import deepspeed.ops
import torch
from transformers import (
    DataCollatorForSeq2Seq,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.initialization import no_init_weights


class StepClock(TrainerCallback):
    """Wall-clock time at the end of each optimizer step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.time())


class CountingCollator:
    """The collator users run, counting the non-pad and all tokens of each batch it builds."""

    def __init__(self, collator: DataCollatorForSeq2Seq):
        self.collator = collator
        self.batches: list[tuple[int, int]] = []

    def __call__(self, features):
        batch = self.collator(features)
        mask = batch["attention_mask"]
        self.batches.append((int(mask.sum()), mask.numel()))
        return batch


def pad_only_tokenizer(pad_id: int, eos_id: int) -> PreTrainedTokenizerFast:
    """A tokenizer object for the collator's ``pad`` (the examples come tokenised already)."""
    from tokenizers import Tokenizer, models

    vocab = {"<pad>": pad_id, "</s>": eos_id}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<pad>")))
    tok.pad_token, tok.eos_token = "<pad>", "</s>"
    tok.padding_side = "right"
    return tok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="JSONL of tokenised examples (input_ids, labels) + meta.json")
    p.add_argument("--out", required=True)
    p.add_argument("--zero", type=int, default=2)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--model", required=True, help="JSON of the LlamaConfig keyword arguments")
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args()
    # As in flanforge's ranks (launcher/ranks/process_group.py): no JIT build of DeepSpeed's CPU shm op.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False

    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    model_kwargs = json.loads(args.model)
    torch.manual_seed(args.seed)
    # The same weights as flanforge's from-scratch model (model/load.py): drawn by _init_weights alone.
    with no_init_weights():
        model = LlamaForCausalLM(LlamaConfig(**model_kwargs))
    model.init_weights()
    model.config._attn_implementation = "sdpa"  # transformers' default where torch has it
    collator = CountingCollator(DataCollatorForSeq2Seq(
        pad_only_tokenizer(model_kwargs["pad_token_id"], model_kwargs["eos_token_id"]),
        padding="longest", label_pad_token_id=-100,
    ))
    ds_config = {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": {"stage": args.zero},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
    }
    targs = TrainingArguments(
        output_dir=str(Path(args.out) / "trainer"),
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=1,
        max_steps=args.steps,
        learning_rate=1e-3,
        adam_beta2=0.95,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        deepspeed=ds_config,
        seed=args.seed,
        disable_tqdm=True,
    )
    clock = StepClock()
    trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=collator, callbacks=[clock])
    trainer.train()
    rank = int(os.environ.get("RANK", "0"))
    Path(args.out, f"rank{rank}.json").write_text(json.dumps({"step_ends": clock.ends, "batches": collator.batches}))


if __name__ == "__main__":
    # The ranks' one exit path, as flanforge's own ranks end: left to interpreter exit, gloo's
    # threads sometimes abort a finished rank ("terminate called without an active exception").
    from flanforge.launcher.ranks.rank_exit import run_rank

    run_rank(main)
