"""KAR's hybrid-expert adaptor (Xi et al., "Towards Open-World Recommendation with Knowledge Augmentation from
LLMs", 2023) and the wrapper that puts it in front of any deepctr-torch backbone.

Per knowledge type t (here: item factual knowledge, user preference) the adaptor mixes shared experts (applied to
every type) and t's own experts with a softmax gate computed from t's knowledge vector:

    out_t = sum_k softmax(W_t x_t)_k * expert_k(x_t),   experts = shared + specific_t,  expert = MLP d->h->o

The outputs (one `o`-dim vector per type) replace the raw knowledge vectors in the backbone's input, and the whole
thing trains end-to-end with the CTR loss. `AdaptedNet` keeps deepctr's interface (forward(X), regularisation,
aux_loss, feature_index), so the training loop does not care whether an adaptor is present.

    from models.kar_adaptor import HybridExpertAdaptor, AdaptedNet
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def _init_uniform(shape: tuple[int, ...], fan_in: int) -> nn.Parameter:
    bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default init, per expert
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class _ExpertBank(nn.Module):
    """K independent MLP experts d -> h -> o stored as stacked weights (K, d, h), (K, h, o)."""

    def __init__(self, k: int, dim_in: int, hidden: int, dim_out: int):
        super().__init__()
        self.w1, self.b1 = _init_uniform((k, dim_in, hidden), dim_in), _init_uniform((k, hidden), dim_in)
        self.w2, self.b2 = _init_uniform((k, hidden, dim_out), hidden), _init_uniform((k, dim_out), hidden)


class HybridExpertAdaptor(nn.Module):
    """Shared + type-specific experts with one softmax gate per knowledge type.

    All experts a type uses run as one fused pair of matmuls (first layers side by side, second layers as a
    batched matmul): the same function as K separate MLPs, without K small kernel launches per layer.
    Shared experts need one input width, so every type must then have the same dimension (true for one text
    encoder); with n_shared=0 types may differ.
    """

    def __init__(self, dims: Sequence[int], n_shared: int = 2, n_specific: int = 2, hidden: int = 128,
                 out_dim: int = 32):
        super().__init__()
        dims = [int(d) for d in dims]
        if not dims:
            raise ValueError("HybridExpertAdaptor: no knowledge types")
        if n_shared and len(set(dims)) > 1:
            raise ValueError(f"HybridExpertAdaptor: shared experts need equal input dims, got {dims}")
        if n_shared + n_specific < 1:
            raise ValueError("HybridExpertAdaptor: needs at least one expert")
        self.dims, self.out_dim, self.hidden = dims, int(out_dim), int(hidden)
        self.n_shared, self.n_specific = int(n_shared), int(n_specific)
        self.shared = _ExpertBank(n_shared, dims[0], hidden, out_dim) if n_shared else None
        self.specific = nn.ModuleList(_ExpertBank(n_specific, d, hidden, out_dim) for d in dims) \
            if n_specific else None
        self.gates = nn.ModuleList(nn.Linear(d, n_shared + n_specific) for d in dims)

    def _bank(self, t: int) -> tuple[torch.Tensor, ...]:
        banks = [b for b in (self.shared, self.specific[t] if self.specific is not None else None) if b is not None]
        return tuple(torch.cat([getattr(b, name) for b in banks], dim=0) for name in ("w1", "b1", "w2", "b2"))

    def expert_outputs(self, t: int, x: torch.Tensor) -> torch.Tensor:
        """(B, K, out_dim): every expert of type t (shared first, then t's own) applied to x."""
        w1, b1, w2, b2 = self._bank(t)
        k, d, h = w1.shape
        hid = torch.relu(x @ w1.permute(1, 0, 2).reshape(d, k * h) + b1.reshape(-1))  # (B, K*h)
        return torch.bmm(hid.reshape(-1, k, h).transpose(0, 1), w2).transpose(0, 1) + b2  # (B, K, o)

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        outs = []
        for t, x in enumerate(inputs):
            gate = torch.softmax(self.gates[t](x), dim=-1).unsqueeze(-1)  # (B, K, 1)
            outs.append((gate * self.expert_outputs(t, x)).sum(dim=1))
        return outs


class AdaptedNet(nn.Module):
    """deepctr net whose input columns [prefix | knowledge_1 | ... ] become [prefix | adaptor outputs].

    `prefix_width` columns pass through untouched (ids, history, numeric, plain dense groups); then come the raw
    knowledge vectors of widths `adaptor.dims` in order. The inner net was built with DenseFeat(out_dim) columns
    for the adaptor outputs at the end of its layout.
    """

    def __init__(self, net: nn.Module, adaptor: HybridExpertAdaptor, prefix_width: int):
        super().__init__()
        self.net, self.adaptor, self.prefix_width = net, adaptor, int(prefix_width)
        self.feature_index = net.feature_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start, inputs = self.prefix_width, []
        for d in self.adaptor.dims:
            inputs.append(x[:, start:start + d])
            start += d
        return self.net(torch.cat([x[:, :self.prefix_width], *self.adaptor(inputs)], dim=1))

    def get_regularization_loss(self) -> torch.Tensor:
        return self.net.get_regularization_loss()

    @property
    def aux_loss(self) -> torch.Tensor:
        return self.net.aux_loss
