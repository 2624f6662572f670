"""Makes docs/figures/phantom_sinogram_fbp.png: Shepp–Logan 128², its 23-view sinogram, and
filtered back-projections from 23 and 180 views.   Run:  python docs/figures/phantom_sinogram_fbp.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from skimage.data import shepp_logan_phantom
from skimage.metrics import peak_signal_noise_ratio as psnr
from skimage.transform import resize

from scoreinv.operators import RadonOp

n = 128
x = torch.from_numpy(resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)).float()[None, None]
op = RadonOp(23, n)
y = op(x)
x_fbp = op.pinv(y)
full = RadonOp(180, n)
x_fbp180 = full.pinv(full(x))
p23 = psnr(x[0,0].numpy(), x_fbp[0,0].numpy(), data_range=1)
p180 = psnr(x[0,0].numpy(), x_fbp180[0,0].numpy(), data_range=1)
fig, ax = plt.subplots(1, 4, figsize=(15, 3.9), gridspec_kw={"width_ratios": [1, 1.45, 1, 1]})
ax[0].imshow(x[0,0], cmap="gray", vmin=0, vmax=1); ax[0].set_title("Shepp–Logan 128²")
deg = np.degrees(op.measured_angles.numpy())
D = op.n_detectors
im = ax[1].imshow(y[0,0], cmap="gray", aspect="auto", interpolation="nearest",
                  extent=[-(D-1)/2-0.5, (D-1)/2+0.5, deg[-1]+180/46, -180/46])
ax[1].set_xlabel("detector s (pixels)"); ax[1].set_ylabel("angle θ (degrees)")
ax[1].set_title(f"23-view sinogram (1, 23, {D})"); fig.colorbar(im, ax=ax[1], label="line integral (pixels)")
ax[2].imshow(x_fbp[0,0], cmap="gray", vmin=0, vmax=1); ax[2].set_title(f"FBP, 23 views: {p23:.1f} dB")
ax[3].imshow(x_fbp180[0,0], cmap="gray", vmin=0, vmax=1); ax[3].set_title(f"FBP, 180 views: {p180:.1f} dB")
for a in (ax[0], ax[2], ax[3]): a.axis("off")
fig.tight_layout()
out = Path(__file__).with_suffix(".png")
fig.savefig(out, dpi=90)
print(f"{out}: FBP 23 views {p23:.2f} dB, 180 views {p180:.2f} dB (D = {D})")
