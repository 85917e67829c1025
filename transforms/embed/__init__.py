"""Stage 4, embed: decoded pixels -> L2-normalised CLIP vectors, with the model runtime.

- `images.py`: `EmbedImages` (the Beam stage, through RunInference) and
  `SentenceTransformerImageHandler` (loads the model by hub name, local or
  `gs://` folder);
- `descriptors.py`: `DescriptorHandler`, the model-free embedders (`--model phash`,
  `color-histogram`, `hog`) and torchvision CNNs where their weights are on disk;
- `model_files.py`: what a model folder says (width, input size, stand-in
  marker), read before any pipeline starts;
- `backends.py`: the image encoder a worker runs (torch fp32, torch int8,
  ONNX int8), built from the model's vision tower;
- `clip_tower.py`: the vision tower rewritten to run one tensor per batch;
- `allocator.py`: keeps freed memory for the next forward pass.
"""
