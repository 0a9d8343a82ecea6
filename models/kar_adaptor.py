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

from typing import Sequence

import torch
from torch import nn


def _expert(dim_in: int, hidden: int, dim_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.ReLU(), nn.Linear(hidden, dim_out))


class HybridExpertAdaptor(nn.Module):
    """Shared + type-specific experts with one softmax gate per knowledge type.

    Shared experts need one input width, so every type with a shared expert must have the same dimension (true
    for one text encoder); with n_shared=0 types may differ.
    """

    def __init__(self, dims: Sequence[int], n_shared: int = 2, n_specific: int = 2, hidden: int = 128,
                 out_dim: int = 32):
        super().__init__()
        dims = [int(d) for d in dims]
        if not dims:
            raise ValueError("HybridExpertAdaptor: no knowledge types")
        if n_shared and len(set(dims)) > 1:
            raise ValueError(f"HybridExpertAdaptor: shared experts need equal input dims, got {dims}")
        self.dims, self.out_dim = dims, int(out_dim)
        self.shared = nn.ModuleList(_expert(dims[0], hidden, out_dim) for _ in range(n_shared))
        self.specific = nn.ModuleList(nn.ModuleList(_expert(d, hidden, out_dim) for _ in range(n_specific))
                                      for d in dims)
        self.gates = nn.ModuleList(nn.Linear(d, n_shared + n_specific) for d in dims)

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        outs = []
        for t, x in enumerate(inputs):
            experts = [e(x) for e in self.shared] + [e(x) for e in self.specific[t]]
            stacked = torch.stack(experts, dim=1)  # (B, K, o)
            gate = torch.softmax(self.gates[t](x), dim=-1).unsqueeze(-1)  # (B, K, 1)
            outs.append((gate * stacked).sum(dim=1))
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
