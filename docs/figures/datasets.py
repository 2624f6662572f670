"""Makes docs/figures/datasets.png: 4 random-ellipse phantoms, 4 chest phantoms, 4 histology
and 4 retina crops, all 128², as the generators draw them.   Run:  python docs/figures/datasets.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from scoreinv.datasets import colour_crops, phantoms

size = 128
rows = [
    ("random ellipses\nphantoms('ellipses', 4, 128, seed=0)", phantoms("ellipses", 4, size, seed=0)),
    ("chest phantoms\nphantoms('chest', 4, 128, seed=0)", phantoms("chest", 4, size, seed=0)),
    ("histology crops\ncolour_crops(4, 128, 0, ['histology'])", colour_crops(4, size, 0, ["histology"])),
    ("retina crops\ncolour_crops(4, 128, 0, ['retina'])", colour_crops(4, size, 0, ["retina"])),
]
fig, axes = plt.subplots(4, 4, figsize=(8.6, 9.2))
for (title, images), row in zip(rows, axes):
    for image, axis in zip(images, row):
        if image.shape[0] == 1:
            axis.imshow(image[0], cmap="gray", vmin=0, vmax=1)
        else:
            axis.imshow(image.permute(1, 2, 0).numpy())
        axis.set_xticks([])
        axis.set_yticks([])
    row[0].set_ylabel(title, fontsize=8.5)
fig.tight_layout()
out = Path(__file__).with_suffix(".png")
fig.savefig(out, dpi=80)
print(f"wrote {out}")
