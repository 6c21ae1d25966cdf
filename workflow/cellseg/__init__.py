"""cellseg: cross-validated UNet segmentation of electron-microscopy stacks.

The package holds the pipeline's logic, one module per concern; the Snakemake rules call
it through thin scripts in ``workflow/scripts/`` and the tests import it directly.
Label convention throughout: 1 = cell interior, 0 = membrane.
"""

__version__ = "0.1.0"
