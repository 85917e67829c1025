"""CLIP's image tower as clipdedup runs it: the same vectors for less work.

`image_tower(clip)` returns an `nn.Module` computing what transformers'
`CLIPModel.get_image_features` computes, with two exact rewrites:

- **The last layer for the CLS token only.** The image vector reads nothing
  of the last layer but its CLS token, so that layer computes keys and
  values for every token and the query, attention output and MLP for CLS
  alone.
- **quick_gelu as one SiLU.** CLIP's activation x * sigmoid(1.702 x) equals
  SiLU(1.702 x) / 1.702; the 1.702 is folded into each MLP's first Linear
  and the 1/1.702 into its second, so the MLP's largest tensor takes one
  fused pass instead of three.

docs/throughput.md has what each rewrite saves.

Folding rewrites the vision MLPs in place and keeps each module's output
(`mlp(x)` is unchanged up to float rounding, checked layer by layer on a
probe; a layer that disagrees is put back). The weights are scaled where
they lie, so the model takes no extra memory, and `SentenceTransformer.encode`
on the same model still gives the same vectors. Their pages are made
writable in one system call first (`allocator.prefault_for_writing`): the
loaded weights are memory-mapped from the safetensors file, and the first
write to each 4 KB page would otherwise fault on its own (docs/nightly.md,
"The fixed cost of a run"). Every backend runs this
module: torch directly, torch-int8 after quantising its Linear layers,
onnx-int8 as its ONNX export. `image_tower` checks the module against the
stock forward on a probe batch and falls back to the stock forward, with a
warning, where they disagree (a transformers release that changes the
layer's shape), so a rewrite can cost speed but never change vectors.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

QUICK_GELU = 1.702
# Probe agreement: lowest cosine between rewritten and stock outputs.
MIN_COSINE = 1 - 1e-5


def stock_image_features(clip, pixel_values):
    """transformers' own `get_image_features` (the raw model forward)."""
    out = clip.get_image_features(pixel_values=pixel_values)
    return getattr(out, "pooler_output", out)


def _is_quick_gelu(activation) -> bool:
    import torch

    x = torch.linspace(-8, 8, 1601)
    with torch.inference_mode():
        return bool(torch.allclose(activation(x), x * torch.sigmoid(QUICK_GELU * x), atol=1e-6))


def _probe(shape: tuple[int, ...], like):
    """A fixed random input on `like`'s device and dtype, to compare forwards on."""
    import torch

    probe = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    return probe.to(like.device, like.dtype)


def _scale_mlp(mlp, factor: float) -> None:
    """fc1 (weight and bias) times `factor`, fc2's weight divided by it, in place."""
    import torch

    from transforms.embed.allocator import prefault_for_writing

    with torch.no_grad():
        for parameter in (mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight):
            prefault_for_writing(parameter)
        mlp.fc1.weight.mul_(factor)
        mlp.fc1.bias.mul_(factor)
        mlp.fc2.weight.div_(factor)


def fold_quick_gelu(clip) -> int:
    """Rewrites every vision MLP whose activation is quick_gelu as
    fc1' -> SiLU -> fc2' (see the module docstring); returns how many were
    rewritten. Idempotent: a rewritten MLP no longer has quick_gelu."""
    import torch

    folded = 0
    for layer in clip.vision_model.encoder.layers:
        mlp = layer.mlp
        if not _is_quick_gelu(mlp.activation_fn):
            continue
        probe = _probe((4, mlp.fc1.weight.shape[1]), like=mlp.fc1.weight)
        activation = mlp.activation_fn
        with torch.inference_mode():
            expected = mlp(probe)
        _scale_mlp(mlp, QUICK_GELU)  # in place: no second copy of the weights
        mlp.activation_fn = torch.nn.SiLU()
        with torch.inference_mode():
            got = mlp(probe)
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max())):
            _scale_mlp(mlp, 1 / QUICK_GELU)  # back as loaded, to within float rounding
            mlp.activation_fn = activation
            log.warning("quick_gelu fold disagreed on a probe; that MLP is left as loaded")
            continue
        folded += 1
    return folded


def _last_layer_cls(layer, hidden):
    """A `CLIPEncoderLayer` applied to `hidden` [B, T, D], returning only the
    CLS row [B, D] (keys and values from every token, the rest for CLS)."""
    import torch.nn.functional as F

    attn = layer.self_attn
    batch, tokens, width = hidden.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    x = layer.layer_norm1(hidden)
    query = attn.q_proj(x[:, :1]).view(batch, 1, heads, head_dim).transpose(1, 2)
    key = attn.k_proj(x).view(batch, tokens, heads, head_dim).transpose(1, 2)
    value = attn.v_proj(x).view(batch, tokens, heads, head_dim).transpose(1, 2)
    out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
    cls = hidden[:, 0] + attn.out_proj(out.transpose(1, 2).reshape(batch, width))
    return cls + layer.mlp(layer.layer_norm2(cls))


def _make_tower(clip, rewritten: bool):
    import torch

    class ImageTower(torch.nn.Module):
        """pixel_values [B, 3, S, S] -> image features [B, D] (not normalised)."""

        def __init__(self, clip, rewritten: bool):
            super().__init__()
            self.clip = clip
            self.rewritten = rewritten

        def forward(self, pixel_values):
            if not self.rewritten:
                return stock_image_features(self.clip, pixel_values)
            vision = self.clip.vision_model
            hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
            for layer in vision.encoder.layers[:-1]:
                hidden = layer(hidden, None)
            cls = _last_layer_cls(vision.encoder.layers[-1], hidden)
            return self.clip.visual_projection(vision.post_layernorm(cls))

    return ImageTower(clip, rewritten).eval()


def _agreement(a, b) -> float:
    import torch.nn.functional as F

    return float(F.cosine_similarity(a.float(), b.float(), dim=1).min())


def image_tower(clip, size: int, rewrite: bool = True) -> Any:
    """The vision tower of a transformers `CLIPModel` as an `nn.Module`:
    rewritten (folds quick_gelu in place, see `fold_quick_gelu`) and checked
    against the stock forward on a probe batch, or the stock forward where
    `rewrite` is False or the check fails."""
    import torch

    if not rewrite:
        return _make_tower(clip, rewritten=False)
    probe = _probe((2, 3, size, size), like=clip.visual_projection.weight)
    with torch.inference_mode():
        expected = stock_image_features(clip, probe)
    fold_quick_gelu(clip)
    tower = _make_tower(clip, rewritten=True)
    try:
        with torch.inference_mode():
            agreement = _agreement(tower(probe), expected)
    except Exception as exc:  # noqa: BLE001 - any failure means: use the stock forward
        log.warning("CLIP tower rewrite failed on a probe (%s); using the stock forward", exc)
        return _make_tower(clip, rewritten=False)
    if agreement < MIN_COSINE:
        log.warning("CLIP tower rewrite disagreed with the stock forward (cosine %.7f); "
                    "using the stock forward", agreement)
        return _make_tower(clip, rewritten=False)
    return tower
