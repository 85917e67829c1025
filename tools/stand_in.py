"""Writes a stand-in CLIP model in sentence-transformers format.

The real `clip-ViT-B-32` weights come from the Hugging Face hub, which is not
always reachable (CI, air-gapped machines). A stand-in has the same on-disk
layout as the real model (`modules.json` + `0_CLIPModel/`), so it exercises the
exact loading path a user's model takes, but its weights are random:

- `tiny`: a few-layer CLIP for fast tests;
- `base`: the ViT-B/32 architecture (same compute as the real model), for
  throughput benchmarks.

A stand-in folder carries `clipdedup_stand_in.json`; runs that use it say so
in their console output and in `summary.json` (`model_is_stand_in: true`).

    clipdedup make-stand-in --size tiny --output models/clip-tiny
"""

from __future__ import annotations

import json
import os
import tempfile

from transforms.embed.model_files import STAND_IN_MARKER

_SIZES = {
    "tiny": dict(
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, image_size=224, patch_size=32),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=77),
        projection_dim=32,
    ),
    # openai/clip-vit-base-patch32 dimensions.
    "base": dict(
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, image_size=224, patch_size=32),
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                  num_attention_heads=8, max_position_embeddings=77),
        projection_dim=512,
    ),
}
SIZES = tuple(_SIZES)


def _byte_level_tokenizer():
    """A CLIP BPE tokenizer over the byte alphabet, with no merges.

    Text is not used by clipdedup; the tokenizer exists only so the processor
    saves and loads exactly like the real model's.
    """
    import transformers

    # GPT-2/CLIP byte-to-unicode table: printable bytes map to themselves.
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
                 + list(range(ord("\xae"), ord("\xff") + 1)))
    extra = iter(range(256, 512))
    symbols = [chr(b) if b in printable else chr(next(extra)) for b in range(256)]
    vocab = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return transformers.CLIPTokenizer(vocab={tok: i for i, tok in enumerate(vocab)}, merges=[])


def write_stand_in(output: str, size: str = "tiny", seed: int = 0,
                   image_size: int | None = None) -> str:
    """Writes a random-weight CLIP in sentence-transformers format to `output`.

    Args:
        output: folder to create (must not exist or be empty).
        size: `tiny` (tests) or `base` (ViT-B/32 compute, benchmarks).
        seed: torch seed, so two stand-ins of one size are identical.
        image_size: side of the square input the model takes (None: 224, as
            ViT-B/32); a multiple of the patch size, 32. Real CLIPs exist at
            224 and 336.

    Returns:
        The folder path, loadable with `SentenceTransformer(output)`.
    """
    if size not in _SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import CLIPModel as STCLIPModel

    spec = _SIZES[size]
    if image_size is not None:
        patch = spec["vision"]["patch_size"]
        if image_size < patch or image_size % patch:
            raise ValueError(f"image_size must be a multiple of {patch}, got {image_size}")
        spec = dict(spec, vision=dict(spec["vision"], image_size=image_size))
    torch.manual_seed(seed)
    config = transformers.CLIPConfig(
        text_config=dict(spec["text"], vocab_size=2 * 256 + 2, bos_token_id=512,
                         eos_token_id=513, pad_token_id=513),
        vision_config=spec["vision"],
        projection_dim=spec["projection_dim"],
    )
    model = transformers.CLIPModel(config).eval()
    with tempfile.TemporaryDirectory() as hf_dir:
        model.save_pretrained(hf_dir)
        tokenizer = _byte_level_tokenizer()
        image_processor = transformers.CLIPImageProcessor(
            size={"shortest_edge": spec["vision"]["image_size"]},
            crop_size={"height": spec["vision"]["image_size"],
                       "width": spec["vision"]["image_size"]})
        transformers.CLIPProcessor(image_processor=image_processor,
                                   tokenizer=tokenizer).save_pretrained(hf_dir)
        st_model = SentenceTransformer(modules=[STCLIPModel(hf_dir, _from_auto_load=True)],
                                       device="cpu")
        st_model.save(output)
    with open(os.path.join(output, STAND_IN_MARKER), "w", encoding="utf-8") as f:
        json.dump({"stand_in": True, "size": size, "seed": seed,
                   "image_size": spec["vision"]["image_size"],
                   "note": "random weights; not the real clip-ViT-B-32"}, f, indent=2)
    return output
