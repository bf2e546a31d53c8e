"""CycleGAN (Zhu et al., ICCV 2017): unpaired translation between a source and a target image domain.

Two generators G: S -> T and F: T -> S, two PatchGAN discriminators D_T, D_S, trained with
least-squares GAN losses (Mao et al. 2017) plus cycle consistency and an optional identity term:

    L_G = (D_T(G(s)) - 1)^2 + (D_S(F(t)) - 1)^2
          + λ_cyc (|F(G(s)) - s|_1 + |G(F(t)) - t|_1) + λ_id (|G(t) - t|_1 + |F(s) - s|_1)
    L_D = ½ [(D_T(t) - 1)^2 + D_T(G(s))^2] + ½ [(D_S(s) - 1)^2 + D_S(F(t))^2]

Generators and discriminators have their own Adam optimizers (manual optimisation, one G step then
one D step per batch). Everything that changes during training is in the module or the optimizers,
so a Lightning checkpoint resumes it exactly.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from transferlab.translate.networks import PatchDiscriminator, ResnetGenerator


def lsgan(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss of raw discriminator scores against target 1 (real) or 0 (fake)."""
    scores = scores.float()
    return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))


class CycleGAN(L.LightningModule):
    """The translator pair and its discriminators.

    Args:
        channels: image channels of both domains.
        ngf, ndf: generator / discriminator width.
        n_blocks: generator residual blocks.
        lr: Adam learning rate (betas 0.5, 0.999 as in the paper).
        cycle_weight: λ_cyc.
        identity_weight: λ_id (0 disables the identity term).

    Shape:
        batches `{"source": (B, C, S, S), "target": (B, C, S, S)}` in [-1, 1].
    """

    def __init__(
        self,
        channels: int = 1,
        ngf: int = 16,
        ndf: int = 16,
        n_blocks: int = 3,
        lr: float = 2e-4,
        cycle_weight: float = 10.0,
        identity_weight: float = 5.0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.g_st, self.g_ts = ResnetGenerator(channels, ngf, n_blocks), ResnetGenerator(channels, ngf, n_blocks)
        self.d_t, self.d_s = PatchDiscriminator(channels, ndf), PatchDiscriminator(channels, ndf)
        self.lr, self.cycle_weight, self.identity_weight = lr, cycle_weight, identity_weight

    def generator_losses(self, s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, dict, tuple]:
        fake_t, fake_s = self.g_st(s), self.g_ts(t)  # (B, C, S, S) each
        adv = lsgan(self.d_t(fake_t), True) + lsgan(self.d_s(fake_s), True)
        cyc = F.l1_loss(self.g_ts(fake_t), s) + F.l1_loss(self.g_st(fake_s), t)
        loss = adv + self.cycle_weight * cyc
        logs = {"g_adv": adv.detach(), "cycle": cyc.detach()}
        if self.identity_weight > 0:
            idt = F.l1_loss(self.g_st(t), t) + F.l1_loss(self.g_ts(s), s)
            loss = loss + self.identity_weight * idt
            logs["identity"] = idt.detach()
        return loss, logs, (fake_t.detach(), fake_s.detach())

    def discriminator_loss(self, s, t, fake_t, fake_s) -> torch.Tensor:
        d_t = 0.5 * (lsgan(self.d_t(t), True) + lsgan(self.d_t(fake_t), False))
        d_s = 0.5 * (lsgan(self.d_s(s), True) + lsgan(self.d_s(fake_s), False))
        return d_t + d_s

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        s, t = batch["source"][0], batch["target"][0]
        loss_g, logs, (fake_t, fake_s) = self.generator_losses(s, t)
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        loss_d = self.discriminator_loss(s, t, fake_t, fake_s)
        opt_d.zero_grad()  # also drops the grads the generator loss left on the discriminators
        self.manual_backward(loss_d)
        opt_d.step()
        for k, v in {"loss_g": loss_g.detach(), "loss_d": loss_d.detach(), **logs}.items():
            self.log(f"translate/{k}", v, prog_bar=k in ("loss_g", "loss_d"))

    def configure_optimizers(self):
        gen = list(self.g_st.parameters()) + list(self.g_ts.parameters())
        disc = list(self.d_t.parameters()) + list(self.d_s.parameters())
        return [
            torch.optim.Adam(gen, lr=self.lr, betas=(0.5, 0.999)),
            torch.optim.Adam(disc, lr=self.lr, betas=(0.5, 0.999)),
        ]
