"""GPT-BERT-style hybrid language model (model_type "gpt_bert"): one transformer,
one output head, trained on causal language modelling AND masked next-token
prediction (Charpentier & Samuel, 2024).

The head always predicts the NEXT token: the output at position t is a
distribution over token t+1. What changes between the two objectives is the
attention and the input:
- causal (`bidirectional=False`, the default of `GPTBertForCausalLM`): each
  position attends to itself and the positions before it; the labels are the
  inputs (shifted inside `forward`, as in GPT-2);
- masked next-token (`bidirectional=True`): some tokens are replaced by the mask
  token, every position attends to every other (not to padding), and masked
  token j is predicted at position j-1; the labels are the original tokens at
  the masked positions and -100 elsewhere, shifted the same way.

This file is self-contained (torch + transformers only) on purpose: it is
registered with `register_for_auto_class`, so `save_pretrained` writes it beside
the weights with an `auto_map` in config.json (`GPTBertConfig` records all four
model classes there), and any folder loads with `trust_remote_code=True` through:
- `AutoModelForCausalLM` -> `GPTBertForCausalLM`: causal by default (lm-eval, the
  BabyLM pipeline's `causal` backend); `forward(..., bidirectional=True)` is the
  masked mode;
- `AutoModelForMaskedLM` -> `GPTBertForMaskedLM`: always the masked next-token
  mode (the BabyLM pipeline's `mntp` backend reads a masked token's prediction at
  the position before it);
- `AutoModel` -> `GPTBertModel`: the body's hidden states (`last_hidden_state`)
  for fine-tuning, bidirectional by default; a [batch, query, key] attention
  mask (the pipeline's causal fine-tuning) is applied as given;
- `AutoModelForSequenceClassification` -> `GPTBertForSequenceClassification`: the
  bidirectional body with a new head on the first position (our fine-tuning).
All four keep the body under `model.` (the head, `lm_head`, is tied to the
token embeddings; only an MLP head's own weights are saved), so one folder loads into
each with no missing or unexpected weights (a classifier's new head aside).

Two model types share this code. `gpt_bert` (`GPTBertConfig`, the classes above):
learned absolute positions, pre-LayerNorm blocks (attention through
`scaled_dot_product_attention`, GELU MLP), a final LayerNorm and a linear LM head
tied to the token embeddings. `ltg_bert` (`LtgBertConfig`, the `LtgBert*` classes):
the body GPT-BERT's authors built (Charpentier & Samuel 2024, on LTG-BERT; their
repository ltgoslo/gpt-bert, pretraining/model_extra.py), written here in our own
words. Each of its changes is a config switch (`BODY_PIECES`), on for ltg_bert and
off for gpt_bert, so an ablation can turn any one off (or on for gpt_bert):
- `relative_positions`: no absolute positions; one relative-position table shared
  by all layers, log-bucketed (`relative_buckets`), projected by each layer's own
  query/key projection, DeBERTa-style scores (content-content + content-position +
  position-content, all scaled by 1/sqrt(3 head_size)); a LayerNorm after the embedding;
- `value_gate`: the attention's context multiplied by GELU(a gate projection);
- `attention_output_norm`: a LayerNorm between the (gated) context and the output projection;
- `geglu`: a GEGLU feed-forward (tanh GELU) without biases, a LayerNorm inside;
- `affine_norms` (off for ltg_bert): the LayerNorms learn a scale and a shift
  (the relative table's own LayerNorm always does, as the authors');
- `layer_weights`: DenseFormer-style learned weights over the embedding and every
  earlier sub-layer output after each sub-layer, initialised to the plain residual;
- `mlp_head`: the head is LayerNorm, dense, GELU, LayerNorm and the tied projection
  with a vocabulary bias (and the body has no final LayerNorm: the head starts with one);
- `ltg_init`: truncated-normal init, std sqrt(2 / (5 hidden)), the feed-forward's
  weights scaled by sqrt(1 / (2 (layer + 1))).
Attention dropout, as today, is --dropout (the authors used 0.1 everywhere).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import (
    BaseModelOutput,
    CausalLMOutput,
    MaskedLMOutput,
    SequenceClassifierOutput,
)

# The module's own name ("hybrid_model"; also when transformers loads the copy in a saved folder,
# as transformers_modules.<folder>.hybrid_model), as save_pretrained writes it in `auto_map`.
_MODULE = __name__.rsplit(".", 1)[-1]

# The body's switches, as gpt_bert has them (ltg_bert: `LtgBertConfig.PIECES`); see the module docstring.
BODY_PIECES = {"relative_positions": False, "value_gate": False, "attention_output_norm": False, "geglu": False,
               "affine_norms": True, "layer_weights": False, "mlp_head": False, "ltg_init": False}


def _auto_map(prefix: str) -> dict[str, str]:
    """Every Auto class this file serves for one model type. save_pretrained records only the class
    of the object saved (and AutoConfig), so the config carries all of them: a folder saved from
    any one class then loads through each."""
    return {"AutoConfig": f"{_MODULE}.{prefix}Config", "AutoModel": f"{_MODULE}.{prefix}Model",
            "AutoModelForCausalLM": f"{_MODULE}.{prefix}ForCausalLM",
            "AutoModelForMaskedLM": f"{_MODULE}.{prefix}ForMaskedLM",
            "AutoModelForSequenceClassification": f"{_MODULE}.{prefix}ForSequenceClassification"}


AUTO_MAP = _auto_map("GPTBert")


class GPTBertConfig(PretrainedConfig):
    """Sizes of the hybrid model and its body's switches (`PIECES`; a value given wins);
    `mask_token_id` is the token masked inputs carry; `position_buckets` sizes the relative
    positions' log buckets (exact up to about half of it, log-spaced to max_position_embeddings)."""

    model_type = "gpt_bert"
    PIECES = BODY_PIECES
    AUTO_PREFIX = "GPTBert"

    def __init__(self, vocab_size: int = 16000, hidden_size: int = 256, num_hidden_layers: int = 4,
                 num_attention_heads: int = 4, intermediate_size: int | None = None,
                 max_position_embeddings: int = 512, dropout: float = 0.0, layer_norm_eps: float = 1e-5,
                 initializer_range: float = 0.02, mask_token_id: int | None = None,
                 tie_word_embeddings: bool = True, position_buckets: int = 32, **kwargs) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size or 4 * hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.dropout = dropout
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.mask_token_id = mask_token_id
        self.position_buckets = position_buckets
        for name, default in self.PIECES.items():
            setattr(self, name, bool(kwargs.pop(name, default)))
        # Entries read from a folder's config.json win (the Hub prefixes them with the repository).
        kwargs["auto_map"] = {**_auto_map(self.AUTO_PREFIX), **(kwargs.get("auto_map") or {})}
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)


class LtgBertConfig(GPTBertConfig):
    """GPT-BERT's own body (`ltg_bert`): every switch of `BODY_PIECES` the authors' way."""

    model_type = "ltg_bert"
    PIECES = {**BODY_PIECES, "relative_positions": True, "value_gate": True, "attention_output_norm": True,
              "geglu": True, "affine_norms": False, "layer_weights": True, "mlp_head": True, "ltg_init": True}
    AUTO_PREFIX = "LtgBert"

    def __init__(self, **kwargs) -> None:  # explicit: transformers would generate one that skips ours
        super().__init__(**kwargs)


def relative_buckets(relative: torch.Tensor, bucket_size: int, max_position: int) -> torch.Tensor:
    """The bucket of each relative position (query minus key), in [-(bucket_size - 1), bucket_size - 1]:
    the position itself up to |bucket_size / 2| (and one past it, where the log rounds up), then
    log-spaced, the last bucket holding everything from about max_position on. LTG-BERT's
    buckets (ltgoslo/gpt-bert, make_log_bucket_position), in float64 so that no boundary moves."""
    mid = bucket_size // 2
    far = relative.abs() > mid
    distance = relative.abs().clamp(min=mid, max=max_position - 1).double()
    log_position = torch.ceil(torch.log(distance / mid) / math.log((max_position - 1) / mid) * (mid - 1)).long() + mid
    bucket = torch.where(far, relative.sign() * log_position, relative)
    return bucket.clamp(-(bucket_size - 1), bucket_size - 1)


def _norm(config: GPTBertConfig, size: int | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(size or config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=config.affine_norms)


class _Attention(nn.Module):
    """Multi-head attention; one projection makes queries, keys, values (and the gate, with
    `value_gate`), so that relative positions can reuse the query/key part."""

    def __init__(self, config: GPTBertConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.heads, self.size = config.num_attention_heads, d // config.num_attention_heads
        self.gated, self.relative = config.value_gate, config.relative_positions
        self.qkv = nn.Linear(d, (4 if self.gated else 3) * d)  # q, k, v (, gate)
        self.post_norm = _norm(config) if config.attention_output_norm else None
        self.out = nn.Linear(d, d)
        self.dropout = config.dropout
        # Three score terms of equal size with relative positions: each scaled by 1/sqrt(3 d) (LTG-BERT).
        self.scale = 1.0 / math.sqrt(3 * self.size) if self.relative else None  # None: SDPA's 1/sqrt(d)

    def _position_scores(self, q: torch.Tensor, k: torch.Tensor, table: torch.Tensor,
                         query_buckets: torch.Tensor) -> torch.Tensor:
        """content-to-position + position-to-content scores, scaled, [batch, heads, queries, keys]:
        q [batch, heads, queries, size], k [batch, heads, keys, size], `table` the normed relative
        embeddings [buckets, hidden], `query_buckets` [batch or 1, queries, keys] the bucket index of
        each (query, key) pair. The table goes through this layer's own query/key projection."""
        d, n_buckets = self.heads * self.size, table.size(0)
        positions = F.linear(table, self.qkv.weight[:2 * d], self.qkv.bias[:2 * d]).view(n_buckets, 2, self.heads,
                                                                                         self.size)
        query_pos, key_pos = positions[:, 0], positions[:, 1]  # [buckets, heads, size]
        index = query_buckets[:, None].expand(q.size(0), self.heads, -1, -1)
        c2p = torch.einsum("bhqe,rhe->bhqr", q, key_pos).gather(-1, index)  # query i against key j's position
        # key j's content against query i's position: gathered at [.., j, bucket(i, j)], then transposed to [i, j]
        p2c = torch.einsum("bhke,rhe->bhkr", k, query_pos).gather(-1, index.transpose(-1, -2)).transpose(-1, -2)
        return (c2p + p2c) * self.scale

    def _finish(self, context: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        """Gate, norm and project the context [..., hidden]."""
        if gate is not None:
            context = context * F.gelu(gate)
        if self.post_norm is not None:
            context = self.post_norm(context)
        return self.out(context)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, causal: bool,
                positions: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        b, n, d = x.shape
        parts = self.qkv(x).view(b, n, -1, self.heads, self.size).permute(2, 0, 3, 1, 4)
        q, k, v = parts[0], parts[1], parts[2]
        # `mask` (boolean, True = may attend) already holds the causal part when there is padding.
        if positions is None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                               dropout_p=self.dropout if self.training else 0.0)
        else:
            bias = self._position_scores(q, k, *positions)
            if mask is None and causal:
                mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
            if mask is not None:
                bias = bias.masked_fill(~mask, float("-inf"))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale,
                                               dropout_p=self.dropout if self.training else 0.0)
        gate = parts[3].transpose(1, 2).reshape(b, n, d) if self.gated else None
        return self._finish(y.transpose(1, 2).reshape(b, n, d), gate)

    def at(self, x: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
           relative: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The output at (rows, positions) only, [reads, hidden]: queries there, keys and values
        everywhere; `mask` [reads, 1, 1, key] (True = may attend) or None for every key;
        `relative` (table, each read's key buckets [reads, key]) with relative positions."""
        _, n, d = x.shape
        reads, size = rows.numel(), self.size
        here = F.linear(x[rows, positions], self.qkv.weight, self.qkv.bias)  # q (and the gate) at the reads
        q = here[:, :d].view(reads, self.heads, 1, size)
        kv = F.linear(x, self.qkv.weight[d:3 * d], self.qkv.bias[d:3 * d])[rows]
        k, v = kv.view(reads, n, 2, self.heads, size).permute(2, 0, 3, 1, 4)
        if relative is None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            table, key_buckets = relative
            bias = self._position_scores(q, k, table, key_buckets[:, None])
            if mask is not None:
                bias = bias.masked_fill(~mask, float("-inf"))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return self._finish(y.reshape(reads, d), here[:, 3 * d:] if self.gated else None)


class _GeGLU(nn.Module):
    """value * GELU(gate), the two halves of the up-projection (tanh GELU, as the authors')."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = x.chunk(2, dim=-1)
        return value * F.gelu(gate, approximate="tanh")


def _feed_forward(config: GPTBertConfig) -> nn.Sequential:
    """Linear, GELU, Linear; with `geglu`: a bias-free up-projection to two halves, GEGLU, a
    LayerNorm, a bias-free down-projection. Its first and last layers are what `ltg_init` scales by depth."""
    d, inner = config.hidden_size, config.intermediate_size
    if config.geglu:
        return nn.Sequential(nn.Linear(d, 2 * inner, bias=False), _GeGLU(), _norm(config, inner),
                             nn.Linear(inner, d, bias=False))
    return nn.Sequential(nn.Linear(d, inner), nn.GELU(), nn.Linear(inner, d))


class _Block(nn.Module):
    def __init__(self, config: GPTBertConfig, index: int) -> None:
        super().__init__()
        self.ln1 = _norm(config)
        self.attn = _Attention(config)
        self.ln2 = _norm(config)
        self.mlp = _feed_forward(config)
        self.drop = nn.Dropout(config.dropout)
        self.index = index  # 0-based: `ltg_init` scales the feed-forward by it

    def attend(self, x: torch.Tensor, mask: torch.Tensor | None, causal: bool,
               positions: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        return x + self.drop(self.attn(self.ln1(x), mask, causal, positions))

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.mlp(self.ln2(x)))


class _LayerMix(nn.Module):
    """A learned weight per earlier state (the embedding, then each sub-layer's output): the next
    sub-layer's input is their weighted sum (DenseFormer's depth-weighted average). Initialised
    to weight 1 on the newest state and 0 elsewhere: the plain residual stream."""

    def __init__(self, states: int) -> None:
        super().__init__()
        self.alphas = nn.Parameter(torch.zeros(states))

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        out = self.alphas[0] * states[0]
        for alpha, state in zip(self.alphas[1:], states[1:], strict=True):
            out = out + alpha * state
        return out


class _MlpHead(nn.Module):
    """LayerNorm, dense, GELU, LayerNorm, then the projection to the vocabulary (`weight`, tied to
    the token embeddings) with a bias: LTG-BERT's head."""

    def __init__(self, config: GPTBertConfig) -> None:
        super().__init__()
        self.pre = nn.Sequential(_norm(config), nn.Linear(config.hidden_size, config.hidden_size), nn.GELU(),
                                 _norm(config), nn.Dropout(config.dropout))
        self.weight = nn.Parameter(torch.empty(config.vocab_size, config.hidden_size))
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self.pre(hidden), self.weight, self.bias)


class GPTBertBody(nn.Module):
    """Embeddings + blocks (+ final norm): the hidden states, one per position. The training
    objective and BLiMP call it directly (`custom_models.body_and_head`) so that the
    vocabulary head runs only where there is a target."""

    def __init__(self, config: GPTBertConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.relative = config.relative_positions
        if self.relative:
            self.embed_norm = _norm(config)
            self.relative_embedding = nn.Parameter(torch.empty(2 * config.position_buckets - 1, config.hidden_size))
            self.relative_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # affine, as the authors'
            self.buckets, self.max_position = config.position_buckets, config.max_position_embeddings
        else:
            self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(_Block(config, i) for i in range(config.num_hidden_layers))
        self.mixes = nn.ModuleList(_LayerMix(j + 2) for j in range(2 * config.num_hidden_layers)) \
            if config.layer_weights else None
        self.norm = None if config.mlp_head else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps,
                                                              elementwise_affine=config.affine_norms)

    def _embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None):
        """The embedded input, and (relative positions) the normed table with each query-key
        pair's bucket index [batch or 1, query, key]."""
        n = input_ids.size(1)
        positions = torch.arange(n, device=input_ids.device)[None] if position_ids is None else position_ids
        if not self.relative:
            return self.drop(self.embed_tokens(input_ids) + self.embed_positions(positions)), None
        buckets = relative_buckets(positions[:, :, None] - positions[:, None, :], self.buckets, self.max_position)
        table = self.drop(self.relative_norm(self.relative_embedding))
        return self.drop(self.embed_norm(self.embed_tokens(input_ids))), (table, buckets + self.buckets - 1)

    def _mix(self, states: list[torch.Tensor], x: torch.Tensor, j: int) -> torch.Tensor:
        """After sub-layer `j` (output `x`): the next input, with layer weights over every state so far."""
        if self.mixes is None:
            return x
        states.append(x)
        return self.mixes[j](states)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                bidirectional: bool = False, position_ids: torch.Tensor | None = None,
                reads: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Hidden states [batch, length, hidden]. `attention_mask` is 1 for tokens and 0 for
        padding, [batch, key]; or [batch, query, key], what each query may attend to (the
        BabyLM pipeline's causal fine-tuning passes one, the zero-shot scorer a prefix tree),
        further made causal unless `bidirectional`. `position_ids` [batch, length] default
        to 0, 1, 2, ... With `reads` (rows, positions): only the hidden states there, [reads,
        hidden], the last block's queries and feed-forward computed there alone (a scorer that
        reads one position of each masked copy saves most of a layer)."""
        n = input_ids.size(1)
        x, relative = self._embed(input_ids, position_ids)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            # [batch, 1, query, key]: no query attends to padding (nor, causally, to later keys).
            allowed = attention_mask.bool()
            mask = (allowed[:, None, None, :] if allowed.dim() == 2 else allowed[:, None]).expand(-1, 1, n, n)
            if not bidirectional:
                mask = mask & torch.ones(n, n, dtype=torch.bool, device=input_ids.device).tril()
            # A padding query would attend to nothing (NaN); let it see itself. Its output is ignored.
            mask = mask | torch.eye(n, dtype=torch.bool, device=input_ids.device)
        states = [x]
        last = len(self.layers) - (reads is not None)  # with reads, the last block runs at the reads only
        for i, layer in enumerate(self.layers[:last]):
            x = self._mix(states, layer.attend(x, mask, not bidirectional, relative), 2 * i)
            x = self._mix(states, layer.feed(x), 2 * i + 1)
        if reads is not None:
            x = self._last_block_at(x, states, mask, bidirectional, relative, *reads)
        return x if self.norm is None else self.norm(x)

    def _last_block_at(self, x: torch.Tensor, states: list[torch.Tensor], mask: torch.Tensor | None,
                       bidirectional: bool, relative, rows: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """The last block's output at (rows, at) only, [reads, hidden] (no dropout: scoring)."""
        n = x.size(1)
        if mask is not None:
            query_mask = mask[rows, :, at][:, :, None]  # each read's row of the mask: [reads, 1, 1, key]
        else:
            query_mask = None if bidirectional else (torch.arange(n, device=x.device) <= at[:, None])[:, None, None]
        if relative is not None:
            table, buckets = relative
            relative = (table, buckets[rows if buckets.size(0) > 1 else torch.zeros_like(rows), at])
        block, i = self.layers[-1], len(self.layers) - 1
        states = [state[rows, at] for state in states]
        y = self._mix(states, x[rows, at] + block.attn.at(block.ln1(x), rows, at, query_mask, relative), 2 * i)
        return self._mix(states, block.feed(y), 2 * i + 1)


class GPTBertPreTrainedModel(PreTrainedModel):
    """What the four loadable classes share: the config and the body under `model.`.

    Every class keeps the body under the same name (`base_model_prefix`), so the
    state-dict keys of a saved folder (`model.*`; `lm_head.weight` is tied and not
    saved) are the same for all of them: no key is renamed, missing or unexpected
    whichever Auto class loads the folder."""

    config_class = GPTBertConfig
    base_model_prefix = "model"
    _supports_sdpa = True

    def __init__(self, config: GPTBertConfig) -> None:
        super().__init__(config)
        self.model = GPTBertBody(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' defaults (normal, std initializer_range), or with `ltg_init` LTG-BERT's:
        truncated normal (at 2 std) of std sqrt(2 / (5 hidden)) for every matrix and embedding, the
        feed-forward's first and last layers scaled by sqrt(1 / (2 (layer + 1))), biases 0. Layer
        weights start as the plain residual. Through transformers.initialization, which leaves
        weights loaded from a folder alone."""
        config = self.config
        if isinstance(module, _LayerMix):
            init.copy_(module.alphas, torch.arange(module.alphas.numel()) == module.alphas.numel() - 1)
            return
        if isinstance(module, _MlpHead):
            init.zeros_(module.bias)  # its `weight` is the token embeddings
            return
        std = math.sqrt(2.0 / (5.0 * config.hidden_size)) if config.ltg_init else config.initializer_range
        if isinstance(module, GPTBertBody) and module.relative:
            if config.ltg_init:
                init.trunc_normal_(module.relative_embedding, std=std, a=-2 * std, b=2 * std)
            else:
                init.normal_(module.relative_embedding, std=std)
            return
        if not config.ltg_init or not isinstance(module, (nn.Linear, nn.Embedding)):
            super()._init_weights(module)
            return
        scale = 1.0
        if isinstance(module, nn.Linear):
            for block in self.model.layers:
                if module is block.mlp[0] or module is block.mlp[-1]:
                    scale = math.sqrt(1.0 / (2.0 * (block.index + 1)))
            if module.bias is not None:
                init.zeros_(module.bias)
        init.trunc_normal_(module.weight, std=std * scale, a=-2 * std * scale, b=2 * std * scale)


class GPTBertModel(GPTBertPreTrainedModel):
    """The body alone (`AutoModel`): hidden states for fine-tuning with a head of one's own."""

    # save_pretrained leaves the tied head out, but a folder written by a tool that saves tied
    # weights holds it (and an MLP head's own weights are saved); the body has no use for it,
    # so loading says nothing about it.
    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]

    def __init__(self, config: GPTBertConfig) -> None:
        super().__init__(config)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                bidirectional: bool = True, **kwargs) -> BaseModelOutput:
        """`last_hidden_state` [batch, length, hidden]. Bidirectional by default: a sequence
        classifier reading the first position (the BabyLM pipeline's default) then sees the
        whole input; a causal [batch, query, key] mask or `bidirectional=False` gives the
        causal mode. Other keyword arguments (e.g. `token_type_ids`) are ignored."""
        return BaseModelOutput(last_hidden_state=self.model(input_ids, attention_mask, bidirectional))


class GPTBertForCausalLM(GPTBertPreTrainedModel):
    """The hybrid model with its next-token head (`AutoModelForCausalLM`).
    `forward(..., bidirectional=True)` is the masked mode; the default is causal, so
    causal-LM tools use it unchanged."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    accepts_loss_kwargs = False  # forward returns a per-batch mean loss

    def __init__(self, config: GPTBertConfig) -> None:
        super().__init__(config)
        self.lm_head = _MlpHead(config) if config.mlp_head else \
            nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, bidirectional: bool = False, **kwargs) -> CausalLMOutput:
        """Logits [batch, length, vocab]: position t predicts token t+1. With `labels`,
        the mean cross-entropy of logits[:, :-1] against labels[:, 1:] (-100 ignored)."""
        hidden = self.model(input_ids, attention_mask, bidirectional)
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)


class GPTBertForMaskedLM(GPTBertForCausalLM):
    """The same model and weights in the masked next-token mode only (`AutoModelForMaskedLM`),
    for tools that score a masked LM: every position attends to every non-padding position,
    and the logits at position t predict token t+1, so masked token i is read at i-1."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> MaskedLMOutput:
        """Logits [batch, length, vocab], position t predicting token t+1. `labels` as in
        training's masked steps: the original token at each masked position, -100 elsewhere
        (the shift to the predicting position happens inside)."""
        out = super().forward(input_ids, attention_mask, labels, bidirectional=True, **kwargs)
        return MaskedLMOutput(loss=out.loss, logits=out.logits)


class GPTBertForSequenceClassification(GPTBertPreTrainedModel):
    """The body, bidirectional, with a classification head on the FIRST position
    (`AutoModelForSequenceClassification`; `config.num_labels` classes): with every position
    seeing the whole input, the first one summarises it, as the BabyLM pipeline's classifier
    reads it. Padding (attention_mask 0) is never attended to."""

    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]

    def __init__(self, config: GPTBertConfig) -> None:
        super().__init__(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> SequenceClassifierOutput:
        """Logits [batch, num_labels]; with `labels` [batch], their mean cross-entropy.
        Other keyword arguments (e.g. `token_type_ids`) are ignored."""
        hidden = self.model(input_ids, attention_mask, bidirectional=True)
        logits = self.classifier(self.dropout(hidden[:, 0]))
        loss = None if labels is None else F.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


# ltg_bert: the same classes under its own config (transformers matches a class to its config class).
class LtgBertModel(GPTBertModel):
    """`AutoModel` for ltg_bert (see GPTBertModel)."""

    config_class = LtgBertConfig


class LtgBertForCausalLM(GPTBertForCausalLM):
    """`AutoModelForCausalLM` for ltg_bert (see GPTBertForCausalLM)."""

    config_class = LtgBertConfig


class LtgBertForMaskedLM(GPTBertForMaskedLM):
    """`AutoModelForMaskedLM` for ltg_bert (see GPTBertForMaskedLM)."""

    config_class = LtgBertConfig


class LtgBertForSequenceClassification(GPTBertForSequenceClassification):
    """`AutoModelForSequenceClassification` for ltg_bert (see GPTBertForSequenceClassification)."""

    config_class = LtgBertConfig


# model type -> (config, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification)
CLASSES = {"gpt_bert": (GPTBertConfig, GPTBertModel, GPTBertForCausalLM, GPTBertForMaskedLM,
                        GPTBertForSequenceClassification),
           "ltg_bert": (LtgBertConfig, LtgBertModel, LtgBertForCausalLM, LtgBertForMaskedLM,
                        LtgBertForSequenceClassification)}
for _config, _body, _causal, _masked, _classifier in CLASSES.values():
    _config.register_for_auto_class()
    _body.register_for_auto_class("AutoModel")
    _causal.register_for_auto_class("AutoModelForCausalLM")
    _masked.register_for_auto_class("AutoModelForMaskedLM")
    _classifier.register_for_auto_class("AutoModelForSequenceClassification")
