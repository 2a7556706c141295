"""mechmem with TransformerLens: its analyzers on TransformerLens's models, converters, files.

- `TransformerLensModel` (and `adapt_model`): a TransformerLens model (4.x's `TransformerBridge`,
  3.x's `HookedTransformer`) seen through mechmem's neuron sites, so that
  `mechmem.analyze(tl_model, dataset)` runs every analyzer on it.
- `to_transformer_lens`, `from_transformer_lens`: mechmem's transformer to TransformerLens's and
  back, logits equal.
- `load_transformer_lens`, `save_transformer_lens`, `dataset_from_split`: TransformerLens-style
  model files of either line, opened safely (plain data) or, for pickled ones, only when trusted.
- `major_version`, `is_transformer_lens_model`: the installed line (from package metadata) and
  whether an object is a TransformerLens model (from its class, probing nothing).

Nothing here imports transformer_lens until a function needs it (`pip install "mechmem[tl]"`).
See docs/transformer-lens.md.
"""

from ._adapter import LensConfig as LensConfig
from ._adapter import TransformerLensModel as TransformerLensModel
from ._adapter import adapt_model as adapt_model
from ._convert import from_transformer_lens as from_transformer_lens
from ._convert import to_transformer_lens as to_transformer_lens
from ._files import TransformerLensRun as TransformerLensRun
from ._files import dataset_from_split as dataset_from_split
from ._files import load_transformer_lens as load_transformer_lens
from ._files import plain_config as plain_config
from ._files import save_transformer_lens as save_transformer_lens
from ._lens import is_transformer_lens_model as is_transformer_lens_model
from ._lens import major_version as major_version
