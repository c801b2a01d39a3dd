"""Sizes of the multimodal and small foundation models (specs/multimodal/): towers of width 32
with one layer and two heads, 16x16 images of 4x4 patches (MAE: 16 patches, 4 of them visible),
8-token texts over a 64-token vocabulary, 16 mel bins. No published reference counts exist for
these small versions; the specs' headers state their counts."""

SMALL = {
    "clip_mini": {"embed": 16, "image": 16, "patch": 4, "vision_width": 32, "vision_layers": 1,
                  "vision_heads": 2, "vocab": 64, "ctx": 8, "text_width": 32, "text_layers": 1,
                  "text_heads": 2},
    "whisper_mini": {"mels": 16, "width": 32, "heads": 2, "audio_layers": 1, "vocab": 64,
                     "text_ctx": 16, "text_layers": 1},
    "mae_mini": {"image": 16, "patch": 4, "width": 32, "layers": 1, "heads": 2,
                 "decoder_width": 16, "decoder_layers": 1, "decoder_heads": 2},
}

REFERENCE = {}
