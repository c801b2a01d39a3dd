"""Sizes of the generative family and the distillation pair (specs/generative, specs/efficiency)."""

SMALL = {
    "dcgan:dcgan_generator": {"stages": 1, "ngf": 8, "nz": 16},
    "dcgan:dcgan_discriminator": {"stages": 1, "ndf": 8},
    "ddpm_unet": {"base": 8, "steps": 20},
    "distill_teacher": {"hidden": 64},
    "cyclegan:cyclegan_generator": {"width": 4, "blocks": 1, "size": 16},
    "cyclegan:cyclegan_discriminator": {"width": 4, "size": 32},
    "stylegan_mini:stylegan_mini_generator": {"size": 8, "width": 8, "z_dim": 8, "w_dim": 8,
                                              "map_layers": 2},
    "stylegan_mini:stylegan_mini_discriminator": {"size": 8, "width": 8},
}

REFERENCE = {
    "dcgan:dcgan_generator": 3_576_704,
    "dcgan:dcgan_discriminator": 2_765_568,
    "cyclegan:cyclegan_generator": 11_378_179,
    "cyclegan:cyclegan_discriminator": 2_764_737,
}
