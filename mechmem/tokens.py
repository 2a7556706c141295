"""Token formats: how a model reads an operand pair (a, b) as a sequence of token ids.

mechmem's networks read the two operands, inputs (batch, 2), vocabulary p ("operands").
TransformerLens's grokking demo reads the operands then an `=` token whose id is p, inputs
(batch, 3), vocabulary p + 1 ("equals"). A dataset names its format (`DatasetSpec.tokens`) and
every analyzer builds the model's inputs through `model_inputs`, so either kind of model reads its
own inputs.
"""

import torch
from jaxtyping import Int
from torch import Tensor

TOKEN_FORMATS: dict[str, str] = {
    "operands": "a b: the two operands (inputs (batch, 2), vocabulary p)",
    "equals": "a b =: the operands, then an = token of id p (inputs (batch, 3), vocabulary p + 1)",
}


def check_tokens(tokens: str) -> str:
    """`tokens` if it names a token format; else a ValueError listing the formats."""
    if tokens not in TOKEN_FORMATS:
        raise ValueError(f"`tokens` must be one of {', '.join(TOKEN_FORMATS)}, got {tokens!r}.")
    return tokens


def n_tokens(tokens: str) -> int:
    """The sequence length of one example in the format (2 or 3)."""
    return 3 if check_tokens(tokens) == "equals" else 2


def vocab_size(tokens: str, p: int) -> int:
    """How many token ids the format uses for modulus `p` (p, or p + 1 with the `=` token)."""
    return p + 1 if check_tokens(tokens) == "equals" else p


def model_inputs(
    pairs: Int[Tensor, "batch 2"], tokens: str = "operands", *, p: int
) -> Int[Tensor, "batch pos"]:
    """Operand pairs as the token ids a model of the format reads.

    Args:
        pairs: (a, b) operand pairs, residues in [0, p).
        tokens: the format, one of `TOKEN_FORMATS`.
        p: the modulus (the `=` token's id in the "equals" format).

    Returns:
        `pairs` itself for "operands"; for "equals" a new (batch, 3) tensor `a b p`.

    Example:
        >>> model_inputs(torch.tensor([[3, 5]]), "equals", p=113).tolist()
        [[3, 5, 113]]
    """
    if check_tokens(tokens) == "operands":
        return pairs
    equals = torch.full((pairs.shape[0], 1), p, dtype=pairs.dtype, device=pairs.device)
    return torch.cat([pairs, equals], dim=1)
