"""Sizes of the recurrent family: whole-sequence RNN/GRU/LSTM taggers and classifiers, attention
decoders stepped with `scan` (Bahdanau, Luong) and an image captioner (teacher-forced and
greedy). The small versions keep every structure (two bidirectional layers, several decoder
layers, input feeding, maxout pairs, four CNN stages) at a few dozen units, and no dropout, so
that optimized and unoptimized graphs give the same numbers in training mode."""

SMALL = {
    "rnn_classifier": {"vocab": 50, "embed": 8, "hidden": 12, "classes": 3, "p": 0.0},
    "gru_tagger": {"vocab": 50, "embed": 8, "hidden": 12, "tags": 5, "p": 0.0},
    "bilstm_tagger": {"vocab": 50, "embed": 8, "hidden": 12, "tags": 5, "p": 0.0},
    "seq2seq_bahdanau": {"src_vocab": 40, "tgt_vocab": 30, "embed": 8, "enc_hidden": 12,
                         "dec_hidden": 16, "attn": 10, "readout": 6},
    "seq2seq_luong": {"src_vocab": 40, "tgt_vocab": 30, "embed": 8, "hidden": 12, "layers": 2,
                      "p": 0.0},
    "image_captioner:image_captioner": {"size": 32, "width": 4, "vocab": 30, "embed": 12,
                                        "hidden": 16, "p": 0.0},
    "image_captioner:image_captioner_greedy": {"size": 32, "width": 4, "vocab": 30, "embed": 12,
                                               "hidden": 16, "steps": 4},
}

# Full-size counts (the specs' defaults); tests/test_scan.py rebuilds each from torch.nn modules.
REFERENCE = {
    "rnn_classifier": 3_152_898,
    "gru_tagger": 4_344_337,
    "bilstm_tagger": 4_932_105,
    "seq2seq_bahdanau": 80_450_000,
    "seq2seq_luong": 221_114_000,
    "image_captioner:image_captioner": 13_397_040,
    "image_captioner:image_captioner_greedy": 13_397_040,
}
