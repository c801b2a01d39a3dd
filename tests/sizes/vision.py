"""Sizes of the CNN family: AlexNet, VGG, ResNet-34/101/152, GoogLeNet, Inception-v3, DenseNet,
MobileNetV2, EfficientNet-B0, ShuffleNet V2, SqueezeNet and a U-Net. The small versions keep the
input resolution (224x224; Inception-v3 is tested at 107x107) but are narrow and shallow; every
block kind still occurs (stride-1 and stride-2 units, residual and projection paths, transitions
between dense blocks)."""

# Dropout is off in the small versions ("p": 0.0): test_passes compares the gradients of O0 and O1
# in train mode, which only agree without random masks.
SMALL = {
    "alexnet": {"classes": 10, "width": 8, "hidden": 64, "p": 0.0},
    "vgg16": {"classes": 10, "width": 8, "hidden": 64, "blocks": [1, 1, 2, 1, 1], "p": 0.0},
    "vgg19": {"classes": 10, "width": 8, "hidden": 64, "blocks": [1, 1, 1, 2, 1], "p": 0.0},
    "resnet34": {"classes": 10, "width": 8, "blocks": [1, 2, 1, 1]},
    "resnet101": {"classes": 10, "width": 8, "blocks": [1, 1, 2, 1]},
    "resnet152": {"classes": 10, "width": 8, "blocks": [2, 1, 1, 1]},
    "googlenet": {"classes": 10, "width": 8, "p": 0.0},
    "inception_v3": {"classes": 10, "width": 4, "p": 0.0, "size": 107},
    "densenet121": {"classes": 10, "growth": 8, "blocks": [2, 2, 2, 2], "init": 16},
    "mobilenet_v2": {"classes": 10, "width": 0.25, "depth": 0.5, "p": 0.0},
    "efficientnet_b0": {"classes": 10, "width": 0.25, "depth": 0.25, "p": 0.0, "sd": 0.0},
    "shufflenet_v2": {"classes": 10, "channels": [8, 16, 32, 64, 128], "repeats": [2, 1, 1]},
    "squeezenet": {"classes": 10, "width": 2, "p": 0.0},
    "unet": {"width": 8, "size": 32},
    "convnext_tiny": {"classes": 10, "dims": [8, 16, 24, 32], "depths": [1, 1, 2, 1], "sd": 0.0,
                      "size": 64},
    "swin_tiny": {"classes": 10, "embed": 16, "depths": [2, 2, 2, 2], "heads": [1, 2, 2, 4],
                  "window": 4, "sd": 0.0, "size": 64},
}

REFERENCE = {
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "resnet34": 21_797_672,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "googlenet": 6_624_904,
    "inception_v3": 23_834_568,
    "densenet121": 7_978_856,
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "shufflenet_v2": 2_278_604,
    "squeezenet": 1_248_424,
    "convnext_tiny": 28_589_128,
    "swin_tiny": 28_288_354,
}
