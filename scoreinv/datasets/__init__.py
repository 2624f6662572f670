"""Data sets that work offline: generated CT phantoms and small real images shipped by installed packages,
and the HDF5 layout they are stored in (see docs/datasets.md).

Data only: nothing here knows how the data will be reconstructed (batch reconstruction of an
HDF5 file is :func:`scoreinv.app.batch.reconstruct_h5`)."""

from scoreinv.datasets.anatomy import LABELS, REGIONS, anatomy_phantoms
from scoreinv.datasets.colour import COLOUR_SOURCES, colour_crops
from scoreinv.datasets.dicom import DicomCT, DicomImport, DicomSlice, dicom_to_h5, read_dicom_ct
from scoreinv.datasets.digits import DIGITS_LEVELS, load_digits_split
from scoreinv.datasets.generate import data_blocks, write_colour_h5, write_data_h5, write_phantoms_h5
from scoreinv.datasets.hdf5 import H5ImageDataset, H5Writer, read_h5_attributes, write_images_h5
from scoreinv.datasets.hounsfield import HU_WINDOW, TISSUE_HU, hu_to_unit, tissue_unit, unit_to_hu
from scoreinv.datasets.phantoms import chest_phantoms, phantoms, random_ellipses
from scoreinv.datasets.simulate import operator_from_h5, simulate_h5

__all__ = [
    "DIGITS_LEVELS",
    "load_digits_split",
    "phantoms",
    "random_ellipses",
    "chest_phantoms",
    "anatomy_phantoms",
    "REGIONS",
    "LABELS",
    "HU_WINDOW",
    "TISSUE_HU",
    "hu_to_unit",
    "unit_to_hu",
    "tissue_unit",
    "read_dicom_ct",
    "dicom_to_h5",
    "DicomCT",
    "DicomSlice",
    "DicomImport",
    "COLOUR_SOURCES",
    "colour_crops",
    "H5ImageDataset",
    "H5Writer",
    "write_images_h5",
    "read_h5_attributes",
    "data_blocks",
    "write_data_h5",
    "write_phantoms_h5",
    "write_colour_h5",
    "simulate_h5",
    "operator_from_h5",
]
