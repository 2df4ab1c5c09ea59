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
token embeddings and not saved), so one folder loads into each with no missing
or unexpected weights (a classifier's new head aside).

Architecture: learned absolute positions, pre-LayerNorm blocks (multi-head
attention through `scaled_dot_product_attention`, GELU MLP), a final LayerNorm
and an LM head tied to the token embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import (
    BaseModelOutput,
    CausalLMOutput,
    MaskedLMOutput,
    SequenceClassifierOutput,
)

# The module's own name ("hybrid_model"; also when transformers loads the copy in a saved folder,
# as transformers_modules.<folder>.hybrid_model), as save_pretrained writes it in `auto_map`.
_MODULE = __name__.rsplit(".", 1)[-1]
# Every Auto class this file serves. save_pretrained records only the class of the object saved
# (and AutoConfig), so the config carries all of them: a folder saved from any one class then
# loads through each.
AUTO_MAP = {"AutoConfig": f"{_MODULE}.GPTBertConfig", "AutoModel": f"{_MODULE}.GPTBertModel",
            "AutoModelForCausalLM": f"{_MODULE}.GPTBertForCausalLM",
            "AutoModelForMaskedLM": f"{_MODULE}.GPTBertForMaskedLM",
            "AutoModelForSequenceClassification": f"{_MODULE}.GPTBertForSequenceClassification"}


class GPTBertConfig(PretrainedConfig):
    """Sizes of the hybrid model; `mask_token_id` is the token masked inputs carry."""

    model_type = "gpt_bert"

    def __init__(self, vocab_size: int = 16000, hidden_size: int = 256, num_hidden_layers: int = 4,
                 num_attention_heads: int = 4, intermediate_size: int | None = None,
                 max_position_embeddings: int = 512, dropout: float = 0.0, layer_norm_eps: float = 1e-5,
                 initializer_range: float = 0.02, mask_token_id: int | None = None,
                 tie_word_embeddings: bool = True, **kwargs) -> None:
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
        # Entries read from a folder's config.json win (the Hub prefixes them with the repository).
        kwargs["auto_map"] = {**AUTO_MAP, **(kwargs.get("auto_map") or {})}
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)


class _Attention(nn.Module):
    def __init__(self, config: GPTBertConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # `mask` (boolean, True = may attend) already holds the causal part when there is padding.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d))

    def at(self, x: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor,
           mask: torch.Tensor | None) -> torch.Tensor:
        """The output at (rows, positions) only, [reads, hidden]: queries there, keys and values
        everywhere; `mask` [reads, 1, 1, key] (True = may attend) or None for every key."""
        _, n, d = x.shape
        reads, size = rows.numel(), d // self.heads
        q = F.linear(x[rows, positions], self.qkv.weight[:d], self.qkv.bias[:d]).view(reads, self.heads, 1, size)
        kv = F.linear(x, self.qkv.weight[d:], self.qkv.bias[d:])[rows]
        k, v = kv.view(reads, n, 2, self.heads, size).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.reshape(reads, d))


class _Block(nn.Module):
    def __init__(self, config: GPTBertConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = _Attention(config)
        self.ln2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(config.hidden_size, config.intermediate_size), nn.GELU(),
                                 nn.Linear(config.intermediate_size, config.hidden_size))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask, causal))
        return x + self.drop(self.mlp(self.ln2(x)))

    def at(self, x: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor,
           mask: torch.Tensor | None) -> torch.Tensor:
        """The block's output at (rows, positions) only (no dropout: scoring)."""
        y = x[rows, positions] + self.attn.at(self.ln1(x), rows, positions, mask)
        return y + self.mlp(self.ln2(y))


class GPTBertBody(nn.Module):
    """Embeddings + blocks + final norm: the hidden states, one per position. The training
    objective and BLiMP call it directly (`custom_models.body_and_head`) so that the
    vocabulary head runs only where there is a target."""

    def __init__(self, config: GPTBertConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(_Block(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

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
        positions = torch.arange(n, device=input_ids.device) if position_ids is None else position_ids
        x = self.drop(self.embed_tokens(input_ids) + self.embed_positions(positions))
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            # [batch, 1, query, key]: no query attends to padding (nor, causally, to later keys).
            allowed = attention_mask.bool()
            mask = (allowed[:, None, None, :] if allowed.dim() == 2 else allowed[:, None]).expand(-1, 1, n, n)
            if not bidirectional:
                mask = mask & torch.ones(n, n, dtype=torch.bool, device=input_ids.device).tril()
            # A padding query would attend to nothing (NaN); let it see itself. Its output is ignored.
            mask = mask | torch.eye(n, dtype=torch.bool, device=input_ids.device)
        if reads is None:
            for layer in self.layers:
                x = layer(x, mask, not bidirectional)
            return self.norm(x)
        for layer in self.layers[:-1]:
            x = layer(x, mask, not bidirectional)
        rows, at = reads
        if mask is not None:
            query_mask = mask[rows, :, at][:, :, None]  # each read's row of the mask: [reads, 1, 1, key]
        else:
            query_mask = None if bidirectional else (torch.arange(n, device=x.device) <= at[:, None])[:, None, None]
        return self.norm(self.layers[-1].at(x, rows, at, query_mask))


class GPTBertPreTrainedModel(PreTrainedModel):
    """What the four loadable classes share: the config and the body under `model.`.

    Every class keeps the body under the same name (`base_model_prefix`), so the
    state-dict keys of a saved folder (`model.*`; `lm_head.weight` is tied and not
    saved) are the same for all three: no key is renamed, missing or unexpected
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


class GPTBertModel(GPTBertPreTrainedModel):
    """The body alone (`AutoModel`): hidden states for fine-tuning with a head of one's own."""

    # save_pretrained leaves the tied head out, but a folder written by a tool that saves tied
    # weights holds it; the body has no use for it, so loading says nothing about it.
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
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
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


GPTBertConfig.register_for_auto_class()
GPTBertModel.register_for_auto_class("AutoModel")
GPTBertForCausalLM.register_for_auto_class("AutoModelForCausalLM")
GPTBertForMaskedLM.register_for_auto_class("AutoModelForMaskedLM")
GPTBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
