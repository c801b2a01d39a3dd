"""Write a spec in Python source text, then train it for a few steps with plain PyTorch."""

import torch

import nndsl

SPEC = """
# y = f(W2 f(W1 x + b1) + b2) with a residual connection
block residual_mlp(hidden: int) {
    input x: f32[N, D]
    return x + (x |> linear(hidden) as up |> gelu |> linear(D) as down)
}

model regressor(features: int = 8, hidden: int = 32) {
    input x: f32[N, features]
    output y = x |> residual_mlp(hidden) as block |> layer_norm as norm |> linear(1) as head
}
"""

c = nndsl.compile(SPEC, params={"features": 4})
model = c.to_torch()
opt = torch.optim.Adam(model.parameters(), lr=1e-2)

gen = torch.Generator().manual_seed(0)
x = torch.randn(256, 4, generator=gen)
target = (x[:, :1] * 2 - x[:, 1:2]).tanh()

for step in range(101):
    loss = torch.nn.functional.mse_loss(model(x), target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 25 == 0:
        print(f"step {step:3d}  loss {loss.item():.4f}")
