"""Sizes of the meta-learning and similarity family (specs/meta/): the Conv-4 embeddings at 8
channels on 28x28 images (four blocks still take them to 1x1), Matching Networks with its full
context embeddings (a bidirectional LSTM and two attention-LSTM steps, so that the scan is
exercised), and a Siamese twin of four narrow convolutions on 48x48 images. No published
reference counts exist for these models; the specs' headers state their counts."""

SMALL = {
    "protonet": {"width": 8},
    "matching_net": {"width": 8, "fce": True, "steps": 2},
    "siamese": {"image": 48, "widths": [4, 8, 8, 16], "kernels": [5, 3, 3, 3], "hidden": 32},
}

REFERENCE = {}
