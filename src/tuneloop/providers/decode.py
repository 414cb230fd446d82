"""A lean greedy decoder for Llama-family models on the CPU: the local provider's fast path.

``transformers``' ``generate`` runs each decoding step through the general model code: module
calls, cache objects, mask building, logits processors and stopping criteria. On a CPU, for the
small models tuneloop trains, that bookkeeping costs several times the matrix products
themselves, and one gateway request waits for it once per answer token. This decoder holds the
same weights in the layouts the CPU multiplies fastest (query/key/value and gate/up fused; each
matrix packed for oneDNN and/or stored transposed, whichever measures faster for the row
count at hand; norm weights and the attention scale folded into the products), keeps a static
key/value cache, and does per step only what a greedy step needs.

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


CALIBRATION_ROWS = (1, 2, 4, 8, 16, 32, 64)  # the row counts a kernel choice is measured at


class _Linear:
    """``x @ weight.T`` through whichever of two layouts is faster for ``x``'s row count.

    oneDNN's packed weights multiply many rows fastest, but on some CPUs (AVX2 without
    AVX-512) each packed call has a fixed cost that makes one row — a single stream — 2–4×
    slower than a plain product with the weight stored transposed. Which layout wins, and
    from how many rows, differs by machine and shape, so :meth:`_calibrate` measures it
    when the decoder is built; a layout that never wins is not kept.
    """

    def __init__(self, weight: Any, packed_from: dict[tuple[int, int], int]) -> None:
        import torch

        weight = weight.detach().contiguous()
        self._packed: Any = None
        self._transposed: Any = weight.t().contiguous()
        self.packed_from = CALIBRATION_ROWS[-1] + 1  # rows from which the packed layout is used
        try:
            self._packed = torch.ops.mkldnn._reorder_linear_weight(weight)
            self._packed_product(weight[:1])
        except (AttributeError, RuntimeError):  # a torch built without oneDNN
            self._packed = None
            return
        shape = (weight.shape[1], weight.shape[0])
        if shape not in packed_from:
            packed_from[shape] = self._calibrate()
        self.packed_from = packed_from[shape]
        if self.packed_from > CALIBRATION_ROWS[-1]:
            self._packed = None  # never faster here
        elif self.packed_from <= CALIBRATION_ROWS[0]:
            self._transposed = None  # always faster here

    def _packed_product(self, x: Any) -> Any:
        import torch

        return torch.ops.mkldnn._linear_pointwise(x, self._packed, None, "none", [], "")

    def _calibrate(self) -> int:
        """The smallest measured row count from which the packed layout is faster for
        every larger count (beyond the largest: never)."""
        import time

        import torch

        def best_time(product: Callable[[Any], Any], x: Any) -> float:
            best = float("inf")
            for _ in range(12):
                started = time.perf_counter()
                product(x)
                best = min(best, time.perf_counter() - started)
            return best

        packed_from = CALIBRATION_ROWS[-1] + 1
        for rows in reversed(CALIBRATION_ROWS):
            x = torch.randn(rows, self._transposed.shape[0])
            if best_time(self._packed_product, x) >= best_time(self._plain_product, x):
                break
            packed_from = rows
        return packed_from

    def _plain_product(self, x: Any) -> Any:
        return x @ self._transposed

    def add_product(self, residual: Any, x: Any) -> Any:
        """``residual + self(x)``, in one call where the plain layout serves ``x``."""
        import torch

        if self._uses_packed(x):
            return residual + self._packed_product(x)
        return torch.addmm(residual, x, self._transposed)

    def _uses_packed(self, x: Any) -> bool:
        return self._transposed is None or (
            self._packed is not None and x.numel() // x.shape[-1] >= self.packed_from
        )

    def __call__(self, x: Any) -> Any:
        if self._uses_packed(x):
            return self._packed_product(x)
        return self._plain_product(x)


@dataclass(frozen=True)
class _Layer:
    qkv: _Linear  # hidden -> (heads + 2 * kv_heads) * head_dim
    out: _Linear
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
        packed_from: dict[tuple[int, int], int] = {}
        self.head = _Linear(model.lm_head.weight * inner.norm.weight, packed_from)
        self.layers = []
        for layer in inner.layers:
            attention, mlp = layer.self_attn, layer.mlp
            # the attention scale rides on the query rows, the norm weight on the columns
            query = attention.q_proj.weight * self.scale
            qkv = [query, attention.k_proj.weight, attention.v_proj.weight]
            self.layers.append(
                _Layer(
                    qkv=_Linear(torch.cat(qkv) * layer.input_layernorm.weight, packed_from),
                    out=_Linear(attention.o_proj.weight, packed_from),
                    gate_up=_Linear(
                        torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
                        * layer.post_attention_layernorm.weight,
                        packed_from,
                    ),
                    down=_Linear(mlp.down_proj.weight, packed_from),
                )
            )
        self._cos = self._sin = torch.empty(0)
        hidden = self.embed.shape[1]
        self._mean_column = torch.full((hidden, 1), 1.0 / hidden)
        self._eps = torch.tensor([[self.eps]])
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

    def _norm(self, x: Any) -> Any:
        """RMSNorm without its weight, which is folded into the product that follows. The
        mean of squares is a product with a ``1/hidden`` column, which on a CPU costs half of
        ``mean``'s reduction for one row."""
        import torch

        if x.dim() == 2:
            return x * torch.addmm(self._eps, x * x, self._mean_column).rsqrt_()
        return x * torch.matmul(x * x, self._mean_column).add_(self.eps).rsqrt_()

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
            qkv = layer.qkv(self._norm(x))
            qk = qkv[..., :rotated].view(batch, length, heads + kv_heads, dim)
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), -1) * sin
            q = qk[:, :, :heads].transpose(1, 2)
            k = qk[:, :, heads:].transpose(1, 2)
            v = qkv[..., rotated:].view(batch, length, kv_heads, dim).transpose(1, 2)
            keys[index, :, :, :, :length] = k.transpose(2, 3)
            values[index, :, :, :length] = v
            attended = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None, scale=1.0, enable_gqa=True
            )
            x = x + layer.out(attended.transpose(1, 2).reshape(batch, length, heads * dim))
            gate_up = layer.gate_up(self._norm(x))
            gate, up = gate_up.split(self.intermediate, -1)
            x = x + layer.down(F.silu(gate) * up)
        return self.head(self._norm(x[:, -1]))

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
        groups = batch * kv_heads
        attend_bias = None
        if bias is not None:  # (batch, 1, 1, total) -> one row per query head of each group
            attend_bias = bias[..., :seen].expand(batch, kv_heads, heads // kv_heads, seen)
            attend_bias = attend_bias.reshape(groups, heads // kv_heads, seen)
        x = self.embed[tokens]  # (batch, hidden)
        layer_caches = zip(self.layers, keys.unbind(0), values.unbind(0), strict=True)
        for layer, layer_keys, layer_values in layer_caches:
            qkv = layer.qkv(self._norm(x))
            qk = torch.bmm(qkv[:, :rotated].view(batch, heads + kv_heads, dim), rotation)
            layer_keys[..., column] = qk[:, heads:]
            layer_values[:, :, column] = qkv[:, rotated:].view(batch, kv_heads, dim)
            # (batch * kv_heads) groups of query heads; 3-d products skip matmul's reshaping
            query = qk[:, :heads].reshape(groups, heads // kv_heads, dim)
            group_keys = layer_keys.view(groups, dim, -1)[..., :seen]
            if attend_bias is None:
                scores = torch.bmm(query, group_keys)
            else:
                scores = torch.baddbmm(attend_bias, query, group_keys)
            attended = torch.bmm(
                torch.softmax(scores, -1), layer_values.view(groups, -1, dim)[:, :seen]
            )
            x = layer.out.add_product(x, attended.view(batch, heads * dim))
            gate_up = layer.gate_up(self._norm(x))
            gate, up = gate_up.split(self.intermediate, -1)
            x = layer.down.add_product(x, F.silu(gate) * up)
        return self.head(self._norm(x))

    def _rotations(self, positions: Any) -> Any:
        """RoPE as one matrix per row: ``x @ R == x * cos + rotate_half(x) * sin``, so a
        step rotates every query and key head with one batched product."""
        import torch

        cos, sin = self._cos[positions], self._sin[positions]  # (batch, dim)
        return torch.diag_embed(cos) + self._half_turn * sin.unsqueeze(1)
