"""Sizes of the generative family and the distillation pair (specs/generative, specs/efficiency)."""

SMALL = {
    "dcgan:dcgan_generator": {"stages": 1, "ngf": 8, "nz": 16},
    "dcgan:dcgan_discriminator": {"stages": 1, "ndf": 8},
    "ddpm_unet": {"base": 8, "steps": 20},
    "distill_teacher": {"hidden": 64},
}

REFERENCE = {
    "dcgan:dcgan_generator": 3_576_704,
    "dcgan:dcgan_discriminator": 2_765_568,
}
