"""Next-token prediction (GPT): a causal language model of the token rows.

Radford, Narasimhan, Salimans, Sutskever. "Improving Language Understanding by Generative
Pre-Training", OpenAI 2018.

The encoder reads each row causally (every token sees only the tokens before it) and its
states, through the transposed token embedding (GPT's tied output matrix ``W_e^T``,
eq. 2), predict the next token; the loss is the cross-entropy over the shifted sequence
with [PAD] targets ignored (:func:`engine.losses.causal_lm_loss`, eq. 1). ``bits_per_token``
is the loss in bits; with the byte tokenizer that is bits per byte, and below the
corpus's unigram entropy (``unigram_bits`` in the monitor rows) only if the model uses
context.

Preview: for the first monitor rows, the first :data:`PROMPT_TOKENS` tokens as a prompt
and :data:`CONTINUE_TOKENS` generated after it, greedily and sampled at
:data:`SAMPLE_TEMPERATURE` (the same draws at every monitor step), so the continuations
visibly turn from noise into words.

Held out (``heldout_metrics``): the bits per token of the rows never trained on, the
measure that shows a language model generalising rather than memorising.

The feature kNN and the collapse scores read is the mean of the *causal* states over the
real tokens: a token's state depends on what precedes it only, so the pooled vector leans
on a row's beginning. That is a language model's representation as GPT fine-tunes it
(the paper classifies from the last token's state); a bidirectional encoder (MLM, SimCSE)
sees each row whole.

On several processes nothing is gathered: each process averages over its own real
tokens (as nanoGPT and Megatron do), DDP averages the processes' gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from engine.data.tokens import PAD, SPECIALS
from engine.losses import causal_lm_loss
from engine.methods._base import InputView, Preview, StepOutput
from engine.methods._text import TextEncoderConfig, TextMethod
from engine.registry import register_method

#: preview: rows shown, prompt length, tokens generated and the sampling temperature
PREVIEW_ROWS, PROMPT_TOKENS, CONTINUE_TOKENS, SAMPLE_TEMPERATURE = 4, 24, 48, 0.8


@dataclass
class GPTConfig(TextEncoderConfig):
    """GPT has no settings beyond its encoder's."""


@register_method(
    "gpt",
    config=GPTConfig,
    family="generative",
    modality="text",
    description="Predict every next token from the ones before it (a causal language model).",
    paper="Radford et al. 2018, Improving Language Understanding by Generative Pre-Training",
    # CPU: nanoGPT's "baby GPT" for a CPU on shakespeare_char (4 layers, 4 heads, width
    # 128, block 64, batch 12, lr 1e-3, 100 warm-up steps, dropout 0 for a small model),
    # at batch 16: 2,400 steps of about 40 ms on a 2-core CPU, the whole run in about
    # 100 s (2026-12-01: held-out 1.87 bits per byte against the corpus's unigram 4.64;
    # dropout 0.1 cost 30 % more per step and ended at 2.01 bits, batch 32 for 1,200
    # steps at 2.20). Rows of 64 bytes, as the block of 64: a paragraph is 54 on average.
    preset={"data.dataset": "pydocs", "data.seq_len": 64, "method.dropout": 0.0,
            "optim.lr": 1e-3, "optim.weight_decay": 0.01,
            "optim.batch_size": 16, "optim.max_steps": 2400, "optim.warmup_steps": 100,
            "monitor.every_steps": 200, "monitor.monitor_size": 2000},
    # GPU: nanoGPT's shakespeare_char model (6 layers, 6 heads, 384 wide, block 256), with
    # GPT's dropout back (the CPU preset turns it off)
    gpu_preset={"method.dim": 384, "method.depth": 6, "method.heads": 6,
                "method.dropout": 0.1,
                "data.seq_len": 256, "optim.lr": 6e-4, "optim.batch_size": 128,
                "optim.max_steps": 5000, "optim.warmup_steps": 200,
                "monitor.every_steps": 250, "monitor.monitor_size": 2000},
    collapse_advice=(
        "A language model has no collapse to fear in its loss: judge it by the held-out "
        "bits per token against the unigram line. Its pooled causal states can have a "
        "low effective rank without anything being wrong (they lean on a row's first "
        "tokens); if the held-out bits stall near the unigram entropy, lower the "
        "learning rate or train longer."
    ),
)
class GPT(TextMethod):
    causal = True

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(B, L, V)``: causal states times the tied embedding."""
        return self.states(ids) @ self.backbone.token.weight.t()

    def training_step(self, images: torch.Tensor, augment: Any,
                      generator: torch.Generator) -> StepOutput:
        loss = causal_lm_loss(self.logits(images), images)
        return StepOutput(loss, {"bits_per_token": loss.detach() / math.log(2)})

    def heldout_metrics(self, inputs: torch.Tensor) -> dict[str, float]:
        """Mean cross-entropy over every real next token of the held-out rows, in nats
        and in bits (token-weighted over all rows, chunked)."""
        total, count = 0.0, 0
        for chunk in self.chunks(inputs):
            total += float(causal_lm_loss(self.logits(chunk), chunk, reduction="sum"))
            count += int((chunk[:, 1:] != PAD).sum())
        nats = total / max(count, 1)
        return {"heldout_loss": nats, "heldout_bits_per_token": nats / math.log(2)}

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, steps: int, temperature: float,
                 generator: torch.Generator | None) -> torch.Tensor:
        """``steps`` tokens after each prompt row ``(B, P)`` (all real tokens): greedy
        with ``temperature`` 0, else sampled from the softmax at that temperature. Never
        emits a special token, and stops at the encoder's positions."""
        ids = prompt
        steps = min(steps, self.backbone.max_len - prompt.shape[1])
        for _ in range(steps):
            logits = self.logits(ids)[:, -1].float()
            logits[:, : len(SPECIALS)] = float("-inf")
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                probs = torch.softmax(logits / temperature, -1)
                nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(ids.device)
            ids = torch.cat([ids, nxt], 1)
        return ids[:, prompt.shape[1]:]

    def training_inputs(self, samples: torch.Tensor, generator: torch.Generator
                        ) -> list[InputView]:
        """The row the step reads and the row it must predict: the same text one token
        later (:func:`engine.losses.causal_lm_loss` shifts inside), at the positions
        the loss counts (a real next token)."""
        rows = samples.long()
        trained = [(r[:-1][r[1:] != PAD], r[1:][r[1:] != PAD]) for r in rows]
        return [InputView("input", texts=[self.show_tokens(a) for a, _ in trained],
                          caption="what the model reads, left to right"),
                InputView("target", texts=[self.show_tokens(b) for _, b in trained],
                          caption="each position's next token")]

    def preview(self, images: torch.Tensor, generator: torch.Generator) -> Preview | None:
        rows = images[:PREVIEW_ROWS]
        n_real = int((rows != PAD).sum(1).min())
        p = max(1, min(PROMPT_TOKENS, n_real - 1))
        prompt = rows[:, :p]
        gen = torch.Generator().manual_seed(generator.initial_seed())  # same draws each time
        greedy = self.generate(prompt, CONTINUE_TOKENS, 0.0, None)
        sampled = self.generate(prompt, CONTINUE_TOKENS, SAMPLE_TEMPERATURE, gen)
        items = [{"type": "continuation", "prompt": self.text(prompt[i]),
                  "greedy": self.text(greedy[i]), "sampled": self.text(sampled[i]),
                  "temperature": SAMPLE_TEMPERATURE} for i in range(rows.shape[0])]
        return Preview(kind="text", items=items, input_title="prompt",
                       output_title="continuation")
