"""Makes docs/figures/anatomy_clinical.png: generated anatomy slices at 256² with the clinical-size options
(field of view, detail, arms; neck and shoulder regions) beside the real CT slices that ship with pydicom
and pydicom-data, resized to 256², all under the package's HU window [-1000, 2000].

Left half: the stored values ([0, 1] = -1000…2000 HU); right half: the same images in a soft-tissue
display window (-160…240 HU). Row 1 is real (a test set: nothing is tuned on it); rows 2 and 3 are
generated with seed 0, one call per region.   Run:  python docs/figures/anatomy_clinical.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from pydicom.data import get_testdata_file

from scoreinv.datasets import hu_to_unit, read_dicom_ct
from scoreinv.datasets.anatomy import CLINICAL_FIELDS, anatomy_phantoms
from scoreinv.datasets.dicom import ct_slice_to_unit

size = 256
names = ["CT_small.dcm", "693_UNCR.dcm", "explicit_VR-UN.dcm", "J2K_pixelrep_mismatch.dcm"]
paths = [path for path in (get_testdata_file(name, download=False) for name in names) if path is not None]
found = read_dicom_ct(paths)
real = [(Path(item.source).name, ct_slice_to_unit(item.hu, size)) for item in found.slices][:4]
for name, reason in found.skipped:
    print(f"skipped {name}: {reason}")

regions = ["thorax", "abdomen", "shoulder", "neck", "thorax", "abdomen", "head", "thorax"]
generated = []
for k, region in enumerate(regions):
    seed = k  # a different seed per panel, so the two thorax and abdomen panels differ
    image = anatomy_phantoms(1, size, seed, region=region, field_of_view=CLINICAL_FIELDS, detail=True, arms=0.5)
    generated.append((f"{region} (seed {seed})", image[0, 0].numpy()))

rows = [real, generated[:4], generated[4:]]
soft = (hu_to_unit(-160.0), hu_to_unit(240.0))
fig, axes = plt.subplots(3, 8, figsize=(22, 8.6))
for images, row in zip(rows, axes):
    for k, (title, image) in enumerate(images):
        row[k].imshow(np.asarray(image), cmap="gray", vmin=0, vmax=1)
        row[k + 4].imshow(np.asarray(image), cmap="gray", vmin=soft[0], vmax=soft[1])
        row[k].set_title(title, fontsize=8)
        row[k + 4].set_title(title, fontsize=8)
    for axis in row:
        axis.set_xticks([])
        axis.set_yticks([])
axes[0, 0].set_ylabel("real CT (pydicom)", fontsize=10)
axes[1, 0].set_ylabel("generated", fontsize=10)
axes[2, 0].set_ylabel("generated", fontsize=10)
fig.suptitle("256²: stored window −1000…2000 HU (left), soft-tissue display −160…240 HU (right)", fontsize=11)
fig.tight_layout()
out = Path(__file__).with_suffix(".png")
fig.savefig(out, dpi=100)
print(f"wrote {out}")
