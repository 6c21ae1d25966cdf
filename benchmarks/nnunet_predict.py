"""One nnU-Net step of ``benchmarks.nnunet_peer``: predict held-out slices with one fold's
trained model (``nnUNetPredictor``'s defaults: Gaussian sliding window, mirroring) on the
CPU and write each slice's class-1 (cell) probability as cellseg's ``slice_NNN.tif``.

    python -m benchmarks.nnunet_predict MODEL_FOLDER FOLD OUT IMAGES_JSON

``IMAGES_JSON``: a JSON object of slice index -> PNG path. Run in a fresh interpreter whose
environment names nnU-Net's folders: ``nnunetv2.paths`` reads them at import.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

from cellseg.layout import slice_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_folder", help="the trained model's folder (the parent of its fold_K folders)")
    parser.add_argument("fold", type=int)
    parser.add_argument("out", type=Path, help="folder for the slice_NNN.tif probabilities")
    parser.add_argument("images", type=json.loads, help="JSON object: slice index -> PNG path")
    args = parser.parse_args()

    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor  # optional: not a dependency

    predictor = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False, verbose=False)
    predictor.initialize_from_trained_model_folder(
        args.model_folder, use_folds=(args.fold,), checkpoint_name="checkpoint_final.pth"
    )
    for index, path in args.images.items():
        image = np.asarray(Image.open(path), np.float32)[None, None]  # (channel, z, y, x) as NaturalImage2DIO reads it
        _, probabilities = predictor.predict_single_npy_array(image, {"spacing": [999.0, 1.0, 1.0]}, None, None, True)
        tifffile.imwrite(args.out / slice_file(int(index)), probabilities[1, 0].astype(np.float32))


if __name__ == "__main__":
    main()
