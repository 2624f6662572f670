"""Write the labelled training sets of the bundled classifiers (offline, seconds).

    python examples/classifier_data.py --out outputs/classifier-data

* ``digits.h5``: the 1,438 training digits of :func:`scoreinv.datasets.load_digits_split` (seed 0;
  the 359 held-out ones are never written), labels 0…9;
* ``regions.h5``: ``--anatomy`` anatomy slices at 64² (seed ``--anatomy-seed``), labels head /
  thorax / abdomen.

Then ``scoreinv train-classifier`` trains on them (docs/classifier.md gives the commands).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scoreinv.datasets.labelled import anatomy_labelled, digits_labelled, write_labelled_h5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/classifier-data"))
    parser.add_argument("--anatomy", type=int, default=3000, help="anatomy slices to write")
    parser.add_argument("--anatomy-seed", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    (images, labels), _, names = digits_labelled(test_fraction=0.2, seed=0)
    write_labelled_h5(args.out / "digits.h5", images, labels, names, {"source": "sklearn digits", "split": "train",
                      "test_fraction": 0.2, "seed": 0}, created_by="examples/classifier_data.py",
                      overwrite=args.overwrite)
    images, labels, names = anatomy_labelled(args.anatomy, 64, args.anatomy_seed)
    write_labelled_h5(args.out / "regions.h5", images, labels, names, {"source": "anatomy_phantoms", "size": 64,
                      "n": args.anatomy, "seed": args.anatomy_seed}, created_by="examples/classifier_data.py",
                      overwrite=args.overwrite)
    print(f"wrote {args.out / 'digits.h5'} and {args.out / 'regions.h5'}")


if __name__ == "__main__":
    main()
