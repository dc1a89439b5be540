"""The physics-informed losses with the built-ins of nol_fast.physics, and inside a Trainer.

Oracles: conserving and non-conserving fields with known integrals (exact heat solutions, a
periodic translation, a scaling), boundary values written out, the residuals' own pointwise
values (tested against analytic solutions in test_residuals.py), and the Training API's
PhysicsInformedLoss example with a Navier–Stokes residual trained by the Trainer.
"""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nol_fast.config import Config
from nol_fast.data.heat import solve_heat
from nol_fast.physics.boundary import BoundaryCondition
from nol_fast.physics.grid import Grid, uniform_grid
from nol_fast.physics.pde_residual import PDEResidual
from nol_fast.training import Trainer, TrainingConfig
from nol_fast.training.losses import ConservationLoss, PhysicsInformedLoss, loss_from_config

TWO_PI = 2 * math.pi


# --------------------------------------------------------------------------- built-in terms


def test_builtin_residual_by_name_is_its_mean_square():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 1, 12, 12), torch.randn(2, 1, 12, 12)
    a = torch.rand(2, 1, 12, 12) + 1
    loss_fn = PhysicsInformedLoss(data_weight=1.0, pde_weight=0.25)
    loss_fn.set_pde_residual("darcy", forcing=2.0, accuracy=4)
    total = loss_fn(pred, target, inputs=a)
    residual = PDEResidual("darcy", forcing=2.0, accuracy=4)
    pde = residual(pred, a).square().mean()
    torch.testing.assert_close(loss_fn.last_components["loss_pde"], pde, rtol=1e-5, atol=0)
    torch.testing.assert_close(total, nn.functional.mse_loss(pred, target) + 0.25 * pde,
                               rtol=1e-5, atol=0)
    with pytest.raises(TypeError, match=r"parameters \['forcing'\] are for a built-in residual"):
        loss_fn.set_pde_residual(lambda u, coords: u, forcing=1.0)
    with pytest.raises(ValueError, match=r"reads the coefficient from inputs"):
        loss_fn(pred, target)  # Darcy needs the coefficient


def test_builtin_residual_is_a_submodule_moved_with_the_loss():
    loss_fn = PhysicsInformedLoss()
    loss_fn.set_pde_residual("heat", diffusivity=0.1, forcing=torch.ones(8, 8))
    assert any(isinstance(m, PDEResidual) for m in loss_fn.modules())
    assert loss_fn.to(torch.float64).pde_residual.forcing.dtype == torch.float64


def test_dirichlet_and_periodic_boundary_conditions():
    n = 6
    x, y = uniform_grid((n, n), endpoint=True, dtype=torch.float64).unbind(-1)
    u = (x + 2 * y)[None, None]
    edge = [(i, j) for i in range(n) for j in range(n) if i in (0, n - 1)] + \
           [(i, j) for i in range(n) for j in range(n) if j in (0, n - 1)]  # faces of x, of y
    loss_fn = PhysicsInformedLoss(data_weight=0.0)
    loss_fn.set_boundary_conditions("dirichlet", value=0.5)
    want = sum((u[0, 0, i, j].item() - 0.5) ** 2 for i, j in edge) / len(edge)
    assert loss_fn(u).item() == pytest.approx(want, rel=1e-12)
    # A tensor value: the faces of the value are the targets; zero error when u is the value.
    loss_fn.set_boundary_conditions("dirichlet", value=u[0, 0])
    assert loss_fn(u).item() == 0.0
    # Periodic along y only: u(x, 0) - u(x, 1) = -2 on each of the n points.
    loss_fn.set_boundary_conditions("periodic", dims=[1])
    assert loss_fn(u).item() == pytest.approx(4.0)
    assert set(loss_fn.last_components) == {"loss_boundary"}
    with pytest.raises(ValueError, match=r"unknown boundary condition 'neumann'; choose one of: "
                                         r"dirichlet, periodic"):
        loss_fn.set_boundary_conditions("neumann")
    with pytest.raises(ValueError, match=r"boundary dims must be grid dims in \[0, 2\)"):
        BoundaryCondition("dirichlet", dims=[2])(u)


# --------------------------------------------------------------------------- conservation


def test_conservation_is_zero_for_conserving_fields_and_positive_otherwise():
    # The heat equation conserves mass and dissipates energy.
    torch.manual_seed(1)
    u0 = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    u_t = solve_heat(u0, diffusivity=0.05, time=0.2)
    assert ConservationLoss("mass")(u_t, u0).item() < 1e-28
    assert ConservationLoss("energy")(u_t, u0).item() > 1e-4
    # A periodic translation of a velocity field conserves its momentum and energy; scaling
    # it by 1.1 changes both by the known amounts.
    v = torch.randn(2, 2, 12, 10, dtype=torch.float64)
    shifted = torch.roll(v, shifts=(3, 5), dims=(2, 3))
    fluid = ConservationLoss(["momentum", "energy"], channels={"velocity": [0, 1]},
                             domain=(1.0, 2.0))
    assert fluid(shifted, v).item() < 1e-28
    area = 2.0
    momentum = v.mean((2, 3)) * area  # (batch, 2)
    energy = 0.5 * (v**2).sum(1).mean((1, 2)) * area  # (batch,)
    fluid(1.1 * v, v)
    torch.testing.assert_close(fluid.last_components["momentum"],
                               ((0.1 * momentum) ** 2).mean())
    torch.testing.assert_close(fluid.last_components["energy"], ((0.21 * energy) ** 2).mean())


def test_fluid_layout_with_a_density_channel():
    torch.manual_seed(2)
    rho = torch.rand(2, 1, 8, 8, dtype=torch.float64) + 0.5
    vel = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    u = torch.cat([vel[:, :1], rho, vel[:, 1:]], 1)  # channels: v_x, rho, v_y
    loss_fn = ConservationLoss(["mass", "momentum", "energy"],
                               channels={"density": 1, "velocity": [0, 2]})
    q = loss_fn.quantities(u)
    torch.testing.assert_close(q["mass"][:, 0, 0], rho.mean((1, 2, 3)))
    torch.testing.assert_close(q["momentum"][:, 0], (rho * vel).mean((2, 3)))
    torch.testing.assert_close(q["energy"][:, 0, 0], 0.5 * (rho * vel**2).sum(1).mean((1, 2)))
    # momentum and energy move with the density too: gradients reach every channel
    leaf = u.clone().requires_grad_()
    loss_fn(leaf, u + 0.1 * torch.randn_like(u)).backward()
    assert (leaf.grad.abs().flatten(2).amax(-1) > 0).all()
    with pytest.raises(ValueError, match=r"'mass' needs a density channel"):
        ConservationLoss("mass", channels={"velocity": [0]})
    with pytest.raises(ValueError, match=r"channels must map 'density' and/or 'velocity'"):
        ConservationLoss("energy", channels={"pressure": 0})
    with pytest.raises(ValueError, match=r"name a channel beyond the field's 2"):
        loss_fn.quantities(u[:, :2])


def test_conservation_components_nest_in_the_physics_loss():
    torch.manual_seed(3)
    pred, target = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    loss_fn = PhysicsInformedLoss(data_weight=0.0)
    loss_fn.set_conservation_laws(ConservationLoss(["mass", "energy"], weights={"mass": 2.0}))
    loss = loss_fn(pred, target)
    comps = loss_fn.last_components
    assert set(comps) == {"loss_conservation", "loss_conservation_mass",
                          "loss_conservation_energy"}
    torch.testing.assert_close(loss, 2.0 * comps["loss_conservation_mass"]
                               + comps["loss_conservation_energy"])


# --------------------------------------------------------------------------- config


def test_loss_from_config():
    spec = {"name": "physics_informed", "data_loss": "rel_l2", "pde_weight": "1e-2",
            "pde": {"name": "navier_stokes", "viscosity": 1e-3, "grid": {"dt": 0.1}},
            "boundary": {"name": "dirichlet", "value": 0.0},
            "conservation": {"conservation_types": ["mass"], "reference": "inputs"},
            "conservation_weight": 0.5}
    loss_fn = loss_from_config(spec)
    assert loss_fn.pde_weight == 0.01 and loss_fn.conservation_reference == "inputs"
    assert loss_fn.pde_residual.grid == Grid(dt=0.1)
    assert isinstance(loss_from_config("rel_l2"), nn.Module)
    assert isinstance(loss_from_config({"name": "mse"}), nn.MSELoss)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['pde_wieght'\]"):
        loss_from_config({"name": "physics_informed", "pde_wieght": 1.0})
    with pytest.raises(ValueError, match=r"unknown loss 'pinn'; choose one of: mse, rel_l2, "
                                         r"physics_informed"):
        loss_from_config({"name": "pinn"})
    # A config file carries the mapping through TrainingConfig, and a bad one fails on load.
    raw = {"training": {"loss": spec}}
    assert Config.from_dict(yaml.safe_load(yaml.safe_dump(raw))).training.loss == spec
    with pytest.raises(ValueError, match=r"the heat residual needs diffusivity"):
        TrainingConfig(loss={"name": "physics_informed", "pde": "heat"})


# --------------------------------------------------------------------------- in a Trainer


def _taylor_green_windows(n_samples: int, n: int = 16, nu: float = 1e-2, dt: float = 0.05):
    """(history of 2 records, next record) windows of decaying Taylor-Green vortices."""
    x, y = uniform_grid((n, n)).unbind(-1)
    samples = []
    for s in range(n_samples):
        k = TWO_PI * (1 + s % 2)
        amplitude = 1.0 + 0.1 * s
        w = [amplitude * torch.cos(k * x) * torch.cos(k * y) * math.exp(-2 * nu * k**2 * t * dt)
             for t in range(3)]
        samples.append(torch.stack(w))
    records = torch.stack(samples)
    return records[:, :2], records[:, 2:]


def test_spec_example_with_navier_stokes_residual_in_a_trainer():
    # The Training API's example, with the built-in Navier-Stokes residual: the history holds
    # every loss component, for training and validation.
    loss_fn = PhysicsInformedLoss(data_weight=1.0, pde_weight=0.1, boundary_weight=0.05)
    loss_fn.set_pde_residual("navier_stokes", viscosity=1e-2, grid=Grid(dt=0.05))
    loss_fn.set_boundary_conditions("periodic")
    loss_fn.set_conservation_laws(ConservationLoss("mass"), reference="target")
    x, y = _taylor_green_windows(8)
    train = DataLoader(TensorDataset(x, y), batch_size=4)
    val = DataLoader(TensorDataset(x[:4], y[:4]), batch_size=4)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 1), nn.GELU(), nn.Conv2d(8, 1, 1))
    trainer = Trainer(model, train, val, torch.optim.Adam(model.parameters(), lr=1e-3),
                      loss_fn=loss_fn, config=TrainingConfig(mixed_precision=False))
    history = trainer.train(epochs=2)
    for split in ("train", "val"):
        for term in ("data", "pde", "boundary", "conservation", "conservation_mass"):
            column = history[f"{split}_loss_{term}"]
            assert len(column) == 2 and all(math.isfinite(v) and v >= 0 for v in column)
    # The logged total is the weighted sum of the logged components.
    total = (history["val_loss_data"][-1] + 0.1 * history["val_loss_pde"][-1]
             + 0.05 * history["val_loss_boundary"][-1] + history["val_loss_conservation"][-1])
    assert history["val_loss"][-1] == pytest.approx(total, rel=1e-5)


def test_the_pino_example_config_builds_its_loss():
    from pathlib import Path

    config = Config.load(Path(__file__).resolve().parents[1] / "examples" / "pino_darcy.yaml")
    loss_fn = loss_from_config(config.training.loss)
    assert loss_fn.pde_residual.name == "darcy" and loss_fn.pde_weight > 0
    assert config.data.n_train == 100
