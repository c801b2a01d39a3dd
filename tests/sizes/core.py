"""Sizes of the first specs: fundamentals, the first vision and sequence models, gpt_mini."""

SMALL = {
    "resnet18": {"classes": 10, "width": 16},
    "resnet50": {"classes": 10, "width": 16},
    "gpt_mini": {"layers": 2},
}

REFERENCE = {
    "perceptron": 5,
    "mlp": 235_914,
    "mnist_cnn": 121_930,
    "lenet5": 61_706,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "lstm_sentiment": 1_329_729,
    "gpt_mini": 4_470_272,
}
