"""Makes docs/figures/anatomy.png: generated anatomy slices (head, thorax, abdomen) beside the real CT
slices that ship with pydicom and pydicom-data, all 64² under the package's HU window [-1000, 2000].

Left half: the stored values ([0, 1] = -1000…2000 HU); right half: the same images in a soft-tissue
display window (-160…240 HU). The real slices are a test set (nothing trains on them); they are read
with scoreinv's DICOM reader and resized as `scoreinv data dicom` does.   Run:  python docs/figures/anatomy.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from pydicom.data import get_testdata_file

from scoreinv.datasets import anatomy_phantoms, hu_to_unit, read_dicom_ct
from scoreinv.datasets.dicom import ct_slice_to_unit

size = 64
names = ["CT_small.dcm", "693_UNCR.dcm", "explicit_VR-UN.dcm", "J2K_pixelrep_mismatch.dcm"]
paths = [path for path in (get_testdata_file(name, download=False) for name in names) if path is not None]
found = read_dicom_ct(paths)
real = [ct_slice_to_unit(item.hu, size) for item in found.slices][:4]
for name, reason in found.skipped:
    print(f"skipped {name}: {reason}")

rows = [(f"generated: {region}", anatomy_phantoms(4, size, 0, region=region)[:, 0].numpy())
        for region in ("head", "thorax", "abdomen")]
rows.append(("real CT (pydicom files)", np.stack(real)))

soft = (hu_to_unit(-160.0), hu_to_unit(240.0))
fig, axes = plt.subplots(4, 8, figsize=(13.5, 7.4))
for (title, images), row in zip(rows, axes):
    for k, image in enumerate(images[:4]):
        row[k].imshow(image, cmap="gray", vmin=0, vmax=1)
        row[k + 4].imshow(image, cmap="gray", vmin=soft[0], vmax=soft[1])
    for axis in row:
        axis.set_xticks([])
        axis.set_yticks([])
    row[0].set_ylabel(title, fontsize=10)
axes[0, 0].set_title("stored: −1000…2000 HU", fontsize=9, loc="left")
axes[0, 4].set_title("display: −160…240 HU", fontsize=9, loc="left")
fig.tight_layout()
out = Path(__file__).with_suffix(".png")
fig.savefig(out, dpi=80)
print(f"wrote {out}")
