"""Reference architectures after SITS-NN-Classification (LSTM and Transformer), made exportable.

Both follow the upstream models' structure — a per-observation linear band embedding, the sequence
model, and the head `Linear → ReLU → BatchNorm1d → Dropout → Linear` — with these deliberate changes:

* Softmax is not part of `forward` (training uses cross-entropy on logits); the exported graph wraps the
  model in `WithSoftmax` so the ONNX output is probabilities.
* The LSTM takes left-padded series (the last step is the latest real observation, as upstream) and
  ignores the padding exactly (see `LSTMClassifier`).
* The Transformer takes the day of year as its own int64 input and a bool observation mask; the DOY
  table `pe[doy]` is a (non-persistent) buffer looked up in one vectorised gather, padded positions are
  excluded from attention (key padding mask) and from the mean pooling. Upstream fed `[B, T, C]` to an
  encoder built with `batch_first=False` and pooled over padding; ours is batch-first and masked.

Parameter names differ from upstream; `convert.py` maps them (see `UPSTREAM_NAME_MAP`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

MAX_DOY = 366


def classification_head(in_features: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    # Same layer order (and so the same state_dict indices 0, 2, 4) as SITS-NN's `fc`.
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.BatchNorm1d(hidden),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


class LSTMClassifier(nn.Module):
    """values [B, T, bands] (left-padded) → logits [B, classes]. No day of year: only the order counts.

    Padded steps are the steps whose every band equals `pad_value` (a real observation never normalises
    to exactly that in every band). Each row is rotated so its real observations come first, the LSTM
    runs from a zero state, and the output at the last real step is taken — so the answer for a series
    does not depend on how much padding the batch gives it — exactly for a unidirectional LSTM. The
    backward direction of a bidirectional one also reads the padding that follows, so its contract must
    not say `ignores_padding`: predict then gives it batches of one series length, unpadded.
    """

    def __init__(self, num_bands: int, num_classes: int, embed_size: int = 32, hidden_size: int = 64,
                 num_layers: int = 2, bidirectional: bool = False, head_hidden: int = 256,
                 dropout: float = 0.3, pad_value: float = 0.0):
        super().__init__()
        self.hparams = dict(num_bands=num_bands, num_classes=num_classes, embed_size=embed_size,
                            hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                            head_hidden=head_hidden, dropout=dropout, pad_value=pad_value)
        self.pad_value = pad_value
        directions = 2 if bidirectional else 1
        self.embedding = nn.Linear(num_bands, embed_size)
        self.lstm = nn.LSTM(embed_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                            batch_first=True)
        self.head = classification_head(directions * hidden_size, head_hidden, num_classes, dropout)

    def forward(self, values: Tensor) -> Tensor:
        steps = values.shape[1]
        n = (values != self.pad_value).any(dim=-1).sum(dim=1)  # real observations per row
        # left padding → real observations first: row b reads step (t + T − n_b) mod T
        order = torch.arange(steps, device=values.device).unsqueeze(0) + (steps - n).unsqueeze(1)
        order = torch.where(order >= steps, order - steps, order)  # `%` by a dynamic size does not export
        x = values.gather(1, order.unsqueeze(-1).expand(-1, -1, values.shape[2]))
        out, _ = self.lstm(self.embedding(x))
        last = (n - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, out.shape[2])
        return self.head(out.gather(1, last).squeeze(1))


def sinusoidal_table(dim: int, max_doy: int = MAX_DOY) -> Tensor:
    """Rows 0..=max_doy: row d = [sin(d·w0), cos(d·w0), sin(d·w1), …], w_i = 10000^(−2i/dim); row 0 = 0."""
    if dim % 2:
        raise ValueError(f"the DOY encoding needs an even dimension, got {dim}")
    doy = torch.arange(max_doy + 1, dtype=torch.float64).unsqueeze(1)
    w = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    pe = torch.zeros(max_doy + 1, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(doy * w)
    pe[:, 1::2] = torch.cos(doy * w)
    pe[0] = 0.0  # padding
    return pe.float()


class TransformerClassifier(nn.Module):
    """(values [B,T,bands], doy int64 [B,T], mask bool [B,T]) → logits [B, classes].

    Each observation is `[embedding(values) ‖ pe[doy]]` (2·d_model channels), then a TransformerEncoder
    with a key padding mask, then the mean over real observations, then the head.
    """

    def __init__(self, num_bands: int, num_classes: int, d_model: int = 32, nhead: int = 4,
                 num_layers: int = 3, dim_feedforward: int = 128, head_hidden: int = 256,
                 dropout: float = 0.1, head_dropout: float = 0.3):
        super().__init__()
        self.hparams = dict(num_bands=num_bands, num_classes=num_classes, d_model=d_model, nhead=nhead,
                            num_layers=num_layers, dim_feedforward=dim_feedforward,
                            head_hidden=head_hidden, dropout=dropout, head_dropout=head_dropout)
        width = 2 * d_model
        self.embedding = nn.Linear(num_bands, d_model)
        self.register_buffer("pe", sinusoidal_table(d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(width, nhead, dim_feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(width),
                                             enable_nested_tensor=False)
        self.head = classification_head(width, head_hidden, num_classes, head_dropout)

    @property
    def doy_dim(self) -> int:
        return self.pe.shape[1]

    def forward(self, values: Tensor, doy: Tensor, mask: Tensor) -> Tensor:
        time = self.pe[doy.clamp(0, MAX_DOY)]
        x = torch.cat([self.embedding(values), time], dim=-1)
        # A series without any observation would make attention all −inf (NaN); let it attend to step 0.
        first = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0) == 0
        attend = mask | (first & ~mask.any(dim=1, keepdim=True))
        x = self.encoder(x, src_key_padding_mask=~attend)
        w = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)


class TempCNNClassifier(nn.Module):
    """TempCNN (Pelletier et al. 2019): (values [B,T,bands], doy int64 [B,T], mask bool [B,T]) → logits.

    Three 1-D convolutions over time (kernel 5, batch norm, ReLU, dropout), then the whole feature map
    flattened into a dense layer (batch norm, ReLU, dropout) and the output layer. The flatten needs a
    fixed length: the right-padded input is padded on in the graph to `max_length` steps (a series
    `predict` gives is never longer: it thins longer ones to `max_length`). Padded steps are zeros
    whatever the batch's length, so the answer does not depend on how much padding a batch has —
    the contract may say `ignores_padding`. Each step also carries `doy_dim` sinusoidal day-of-year
    channels (zeros on padding), because cloud-screened series are irregular in time.
    """

    def __init__(self, num_bands: int, num_classes: int, max_length: int = 64, doy_dim: int = 8,
                 filters: int = 32, kernel_size: int = 5, dense: int = 128, dropout: float = 0.2):
        super().__init__()
        self.hparams = dict(num_bands=num_bands, num_classes=num_classes, max_length=max_length,
                            doy_dim=doy_dim, filters=filters, kernel_size=kernel_size, dense=dense,
                            dropout=dropout)
        self.max_length = max_length
        self.register_buffer("pe", sinusoidal_table(doy_dim), persistent=False)
        layers = []
        channels = num_bands + doy_dim
        for _ in range(3):
            layers += [nn.Conv1d(channels, filters, kernel_size, padding=kernel_size // 2),
                       nn.BatchNorm1d(filters), nn.ReLU(), nn.Dropout(dropout)]
            channels = filters
        self.conv = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(filters * max_length, dense), nn.BatchNorm1d(dense),
                                  nn.ReLU(), nn.Dropout(dropout), nn.Linear(dense, num_classes))

    @property
    def doy_dim(self) -> int:
        return self.pe.shape[1]

    def forward(self, values: Tensor, doy: Tensor, mask: Tensor) -> Tensor:
        w = mask.unsqueeze(-1).to(values.dtype)
        x = torch.cat([values * w, self.pe[doy.clamp(0, MAX_DOY)] * w], dim=-1)  # [B, T, C]
        # pad the time axis to max_length: concatenate zeros, keep the first max_length steps
        pad = torch.zeros(x.shape[0], self.max_length, x.shape[2], dtype=x.dtype, device=x.device)
        x = torch.cat([x, pad], dim=1)[:, : self.max_length]
        return self.head(self.conv(x.transpose(1, 2)))


class WithSoftmax(nn.Module):
    """The graph that gets exported: the model plus softmax, so the output is probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs: Tensor) -> Tensor:
        return torch.softmax(self.model(*inputs), dim=-1)


ARCHITECTURES = {"lstm": LSTMClassifier, "transformer": TransformerClassifier, "tempcnn": TempCNNClassifier}


def build(arch: str, **hparams) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture '{arch}' (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[arch](**hparams)
