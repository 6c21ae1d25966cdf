"""The typed records: units converted once, and every record round-trips through JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellseg.errors import InputError
from cellseg.records import UNCALIBRATED, Intensities, TrainingInput, VoxelSize


def test_a_voxel_size_is_held_in_micrometres_whatever_unit_it_came_in():
    assert VoxelSize.in_unit(50, 4, 4, "nm") == pytest.approx(VoxelSize(0.05, 0.004, 0.004))
    assert VoxelSize.in_unit(500, 40, 40, "angstrom").axes == pytest.approx((0.05, 0.004, 0.004))
    assert VoxelSize.in_unit(1, 2, 3, None) == UNCALIBRATED  # no unit: nothing is known
    # Spellings of files and people: the same unit.
    for unit in ("µm", "um", "micrometer", "Micron"):
        assert VoxelSize.in_unit(0.05, 0.004, 0.004, unit) == VoxelSize(0.05, 0.004, 0.004)
    assert VoxelSize.in_unit(50, 4, 4, "nanometer") == pytest.approx(VoxelSize(0.05, 0.004, 0.004))
    with pytest.raises(InputError, match="furlong"):
        VoxelSize.in_unit(1, 1, 1, "furlong")
    pixel = VoxelSize(None, 0.004, 0.004)
    assert pixel.pixel_area_um2 == pytest.approx(1.6e-5) and np.isnan(UNCALIBRATED.pixel_area_um2)
    assert pixel.describe() == "z ?, y 0.004, x 0.004 micron" and UNCALIBRATED.describe() == "unknown"


def test_a_configured_axis_replaces_the_files_only_where_it_is_set():
    found = VoxelSize(0.05, 0.008, 0.008)
    assert found.replaced(VoxelSize(None, 0.004, None)) == VoxelSize(0.05, 0.004, 0.008)


@pytest.mark.parametrize(
    "record",
    [
        VoxelSize(0.05, 0.004, 0.004),
        UNCALIBRATED,
        Intensities("percentile", (1.0, 99.8), 29.0, 232.0, 126.2, 44.0, 0.0, 255.0, "uint8", 30),
        TrainingInput(),
    ],
)
def test_records_round_trip_through_json(record):
    assert type(record).from_json(json.loads(json.dumps(record.to_json()))) == record


def test_the_stored_voxel_size_keeps_the_form_older_records_have():
    assert VoxelSize(0.05, None, None).to_json() == {"z": 0.05, "y": None, "x": None, "unit": "micron"}
    assert UNCALIBRATED.to_json() == {"z": None, "y": None, "x": None, "unit": None}


def test_percentile_normalisation_maps_the_percentiles_to_0_and_1():
    record = Intensities("percentile", (1.0, 99.8), 10.0, 210.0, 100.0, 40.0, 0.0, 255.0, "uint8", 1)
    assert record.apply(np.array([10, 110, 210], np.uint8)).tolist() == [0.0, 0.5, 1.0]
    assert record.normalised_range() == (0.0, 1.0) and record.mismatch(record) is None
    dark = Intensities("percentile", (1.0, 99.8), 1000.0, 60000.0, 30000.0, 9000.0, 0.0, 65535.0, "uint16", 1)
    assert record.mismatch(dark) is None  # the same range as the model sees it
    raw = Intensities("dtype_range", (1.0, 99.8), 10.0, 210.0, 100.0, 40.0, 0.0, 255.0, "uint8", 1)
    # The same 8-bit values stored as uint16 and divided by 65535: almost black to the model.
    stored_wide = Intensities("dtype_range", (1.0, 99.8), 10.0, 210.0, 100.0, 40.0, 0.0, 255.0, "uint16", 1)
    assert "far outside the training stack's intensities" in raw.mismatch(stored_wide)
