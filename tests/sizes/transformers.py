"""Sizes of the attention and transformer family (specs/transformers/): tiny vocabularies, width
32, one layer per stack, 2-4 heads, no dropout (so that train-mode outputs and gradients are
deterministic across optimization levels). DETR starts its decoder from learned content queries
(`learned_tgt`): from DETR's zeros, the first decoder self-attention's weights get no gradient."""

SMALL = {
    "transformer": {"vocab": 64, "width": 32, "heads": 4, "ffn": 64, "enc_layers": 1,
                    "dec_layers": 1, "p": 0.0},
    "bert_base": {"vocab": 64, "positions": 32, "width": 32, "heads": 4, "ffn": 64,
                  "layers": 1, "p": 0.0, "masked": True},
    "gpt2": {"vocab": 64, "ctx": 32, "width": 32, "heads": 4, "layers": 1, "p": 0.0},
    "t5_small": {"vocab": 64, "width": 32, "d_kv": 8, "heads": 4, "ffn": 64, "enc_layers": 1,
                 "dec_layers": 1, "buckets": 8, "max_distance": 16, "p": 0.0},
    "vit_b16": {"classes": 10, "image": 32, "patch": 8, "width": 32, "heads": 2, "mlp": 64,
                "layers": 1},
    "detr": {"classes": 5, "queries": 8, "width": 32, "heads": 4, "ffn": 64, "enc_layers": 1,
             "dec_layers": 1, "backbone_width": 8, "blocks": [1, 1], "p": 0.0, "learned_tgt": True},
    "llama_mini": {"vocab": 64, "ctx": 32, "width": 32, "heads": 4, "kv_heads": 2, "ffn": 64,
                   "layers": 1},
}

REFERENCE = {
    "bert_base": 109_482_240,       # HuggingFace BertModel (with pooler)
    "gpt2": 124_439_808,            # GPT-2 small, tied embeddings
    "t5_small": 60_506_624,         # shared embedding counted once, lm_head tied
    "vit_b16": 86_567_656,          # torchvision vit_b_16
}
