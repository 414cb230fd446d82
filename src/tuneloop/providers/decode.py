"""A lean greedy decoder for Llama-family models on the CPU: the local provider's fast path.

``transformers``' ``generate`` runs each decoding step through the general model code: module
calls, cache objects, mask building, logits processors and stopping criteria. On a CPU, for the
small models tuneloop trains, that bookkeeping costs several times the matrix products
themselves, and one gateway request waits for it once per answer token. This decoder holds the
same weights in the layout the CPU multiplies fastest (query/key/value and gate/up fused, each
matrix packed once for oneDNN, whose small-batch products run 1.4–3× faster than the default
BLAS here), keeps a static key/value cache, and does per step only what a greedy step needs.

It answers what greedy ``generate`` answers (the tests compare token for token) for left-padded
batches, each row with its own token limit; rows that finish leave the batch. Sampling,
adapters served unmerged and other architectures go through ``generate``:
:meth:`LeanDecoder.from_model` returns ``None`` for a model it cannot run exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SUPPORTED_TYPES = ("llama", "mistral")
COMPACT_SHARE = 0.75  # drop finished rows from the cache once this share or fewer are active


class _Linear:
    """``x @ weight.T`` with the weight prepared once: packed for oneDNN where this torch has
    it, else stored transposed (the layout a row-vector product reads contiguously)."""

    def __init__(self, weight: Any) -> None:
        import torch

        weight = weight.detach().contiguous()
        self._packed: Any = None
        try:
            self._packed = torch.ops.mkldnn._reorder_linear_weight(weight)
            self._packed_product(weight[:1])
        except (AttributeError, RuntimeError):  # a torch built without oneDNN
            self._packed = None
            self._transposed = weight.t().contiguous()

    def _packed_product(self, x: Any) -> Any:
        import torch

        return torch.ops.mkldnn._linear_pointwise(x, self._packed, None, "none", [], "")

    def __call__(self, x: Any) -> Any:
        if self._packed is not None:
            return self._packed_product(x)
        return x @ self._transposed


@dataclass(frozen=True)
class _Layer:
    input_norm: Any
    qkv: _Linear  # hidden -> (heads + 2 * kv_heads) * head_dim
    out: _Linear
    post_norm: Any
    gate_up: _Linear  # hidden -> 2 * intermediate
    down: _Linear


class LeanDecoder:
    """Greedy decoding of a loaded ``LlamaForCausalLM``-shaped model (fp32, CPU)."""

    def __init__(self, model: Any) -> None:
        import torch

        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.intermediate = config.intermediate_size
        self.eps = config.rms_norm_eps
        self.scale = self.head_dim**-0.5
        self._rotary = model.model.rotary_emb
        inner = model.model
        self.embed = inner.embed_tokens.weight.detach()
        self.final_norm = inner.norm.weight.detach()
        self.head = _Linear(model.lm_head.weight)
        self.layers = []
        for layer in inner.layers:
            attention, mlp = layer.self_attn, layer.mlp
            qkv = [attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]
            self.layers.append(
                _Layer(
                    input_norm=layer.input_layernorm.weight.detach(),
                    qkv=_Linear(torch.cat(qkv)),
                    out=_Linear(attention.o_proj.weight),
                    post_norm=layer.post_attention_layernorm.weight.detach(),
                    gate_up=_Linear(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
                    down=_Linear(mlp.down_proj.weight),
                )
            )
        self._cos = self._sin = torch.empty(0)
        hidden = self.embed.shape[1]
        self._mean_column = torch.full((hidden, 1), 1.0 / hidden)
        # rotate_half as a signed permutation: (x @ turn)[j] = -x[j + half] or x[j - half]
        half = self.head_dim // 2
        turn = torch.zeros(self.head_dim, self.head_dim)
        index = torch.arange(half)
        turn[index + half, index] = -1.0
        turn[index, index + half] = 1.0
        self._half_turn = turn

    @classmethod
    def from_model(cls, model: Any) -> LeanDecoder | None:
        """A decoder for ``model``, or ``None`` when this loop would not answer exactly as
        ``generate`` does (another architecture, biases, sliding windows, dynamic RoPE, a
        PEFT wrapper, a dtype other than fp32, a device other than the CPU)."""
        import torch

        config = getattr(model, "config", None)
        if config is None or getattr(config, "model_type", None) not in SUPPORTED_TYPES:
            return None
        if type(model).__name__ not in ("LlamaForCausalLM", "MistralForCausalLM"):
            return None
        rope = getattr(config, "rope_parameters", None) or {}
        if (
            getattr(config, "attention_bias", False)
            or getattr(config, "mlp_bias", False)
            or getattr(config, "sliding_window", None)
            or getattr(config, "hidden_act", "silu") != "silu"
            or "dynamic" in str(rope.get("rope_type", "default"))
        ):
            return None
        weight = model.lm_head.weight
        if weight.dtype != torch.float32 or weight.device.type != "cpu":
            return None
        return cls(model)

    def _rope_tables(self, length: int) -> None:
        """cos/sin for positions ``0..length-1`` from the model's own rotary module, so every
        RoPE variant it knows (scaled, llama3, …) comes out as the model computes it."""
        import torch

        if self._cos.shape[0] >= length:
            return
        length = max(length, 2 * self._cos.shape[0], 256)
        positions = torch.arange(length).unsqueeze(0)
        cos, sin = self._rotary(self.embed[:1].unsqueeze(0), positions)
        self._cos, self._sin = cos[0], sin[0]

    def generate(
        self,
        input_ids: Any,
        attention_mask: Any,
        limits: list[int],
        *,
        eos_token_id: int | None,
        force_length: bool = False,
        on_token: Callable[[int, int], None] | None = None,
    ) -> list[list[int]]:
        """Greedy continuations of a left-padded batch; row ``b`` stops after its EOS
        (included) or ``limits[b]`` tokens. ``force_length`` suppresses EOS, as
        ``min_new_tokens`` does, so every row produces exactly its limit. ``on_token(row,
        token)`` hears each token as it is chosen (streaming)."""
        import torch

        batch, prompt_len = input_ids.shape
        if len(limits) != batch:
            raise ValueError(f"{len(limits)} token limits for a batch of {batch}")
        total = prompt_len + max(limits)
        self._rope_tables(total)
        with torch.inference_mode():
            return self._generate(
                input_ids,
                attention_mask.bool(),
                limits,
                eos_token_id,
                force_length,
                total,
                on_token,
            )

    def _generate(
        self,
        input_ids: Any,
        key_mask: Any,
        limits: list[int],
        eos_token_id: int | None,
        force_length: bool,
        total: int,
        on_token: Callable[[int, int], None] | None,
    ) -> list[list[int]]:
        import torch

        batch, prompt_len = input_ids.shape
        dims = (len(self.layers), batch, self.kv_heads)
        keys = torch.zeros(*dims, self.head_dim, total)  # transposed: scores = q @ keys
        values = torch.zeros(*dims, total, self.head_dim)
        positions = (key_mask.long().cumsum(-1) - 1).clamp(min=0)
        padded = not bool(key_mask.all())
        logits = self._prefill(input_ids, positions, key_mask if padded else None, keys, values)
        # additive attention bias over the whole cache: pads are -inf, generated slots open
        bias = None
        if padded:
            open_ = torch.ones(batch, total, dtype=torch.bool)
            open_[:, :prompt_len] = key_mask
            bias = torch.zeros(batch, 1, 1, total).masked_fill(
                ~open_.view(batch, 1, 1, total), float("-inf")
            )
        next_position = positions[:, -1] + 1
        cache_rows = list(range(batch))  # the original row each cache row answers
        outputs: list[list[int]] = [[] for _ in range(batch)]
        done: set[int] = set()
        suppress = force_length and eos_token_id is not None
        for step in range(max(limits)):
            if suppress:
                logits[:, eos_token_id] = float("-inf")
            tokens = logits.argmax(-1)
            for row, token in zip(cache_rows, tokens.tolist(), strict=True):
                if row in done:
                    continue
                outputs[row].append(token)
                if on_token is not None:
                    on_token(row, token)
                if len(outputs[row]) >= limits[row] or (token == eos_token_id and not suppress):
                    done.add(row)
            if len(done) == batch:
                break
            if batch - len(done) <= COMPACT_SHARE * len(cache_rows):
                keep = [i for i, row in enumerate(cache_rows) if row not in done]
                index = torch.tensor(keep)
                keys, values = keys.index_select(1, index), values.index_select(1, index)
                bias = bias.index_select(0, index) if bias is not None else None
                tokens, next_position = tokens[index], next_position[index]
                cache_rows = [cache_rows[i] for i in keep]
            logits = self._step(tokens, next_position, prompt_len + step, keys, values, bias)
            next_position = next_position + 1
        return outputs

    def _norm(self, x: Any, weight: Any) -> Any:
        """RMSNorm; the mean of squares as a product with a ``1/hidden`` column, which on a
        CPU costs half of ``mean``'s reduction for one row."""
        import torch

        return weight * (x * torch.matmul(x * x, self._mean_column).add_(self.eps).rsqrt_())

    def _prefill(
        self, input_ids: Any, positions: Any, key_mask: Any, keys: Any, values: Any
    ) -> Any:
        """Run the prompts, fill the cache's first columns, return the last position's logits."""
        import torch
        import torch.nn.functional as F

        batch, length = input_ids.shape
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        rotated = (heads + kv_heads) * dim
        half = dim // 2
        cos = self._cos[positions].unsqueeze(2)  # (batch, length, 1, dim)
        sin = self._sin[positions].unsqueeze(2)
        mask = None
        if key_mask is not None:
            causal = torch.ones(length, length, dtype=torch.bool).tril()
            mask = (causal & key_mask[:, None, :]) | torch.eye(length, dtype=torch.bool)
            mask = mask.unsqueeze(1)  # pad queries see themselves: no all-masked rows (NaN)
        x = self.embed[input_ids]
        for index, layer in enumerate(self.layers):
            qkv = layer.qkv(self._norm(x, layer.input_norm))
            qk = qkv[..., :rotated].view(batch, length, heads + kv_heads, dim)
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), -1) * sin
            q = qk[:, :, :heads].transpose(1, 2)
            k = qk[:, :, heads:].transpose(1, 2)
            v = qkv[..., rotated:].view(batch, length, kv_heads, dim).transpose(1, 2)
            keys[index, :, :, :, :length] = k.transpose(2, 3)
            values[index, :, :, :length] = v
            attended = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=True
            )
            x = x + layer.out(attended.transpose(1, 2).reshape(batch, length, heads * dim))
            gate_up = layer.gate_up(self._norm(x, layer.post_norm))
            gate, up = gate_up.split(self.intermediate, -1)
            x = x + layer.down(F.silu(gate) * up)
        return self.head(self._norm(x[:, -1], self.final_norm))

    def _step(
        self, tokens: Any, positions: Any, column: int, keys: Any, values: Any, bias: Any
    ) -> Any:
        """One token per cache row at cache ``column``; returns the next logits."""
        import torch
        import torch.nn.functional as F

        batch = tokens.shape[0]
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        rotated = (heads + kv_heads) * dim
        seen = column + 1
        rotation = self._rotations(positions)  # (batch, dim, dim)
        attend_bias = bias[..., :seen] if bias is not None else None
        x = self.embed[tokens]  # (batch, hidden)
        layer_caches = zip(self.layers, keys.unbind(0), values.unbind(0), strict=True)
        for layer, layer_keys, layer_values in layer_caches:
            qkv = layer.qkv(self._norm(x, layer.input_norm))
            qk = torch.bmm(qkv[:, :rotated].view(batch, heads + kv_heads, dim), rotation)
            layer_keys[..., column] = qk[:, heads:]
            layer_values[:, :, column] = qkv[:, rotated:].view(batch, kv_heads, dim)
            query = qk[:, :heads].view(batch, kv_heads, heads // kv_heads, dim)
            scores = (query @ layer_keys[..., :seen]) * self.scale
            if attend_bias is not None:
                scores = scores + attend_bias
            attended = torch.softmax(scores, -1) @ layer_values[:, :, :seen]
            x = x + layer.out(attended.view(batch, heads * dim))
            gate_up = layer.gate_up(self._norm(x, layer.post_norm))
            gate, up = gate_up.split(self.intermediate, -1)
            x = x + layer.down(F.silu(gate) * up)
        return self.head(self._norm(x, self.final_norm))

    def _rotations(self, positions: Any) -> Any:
        """RoPE as one matrix per row: ``x @ R == x * cos + rotate_half(x) * sin``, so a
        step rotates every query and key head with one batched product."""
        import torch

        cos, sin = self._cos[positions], self._sin[positions]  # (batch, dim)
        return torch.diag_embed(cos) + self._half_turn * sin.unsqueeze(1)
