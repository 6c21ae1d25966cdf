"""One nnU-Net step of ``benchmarks.nnunet_peer``: train one fold of the 2-D configuration
for a number of epochs on the CPU and print, as the last line, a JSON record of its time.

    python -m benchmarks.nnunet_train DATASET FOLD EPOCHS ITERATIONS VALIDATION_ITERATIONS

Run in a fresh interpreter whose environment names nnU-Net's folders (``nnUNet_raw``,
``nnUNet_preprocessed``, ``nnUNet_results``): ``nnunetv2.paths`` reads them at import.
The record: ``wall_seconds`` (the whole run), ``epoch_seconds`` (the epochs themselves, from
nnU-Net's own log), ``iterations`` and ``output_folder``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="nnU-Net's dataset id or name")
    parser.add_argument("fold", type=int)
    parser.add_argument("epochs", type=int)
    parser.add_argument("iterations", type=int, help="training iterations an epoch")
    parser.add_argument("validation_iterations", type=int, help="validation iterations an epoch")
    args = parser.parse_args()

    from nnunetv2.run.run_training import get_trainer_from_args  # optional: not a dependency

    trainer = get_trainer_from_args(
        args.dataset, "2d", args.fold, "nnUNetTrainer", "nnUNetPlans", device=torch.device("cpu")
    )
    trainer.num_iterations_per_epoch = args.iterations
    trainer.num_val_iterations_per_epoch = args.validation_iterations
    trainer.num_epochs = args.epochs
    began = time.perf_counter()
    trainer.run_training()
    logged = getattr(trainer.logger, "local_logger", trainer.logger).my_fantastic_logging  # 2.8: MetaLogger
    epoch_seconds = sum(
        end - start
        for start, end in zip(logged["epoch_start_timestamps"], logged["epoch_end_timestamps"], strict=False)
    )
    record = {
        "wall_seconds": time.perf_counter() - began,
        "epoch_seconds": epoch_seconds,
        "iterations": args.epochs * args.iterations,
        "output_folder": trainer.output_folder,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
