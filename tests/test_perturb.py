import pytest
import torch

from pipeline.method.perturb import perturb, sphere_noise


def test_surface_noise_has_exactly_the_radius():
    noise = sphere_noise((1000, 32), 25.0, "surface", torch.Generator().manual_seed(0))
    torch.testing.assert_close(noise.norm(dim=1), torch.full((1000,), 25.0))


def test_interior_noise_has_a_norm_uniform_in_0_r():
    """The paper's interior sampling: norm uniform in [0, r], whatever the dimension (so many samples near
    the centre, as Fig. 6a says)."""
    for dim in (8, 1024):
        norms = sphere_noise((20000, dim), 2.0, "interior", torch.Generator().manual_seed(0)).norm(dim=1)
        assert norms.max() <= 2.0 + 1e-5
        assert norms.mean().item() == pytest.approx(1.0, abs=0.02)
        assert (norms < 1.0).float().mean().item() == pytest.approx(0.5, abs=0.02)
        assert (norms < 0.2).float().mean().item() == pytest.approx(0.1, abs=0.01)


def test_ball_noise_is_uniform_by_volume_hence_near_the_surface_in_high_dimension():
    norms = sphere_noise((5000, 8), 2.0, "ball", torch.Generator().manual_seed(0)).norm(dim=1)
    assert norms.max() <= 2.0 + 1e-5
    # uniform in a d-ball: P(|x| < r/2) = 2^-d; the median norm is r * 0.5^(1/d)
    assert norms.median().item() == pytest.approx(2.0 * 0.5 ** (1 / 8), rel=0.03)
    high = sphere_noise((5000, 1024), 2.0, "ball", torch.Generator().manual_seed(0)).norm(dim=1)
    assert high.min().item() > 0.99 * 2.0


def test_directions_are_isotropic():
    noise = sphere_noise((20000, 4), 1.0, "surface", torch.Generator().manual_seed(1))
    assert noise.mean(dim=0).abs().max() < 0.02


def test_perturb_adds_offset_then_noise_and_is_seeded():
    x = torch.zeros(10, 6)
    offset = torch.ones(10, 6)
    a = perturb(x, 0.5, "surface", torch.Generator().manual_seed(3), offset)
    b = perturb(x, 0.5, "surface", torch.Generator().manual_seed(3), offset)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close((a - offset).norm(dim=1), torch.full((10,), 0.5))
    torch.testing.assert_close(perturb(x, 0.0, offset=offset), offset)
