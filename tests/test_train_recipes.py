"""Training recipes: VAE, GAN (three losses), DDPM, distillation, contrastive pairs, the
contractive penalty and random inputs in the trainer. Each trains a small model on the built-in
digits for a few epochs and asserts that it improved; the loss formulas and the diffusion sampler
are checked against independent computations."""

from __future__ import annotations

import math
import os
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import nndsl
from nndsl.cli import main
from nndsl.train import recipes, sampling
from nndsl.train.losses import loss_value
from nndsl.train.run import run_training

ROOT = Path(__file__).resolve().parents[1]
GEN = ROOT / "specs" / "generative"


def first_last(history, key):
    return history[0][key], history[-1][key]


def test_vae_elbo_improves_and_samples(tmp_path):
    r = run_training(GEN / "vae.nn", params={"hidden": 64}, overrides={"epochs": 6},
                     out=tmp_path / "vae", quiet=True)
    loss0, loss1 = first_last(r.history, "train_loss")
    mmd0, mmd1 = first_last(r.history, "val_mmd")
    assert loss1 < loss0 - 1.0, (loss0, loss1)        # nats per image
    assert mmd1 < mmd0, (mmd0, mmd1)
    samples, name = sampling.sample_run(tmp_path / "vae", n=9, seed=1)
    assert name == "vae" and samples.shape == (9, 64)
    assert 0 <= float(samples.min()) and float(samples.max()) <= 1
    again, _ = sampling.sample_run(tmp_path / "vae", n=9, seed=1)
    assert torch.equal(samples, again)


def test_vae_run_with_random_inputs_resumes_exactly(tmp_path):
    def interrupt(run, epoch, b):
        if (epoch, b) == (1, 5):
            os.kill(os.getpid(), signal.SIGINT)
    kw = dict(params={"hidden": 32}, overrides={"epochs": 3}, quiet=True)
    a = run_training(GEN / "vae.nn", out=tmp_path / "a", **kw)
    b = run_training(GEN / "vae.nn", out=tmp_path / "b", hooks=[interrupt], **kw)
    assert b.interrupted
    b2 = run_training(GEN / "vae.nn", resume=tmp_path / "b", quiet=True)
    assert [h["train_loss"] for h in b2.history] == [h["train_loss"] for h in a.history]
    assert [h["val_mmd"] for h in b2.history] == [h["val_mmd"] for h in a.history]


SMALL_DCGAN = {"stages": 0, "channels": 1, "nz": 16, "ngf": 16, "ndf": 16}


def test_dcgan_samples_get_closer_to_the_data(tmp_path, capsys):
    r = run_training(GEN / "dcgan.nn", params=SMALL_DCGAN, overrides={"epochs": 4},
                     out=tmp_path / "gan", quiet=True)
    mmd0, mmd1 = first_last(r.history, "val_mmd")
    assert mmd1 < 0.8 * mmd0, (mmd0, mmd1)
    assert all(math.isfinite(h["train_d_loss"]) for h in r.history)
    assert (tmp_path / "gan/checkpoints/best.state.json").exists()
    assert main(["sample", str(tmp_path / "gan"), "-n", "8"]) == 0
    assert (tmp_path / "gan/samples.png").read_bytes()[:4] == b"\x89PNG"
    assert "8 samples of dcgan_generator, shape [8, 1, 8, 8]" in capsys.readouterr().out


@pytest.mark.parametrize("loss", ["minimax", "wgan_gp"])
def test_gan_losses_train(tmp_path, loss):
    spec = (GEN / "wgan.nn").read_text().replace('loss="wgan_gp", d_steps=5',
                                                 f'loss="{loss}", d_steps=2')
    path = tmp_path / "gan.nn"
    path.write_text(spec)
    r = run_training(path, params={"ngf": 16, "ndf": 16}, overrides={"epochs": 3},
                     out=tmp_path / loss, quiet=True)
    mmd0, mmd1 = first_last(r.history, "val_mmd")
    assert mmd1 < mmd0, (mmd0, mmd1)


def _gan_runtime(kind):
    critic = torch.nn.Linear(4, 1)
    run = SimpleNamespace(noise_gen=torch.Generator().manual_seed(0))
    g = recipes.GAN.__new__(recipes.GAN)
    g.run, g.loss_kind, g.gp, g.d_in = run, kind, 10.0, "x"
    g.d = lambda x: critic(x)
    return g, critic


def test_gan_loss_formulas():
    real, fake = torch.randn(6, 4), torch.randn(6, 4)
    g, critic = _gan_runtime("minimax")
    sr, sf = critic(real).reshape(-1), critic(fake).reshape(-1)
    want_d = -(torch.log(torch.sigmoid(sr)).mean() + torch.log(1 - torch.sigmoid(sf)).mean())
    torch.testing.assert_close(g.d_loss(real, fake), want_d)
    torch.testing.assert_close(g.g_loss(fake), torch.log(1 - torch.sigmoid(sf)).mean())
    g.loss_kind = "non_saturating"
    torch.testing.assert_close(g.g_loss(fake), -torch.log(torch.sigmoid(sf)).mean())
    g.loss_kind = "wgan_gp"
    # a linear critic's gradient is its weight everywhere: the penalty is (|w| - 1)^2
    penalty = 10.0 * (critic.weight.norm() - 1) ** 2
    torch.testing.assert_close(g.d_loss(real, fake), sf.mean() - sr.mean() + penalty)
    torch.testing.assert_close(g.g_loss(fake), -sf.mean())


def test_ddpm_trains_and_samples(tmp_path):
    r = run_training(GEN / "ddpm_unet.nn", params={"base": 8, "steps": 40},
                     overrides={"epochs": 3}, out=tmp_path / "ddpm", quiet=True)
    loss0, loss1 = first_last(r.history, "train_loss")
    mmd0, mmd1 = first_last(r.history, "val_mmd")
    assert loss1 < 0.7 * loss0, (loss0, loss1)
    assert mmd1 < mmd0, (mmd0, mmd1)
    samples, _ = sampling.sample_run(tmp_path / "ddpm", n=4)
    assert samples.shape == (4, 1, 8, 8) and 0 <= float(samples.min()) <= float(samples.max()) <= 1


def test_ddpm_noising_and_sampler_against_the_formulas():
    """With an oracle denoiser for data that is one point x*, ancestral sampling must return x*:
    that checks the schedule, the noising formula and every step of the sampler at once."""
    c = nndsl.compile(GEN / "ddpm_unet.nn", params={"base": 8, "steps": 100})
    from nndsl.train.config import resolve
    cfg = resolve(c, c.train_section)
    assert cfg.recipe.args["steps"] == 100
    star = torch.rand(1, 1, 8, 8) * 2 - 1

    ddpm = recipes.DDPM.__new__(recipes.DDPM)

    class Oracle(torch.nn.Module):
        def forward(self, x, t):
            ab = ddpm.alpha_bar[t].float().reshape(-1, 1, 1, 1)
            return (x - ab.sqrt() * star) / (1 - ab).sqrt()

    run = SimpleNamespace(c=c, cfg=cfg, model=Oracle(), run_model=None, device=torch.device("cpu"))
    recipes.DDPM.__init__(ddpm, run, cfg.recipe_info)
    betas = torch.linspace(5e-4, 0.1, 100, dtype=torch.float64)
    torch.testing.assert_close(ddpm.alpha_bar, torch.cumprod(1 - betas, 0))
    x0, eps, t = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8), torch.tensor([0, 50, 99])
    ab = torch.cumprod(1 - betas, 0)[t].float().reshape(-1, 1, 1, 1)
    torch.testing.assert_close(ddpm.noisy(x0, t, eps), ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
    out = ddpm.sample(5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, ((star.clamp(-1, 1) + 1) / 2).expand(5, -1, -1, -1),
                               atol=1e-4, rtol=0)


def test_distillation_from_a_trained_teacher(tmp_path):
    eff = ROOT / "specs" / "efficiency"
    t = run_training(eff / "distill_teacher.nn", params={"hidden": 128},
                     overrides={"epochs": 4}, out=tmp_path / "teacher", quiet=True)
    assert t.best["val_accuracy"] > 0.9
    weights = tmp_path / "teacher/checkpoints/best.safetensors"
    student = (eff / "distill_student.nn").read_text().replace(
        "../../runs/teacher/checkpoints/best.safetensors", str(weights))
    # the spec's teacher is 512 wide, the trained one 128: a located error, not a crash
    path = tmp_path / "student.nn"
    shutil.copy(eff / "distill_teacher.nn", tmp_path)   # a teacher lies in the spec's folder tree
    path.write_text(student)
    with pytest.raises(nndsl.NndslError, match="the teacher's weights"):
        run_training(path, overrides={"epochs": 1}, out=tmp_path / "bad", quiet=True)
    teacher_spec = tmp_path / "teacher128.nn"
    teacher_spec.write_text((eff / "distill_teacher.nn").read_text()
                            .replace("hidden: int = 512", "hidden: int = 128"))
    path.write_text(student.replace('teacher="distill_teacher.nn"', f'teacher="{teacher_spec}"'))
    s = run_training(path, overrides={"epochs": 6}, out=tmp_path / "student", quiet=True)
    assert s.best["val_accuracy"] > 0.85
    loss0, loss1 = first_last(s.history, "train_loss")
    assert loss1 < loss0


def test_distillation_loss_formula():
    c = nndsl.compile(ROOT / "specs/efficiency/distill_student.nn")
    from nndsl.train.config import resolve
    cfg = resolve(c, c.train_section)
    d = recipes.Distill.__new__(recipes.Distill)
    d.T, d.alpha, d.output, d.info = 4.0, 0.7, "logits", cfg.recipe_info
    teacher_logits = torch.randn(5, 10)
    d.teacher = lambda **xs: teacher_logits
    student = torch.nn.Linear(64, 10)
    d.run = SimpleNamespace(run_model=lambda image: student(image), output_names=["logits"],
                            cfg=cfg)
    x, y = torch.randn(5, 64), torch.randint(0, 10, (5,))
    loss, _ = d.forward_loss({"image": x, "label": y}, {"image": x}, True)
    s = student(x)
    p_t = F.softmax(teacher_logits / 4, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / 4, -1))).sum(-1).mean() * 16
    torch.testing.assert_close(loss, 0.3 * F.cross_entropy(s, y) + 0.7 * kl)


def _knn_accuracy(model, xs, ys) -> float:
    from sklearn.neighbors import KNeighborsClassifier
    with torch.no_grad():
        e = F.normalize(model(image=xs), dim=1).numpy()
    half = len(e) // 2
    knn = KNeighborsClassifier(5).fit(e[:half], ys[:half])
    return knn.score(e[half:], ys[half:])


def test_contrastive_pairs_learn_useful_embeddings(tmp_path):
    from sklearn.datasets import load_digits
    spec = ROOT / "examples" / "contrastive.nn"
    r = run_training(spec, overrides={"epochs": 5}, out=tmp_path / "c", quiet=True)
    loss0, loss1 = first_last(r.history, "train_loss")
    assert loss1 < loss0
    d = load_digits()
    xs = torch.tensor(d.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    c = nndsl.compile(spec)
    before = _knn_accuracy(c.to_torch(seed=0).eval(), xs, d.target)
    after = _knn_accuracy(c.to_torch(weights=str(tmp_path / "c/checkpoints/best.safetensors"))
                          .eval(), xs, d.target)
    assert after > before, (before, after)


def test_contractive_penalty_is_the_jacobian_norm():
    enc = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Sigmoid())
    x = torch.randn(3, 6, requires_grad=True)
    got = loss_value("contractive", [enc(x), x], {})
    want = sum(torch.autograd.functional.jacobian(enc, x[i]).pow(2).sum() for i in range(3)) / 3
    torch.testing.assert_close(got, want)
    got.backward()                      # differentiable: it trains the encoder
    assert enc[0].weight.grad is not None


def test_contractive_autoencoder_trains(tmp_path):
    r = run_training(GEN / "contractive_autoencoder.nn", overrides={"epochs": 3},
                     out=tmp_path / "cae", quiet=True)
    loss0, loss1 = first_last(r.history, "train_loss")
    assert loss1 < loss0 and math.isfinite(r.history[-1]["val_loss"])


def test_denoising_autoencoder_draws_its_mask_per_batch(tmp_path):
    r = run_training(GEN / "denoising_autoencoder.nn", overrides={"epochs": 3},
                     out=tmp_path / "dae", quiet=True)
    loss0, loss1 = first_last(r.history, "train_loss")
    assert loss1 < loss0


def test_recipe_errors(tmp_path, capsys):
    bad = {
        "gan_loss": ('recipe = gan(discriminator="wgan_critic", loss="hinge")',
                     "`loss` is one of minimax, non_saturating, wgan_gp"),
        "gan_no_model": ('recipe = gan(discriminator="critic")', "the discriminator `critic`"),
        "own_loss": ('recipe = gan(discriminator="wgan_critic")\n    loss = mean(image)',
                     "the gan recipe defines its own loss"),
        "unknown": ("recipe = diffusion", "unknown recipe `diffusion`"),
    }
    base = (GEN / "wgan.nn").read_text()
    old = 'recipe = gan(discriminator="wgan_critic", loss="wgan_gp", d_steps=5, gp=10.0)'
    for name, (entry, message) in bad.items():
        p = tmp_path / f"{name}.nn"
        p.write_text(base.replace(old, entry))
        assert main(["train", str(p), "--out", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert message in err and f"{p}:" in err, err
        assert not (tmp_path / name).exists()
    assert main(["sample", str(tmp_path / "nothing")]) == 1
    assert "not a run folder" in capsys.readouterr().err


def test_synthetic_graphs_data_and_a_gcn_that_learns_it(tmp_path):
    from nndsl.train import data as data_mod
    c = nndsl.compile(ROOT / "examples" / "graph_classifier.nn")
    from nndsl.train.config import resolve
    cfg = resolve(c, c.train_section)
    d = data_mod.load(cfg.data, c.input_types, cfg.targets, 0, None)
    x, a, y = d.arrays["x"], d.arrays["adj"], d.arrays["label"]
    assert x.shape == (600, 16, 4) and a.shape == (600, 16, 16) and y.shape == (600,)
    assert torch.equal(a, a.transpose(1, 2)) and float(a.diagonal(dim1=1, dim2=2).abs().sum()) == 0
    degree = a.sum((1, 2)) / 16
    means = [float(degree[y == k].mean()) for k in range(3)]
    assert means[0] > means[1] > means[2]          # more communities, fewer edges
    r = run_training(ROOT / "examples" / "graph_classifier.nn", overrides={"epochs": 10},
                     out=tmp_path / "g", quiet=True)
    assert r.best["val_accuracy"] > 0.7            # chance is 1/3
