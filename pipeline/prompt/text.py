"""Learnable prompts through CLIP's frozen text encoder: what CoOp, DualCoOp and TaI-DPT share.

A prompt for label c is "[SOS] v_1 ... v_M <name of c>. [EOS]": the M context vectors v are learned in
the token-embedding space (CoOp's "end" position), everything else is CLIP's own token embedding of
"X X ... X <name>.", kept as buffers. The sequence then runs through CLIP's positional embedding, its
transformer, ln_final and the text projection, read at the end token, as `CLIP.encode_text` does; CLIP's
weights never change, gradients reach only the context.

The encoder runs only up to the longest prompt (CLIP's text mask is causal and the feature is read at
the end token, so the padding after it changes nothing: `pipeline.encoding.openai_clip.ClipEncoder.encode_tokens`).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.encoding.openai_clip import ClipError, tokenize
from pipeline.encoding.vectors import normalize

TEXT_PARTS = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")


def check_text_encoder(model, method: str) -> None:
    """OpenAI-CLIP-style text towers only (clip.model.CLIP); anything else gets one line naming the fix."""
    lacking = [part for part in TEXT_PARTS if not hasattr(model, part)]
    if lacking:
        raise ClipError(
            f"prompt.method = {method!r} needs an OpenAI-CLIP-style text encoder ({', '.join(TEXT_PARTS)}), "
            f"and encode.model = {type(model).__name__} lacks {lacking}: use an OpenAI CLIP such as RN50, "
            "or set prompt.method to none"
        )


class FrozenTextEncoder(nn.Module):
    """CLIP's text tower from embedded tokens on: features at the end token, or (`sequence`) at every token."""

    def __init__(self, clip_model):
        super().__init__()
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.requires_grad_(False)

    @property
    def width(self) -> int:
        return self.ln_final.weight.shape[0]

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(tokens).float()

    def _run(self, embedded: torch.Tensor) -> torch.Tensor:
        n = embedded.shape[1]
        x = embedded + self.positional_embedding[:n].float()
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_final(x).float()

    def forward(self, embedded: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """(n, L, width) embedded prompts, (n,) end-token positions -> (n, embed_dim) features."""
        x = self._run(embedded)
        return x[torch.arange(len(x), device=x.device), end] @ self.text_projection.float()

    def sequence(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, L) token ids -> (n, L, embed_dim): every token projected (TaI-DPT's token-level text features)."""
        return self._run(self.embed(tokens)) @ self.text_projection.float()


class PromptContext(nn.Module):
    """One learnable context of `n_ctx` vectors, shared by all labels or one per label (`class_specific`,
    CoOp's CSC), before every label name. Initialised as the peers do: normal, std 0.02; or, with `init`
    (prompt.ctx_init, CoOp's CTX_INIT), from the token embeddings of those words, whose token count then
    replaces n_ctx (as in CoOp), copied to every label when class-specific."""

    def __init__(
        self,
        encoder: FrozenTextEncoder,
        names: list[str],
        n_ctx: int,
        class_specific: bool,
        generator: torch.Generator | None = None,
        init: str | None = None,
    ):
        super().__init__()
        names = [name.replace("_", " ") for name in names]
        device = encoder.text_projection.device
        if init:
            init_tokens = tokenize([init.replace("_", " ")])
            n_ctx = int(init_tokens.argmax(dim=-1)) - 1  # the words' tokens between [SOS] and [EOS]
            with torch.no_grad():
                words = encoder.embed(init_tokens[:, 1 : 1 + n_ctx].to(device))[0]
        tokens = tokenize([" ".join(["X"] * n_ctx) + f" {name}." for name in names])
        end = tokens.argmax(dim=-1)  # the end token has the largest id
        length = int(end.max()) + 1  # the encoder runs up to the longest prompt
        with torch.no_grad():
            embedded = encoder.embed(tokens[:, :length].to(device))
        self.register_buffer("prefix", embedded[:, :1].clone())  # [SOS]
        self.register_buffer("suffix", embedded[:, 1 + n_ctx :].clone())  # name, ".", [EOS], padding
        self.register_buffer("end", end.to(device))
        shape = (len(names), n_ctx, encoder.width) if class_specific else (n_ctx, encoder.width)
        if init:
            start = words.expand(shape).clone()
        else:
            start = torch.empty(shape).normal_(0, 0.02, generator=generator).to(device)
        self.ctx = nn.Parameter(start)

    def forward(self) -> torch.Tensor:
        """(n_labels, L, width) embedded prompts."""
        n = self.prefix.shape[0]
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.expand(n, -1, -1)
        return torch.cat([self.prefix, ctx, self.suffix], dim=1)


class LabelPrompts(nn.Module):
    """A learnable context per label through the frozen encoder: `forward()` gives unit text features."""

    def __init__(
        self,
        encoder: FrozenTextEncoder,
        names: list[str],
        n_ctx: int,
        class_specific: bool,
        generator: torch.Generator | None = None,
        ctx_init: str | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.context = PromptContext(encoder, names, n_ctx, class_specific, generator, ctx_init)

    def forward(self) -> torch.Tensor:
        return normalize(self.encoder(self.context(), self.context.end))
